// Row-wise and element-wise kernels: embedding, layer norm forward/backward, the LM-head row gather and its
// scatter-back. Reductions run over a fixed tree in workgroup memory (one workgroup per row), so results do not
// depend on scheduling.
import { f32, header, u32, ceilDiv, type Binding, type Kernel, type StepShape } from './kernel';

const WG = 128;

/** Sum (or max) of one value per thread over the workgroup, in a fixed tree order. */
const REDUCE = `
var<workgroup> red: array<f32, ${WG}>;
fn wg_sum(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) { if (li < s) { red[li] += red[li + s]; } workgroupBarrier(); }
  let r = red[0];
  workgroupBarrier();
  return r;
}
fn wg_max(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) { if (li < s) { red[li] = max(red[li], red[li + s]); } workgroupBarrier(); }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;

export { REDUCE, WG as REDUCE_WG };

/** x[n, :] = wte[ids[n], :] + wpe[n mod T, :] (ids validated on the CPU). */
export function embedding(rows: number, T: number, D: number): Kernel {
  const bindings: Binding[] = [
    { buffer: 'ids', type: 'u32', write: false },
    { buffer: 'wte', type: 'f32', write: false },
    { buffer: 'wpe', type: 'f32', write: false },
    { buffer: 'xres', type: 'f32', write: true },
  ];
  const code = `${header(bindings)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x;
  if (e >= ${u32(rows * D)}) { return; }
  let n = e / ${u32(D)}; let d = e % ${u32(D)};
  xres[e] = wte[ids[n] * ${u32(D)} + d] + wpe[(n % ${u32(T)}) * ${u32(D)} + d];
}`;
  return { label: 'embed', code, bindings, grid: [ceilDiv(rows * D, 256), 1, 1] };
}

export interface LnIo {
  /** Input rows (f32 residual stream) at this element offset of `xres`. */
  readonly x: number;
  /** γ and β element offsets in the `vec` buffer. */
  readonly gamma: number;
  readonly beta: number;
  /** Output buffer and element offset; act type. */
  readonly y: string;
  readonly yOff: number;
  /** (mean, rstd) pairs, element offset into `stats`. */
  readonly stats: number;
}

/** y = (x − mean)·rsqrt(var + eps)·γ + β with biased variance, as tfjs/HF compute it. */
export function layerNormForward(rows: number, D: number, eps: number, act: 'f32' | 'f16', io: LnIo): Kernel {
  const bindings: Binding[] = [
    { buffer: 'xres', type: 'f32', write: false },
    { buffer: 'vec', type: 'f32', write: false },
    { buffer: io.y, type: act, write: true },
    { buffer: 'stats', type: 'f32', write: true },
  ];
  const code = `${header(bindings)}
${REDUCE}
@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wg.x;
  let xo = ${u32(io.x)} + row * ${u32(D)};
  var s = 0.0;
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) { s += xres[xo + d]; }
  let mean = wg_sum(s, li) / ${f32(D)};
  var q = 0.0;
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) { let c = xres[xo + d] - mean; q = fma(c, c, q); }
  let rstd = inverseSqrt(wg_sum(q, li) / ${f32(D)} + ${f32(eps)});
  let yo = ${u32(io.yOff)} + row * ${u32(D)};
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) {
    ${io.y}[yo + d] = ${act}((xres[xo + d] - mean) * rstd * vec[${u32(io.gamma)} + d] + vec[${u32(io.beta)} + d]);
  }
  if (li == 0u) { stats[${u32(io.stats)} + row * 2u] = mean; stats[${u32(io.stats)} + row * 2u + 1u] = rstd; }
}`;
  return { label: 'ln.fwd', code, bindings, grid: [rows, 1, 1] };
}

/**
 * dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ; added to (or stored in) the residual gradient `dres`, with an
 * optional copy of the new dres in `dres16` for the next f16 matmul.
 */
export function layerNormBackward(
  rows: number,
  D: number,
  act: 'f32' | 'f16',
  io: { dy: string; x: number; gamma: number; stats: number; mode: 'add' | 'store'; copy16: boolean },
): Kernel {
  const bindings: Binding[] = [
    { buffer: io.dy, type: io.dy === 'dhf' ? 'f32' : act, write: false },
    { buffer: 'xres', type: 'f32', write: false },
    { buffer: 'vec', type: 'f32', write: false },
    { buffer: 'stats', type: 'f32', write: false },
    { buffer: 'dres', type: 'f32', write: true },
  ];
  if (io.copy16) bindings.push({ buffer: 'dres16', type: 'f16', write: true });
  const code = `${header(bindings)}
${REDUCE}
@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = wg.x;
  let xo = ${u32(io.x)} + row * ${u32(D)};
  let o = row * ${u32(D)};
  let mean = stats[${u32(io.stats)} + row * 2u];
  let rstd = stats[${u32(io.stats)} + row * 2u + 1u];
  var s1 = 0.0;
  var s2 = 0.0;
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) {
    let g = f32(${io.dy}[o + d]) * vec[${u32(io.gamma)} + d];
    s1 += g;
    s2 = fma(g, (xres[xo + d] - mean) * rstd, s2);
  }
  let c1 = wg_sum(s1, li) / ${f32(D)};
  let c2 = wg_sum(s2, li) / ${f32(D)};
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) {
    let g = f32(${io.dy}[o + d]) * vec[${u32(io.gamma)} + d];
    let xh = (xres[xo + d] - mean) * rstd;
    var v = rstd * (g - c1 - xh * c2);
    ${io.mode === 'add' ? 'v += dres[o + d];' : ''}
    dres[o + d] = v;
    ${io.copy16 ? 'dres16[o + d] = f16(v);' : ''}
  }
}`;
  return { label: 'ln.bwd', code, bindings, grid: [rows, 1, 1] };
}

/** hs[p, :] = hf[pairRow[p], :] for the step's scored pairs (the LM head runs on these rows only). */
export function gatherPairs(maxPairs: number, D: number, act: 'f32' | 'f16'): Kernel {
  const bindings: Binding[] = [
    { buffer: 'step', type: 'u32', write: false },
    { buffer: 'pairRow', type: 'u32', write: false },
    { buffer: 'hf', type: act, write: false },
    { buffer: 'hs', type: act, write: true },
  ];
  const code = `${header(bindings)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x;
  if (e >= min(step[0], ${u32(maxPairs)}) * ${u32(D)}) { return; }
  let p = e / ${u32(D)}; let d = e % ${u32(D)};
  hs[e] = hf[pairRow[p] * ${u32(D)} + d];
}`;
  return { label: 'lm.gather', code, bindings, grid: (s: StepShape) => [ceilDiv(s.pairs * D, 256), 1, 1] };
}

/** dhf[n, :] = Σ over the pairs scored at row n (CSR, fixed order) of dhs[p, :]; zero where none. */
export function scatterPairs(rows: number, D: number): Kernel {
  const bindings: Binding[] = [
    { buffer: 'rowStart', type: 'u32', write: false },
    { buffer: 'rowPairs', type: 'u32', write: false },
    { buffer: 'dhs', type: 'f32', write: false },
    { buffer: 'dhf', type: 'f32', write: true },
  ];
  const code = `${header(bindings)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x;
  if (e >= ${u32(rows * D)}) { return; }
  let n = e / ${u32(D)}; let d = e % ${u32(D)};
  var v = 0.0;
  for (var q = rowStart[n]; q < rowStart[n + 1u]; q++) { v += dhs[rowPairs[q] * ${u32(D)} + d]; }
  dhf[e] = v;
}`;
  return { label: 'lm.scatter', code, bindings, grid: [ceilDiv(rows * D, 256), 1, 1] };
}
