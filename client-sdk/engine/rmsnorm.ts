// The Llama family's row-wise kernels: the token embedding (no learned positions: rotary embeddings act inside
// attention) and RMSNorm forward/backward. Like layer norm (rowwise.ts), one workgroup per row reduces over a
// fixed tree in workgroup memory, so results do not depend on scheduling.
import { f32, header, u32, ceilDiv, type Binding, type Kernel } from './kernel';
import { REDUCE, REDUCE_WG as WG } from './rowwise';

/** x[n, :] = embed[ids[n], :] (ids validated on the CPU). */
export function tokenEmbedding(rows: number, D: number): Kernel {
  const bindings: Binding[] = [
    { buffer: 'ids', type: 'u32', write: false },
    { buffer: 'wte', type: 'f32', write: false },
    { buffer: 'xres', type: 'f32', write: true },
  ];
  const code = `${header(bindings)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x;
  if (e >= ${u32(rows * D)}) { return; }
  let n = e / ${u32(D)}; let d = e % ${u32(D)};
  xres[e] = wte[ids[n] * ${u32(D)} + d];
}`;
  return { label: 'embed', code, bindings, grid: [ceilDiv(rows * D, 256), 1, 1] };
}

export interface RmsIo {
  /** Input rows (f32 residual stream) at this element offset of `xres`. */
  readonly x: number;
  /** Weight element offset in `vec`. */
  readonly weight: number;
  /** Output buffer and element offset (activation type). */
  readonly y: string;
  readonly yOff: number;
  /** rstd per row, element offset into `stats`. */
  readonly stats: number;
}

/** y = x·rsqrt(mean(x²) + eps)·w, as transformers' LlamaRMSNorm and model/llama.ts compute it. */
export function rmsNormForward(rows: number, D: number, eps: number, act: 'f32' | 'f16', io: RmsIo): Kernel {
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
  var q = 0.0;
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) { let c = xres[xo + d]; q = fma(c, c, q); }
  let rstd = inverseSqrt(wg_sum(q, li) / ${f32(D)} + ${f32(eps)});
  let yo = ${u32(io.yOff)} + row * ${u32(D)};
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) {
    ${io.y}[yo + d] = ${act}(xres[xo + d] * rstd * vec[${u32(io.weight)} + d]);
  }
  if (li == 0u) { stats[${u32(io.stats)} + row] = rstd; }
}`;
  return { label: 'rms.fwd', code, bindings, grid: [rows, 1, 1] };
}

/**
 * dx = rstd·(g − x̂·mean(g·x̂)), g = dy·w, x̂ = x·rstd; stored in or added to the residual gradient `dres`, with an
 * optional f16 copy of the new dres in `dres16` for the next f16 matmul. dy is read as f32 or the path's type.
 */
export function rmsNormBackward(
  rows: number,
  D: number,
  io: { dy: string; dyType: 'f32' | 'f16'; x: number; weight: number; stats: number; mode: 'add' | 'store'; copy16: boolean },
): Kernel {
  const bindings: Binding[] = [
    { buffer: io.dy, type: io.dyType, write: false },
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
  let rstd = stats[${u32(io.stats)} + row];
  var s = 0.0;
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) {
    s = fma(f32(${io.dy}[o + d]) * vec[${u32(io.weight)} + d], xres[xo + d] * rstd, s);
  }
  let c = wg_sum(s, li) / ${f32(D)};
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) {
    let g = f32(${io.dy}[o + d]) * vec[${u32(io.weight)} + d];
    var v = rstd * (g - xres[xo + d] * rstd * c);
    ${io.mode === 'add' ? 'v += dres[o + d];' : ''}
    dres[o + d] = v;
    ${io.copy16 ? 'dres16[o + d] = f16(v);' : ''}
  }
}`;
  return { label: 'rms.bwd', code, bindings, grid: [rows, 1, 1] };
}
