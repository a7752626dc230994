// The Llama family's row-wise kernels: the token embedding (no learned positions: rotary embeddings act inside
// attention; Gemma 3's scaled by √hidden) and RMSNorm forward/backward: over the residual stream, over each head of
// q and k (Qwen3, Gemma 3), and over a sublayer's output with the residual add fused in (Gemma 3). Like layer norm
// (rowwise.ts), one workgroup per row reduces over a fixed tree in workgroup memory, so results do not depend on
// scheduling.
import { f32, header, u32, ceilDiv, type Binding, type Kernel } from './kernel';
import { REDUCE, REDUCE_WG as WG } from './rowwise';

/**
 * x[n, :] = embed[ids[n], :] (ids validated on the CPU), times `scale` when given: Gemma 3's √hidden_size, an f32
 * multiply as model/llama.ts's (the head is tied, so the scale cannot live in the shared table).
 */
export function tokenEmbedding(rows: number, D: number, scale?: number): Kernel {
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
  xres[e] = wte[ids[n] * ${u32(D)} + d]${scale === undefined ? '' : ` * ${f32(scale)}`};
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
  /** Per-head rows (Qwen3's q/k norms) instead of rows of the residual stream. */
  readonly heads?: HeadRows;
  /**
   * Gemma 3's sublayer-output norms: x is read from this f32 buffer (the sublayer's saved output) instead of `xres`,
   * and y (f32, `xres`) = xres[residual + …] + the norm: the residual add fused into the norm.
   */
  readonly sublayer?: { readonly xBuf: string; readonly residual: number };
}

/**
 * Rows that are the heads of each token: head h of token n is the D values at offset + n·ld + h·D of its buffer
 * (a [tokens·heads, D] view of a wider row, as q or k sits in a [q | k | v] row), one workgroup per (n, h) on a
 * [tokens, heads] grid; rstd of (n, h) is at stats + n·count + h.
 */
export interface HeadRows {
  readonly count: number;
  /** x's buffer (f32) and row stride; the output's (y forward, dy and dx backward) row stride. */
  readonly xBuf: string;
  readonly xLd: number;
  readonly yLd: number;
}

/** WGSL: `row` (the stats index) and the first element of row `row` of x and of the output (or dy). */
function rowStarts(D: number, xOff: number, yOff: number | undefined, heads: HeadRows | undefined): { row: string; xo: string; yo: string } {
  const y0 = yOff === undefined ? '' : `${u32(yOff)} + `;
  if (!heads) return { row: 'wg.x', xo: `${u32(xOff)} + row * ${u32(D)}`, yo: `${y0}row * ${u32(D)}` };
  return {
    row: `wg.x * ${u32(heads.count)} + wg.y`,
    xo: `${u32(xOff)} + wg.x * ${u32(heads.xLd)} + wg.y * ${u32(D)}`,
    yo: `${y0}wg.x * ${u32(heads.yLd)} + wg.y * ${u32(D)}`,
  };
}

/** y = x·rsqrt(mean(x²) + eps)·w, as transformers' LlamaRMSNorm and model/llama.ts compute it. */
export function rmsNormForward(rows: number, D: number, eps: number, act: 'f32' | 'f16', io: RmsIo): Kernel {
  const sub = io.sublayer;
  if (sub && (io.heads || io.y !== 'xres' || act !== 'f32')) throw new Error('a sublayer norm adds into the f32 residual stream xres');
  const X = io.heads?.xBuf ?? sub?.xBuf ?? 'xres';
  const at = rowStarts(D, io.x, io.yOff, io.heads);
  const bindings: Binding[] = [
    { buffer: X, type: 'f32', write: false },
    { buffer: 'vec', type: 'f32', write: false },
    { buffer: io.y, type: act, write: true },
    { buffer: 'stats', type: 'f32', write: true },
  ];
  const code = `${header(bindings)}
${REDUCE}
@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = ${at.row};
  let xo = ${at.xo};
  var q = 0.0;
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) { let c = ${X}[xo + d]; q = fma(c, c, q); }
  let rstd = inverseSqrt(wg_sum(q, li) / ${f32(D)} + ${f32(eps)});
  let yo = ${at.yo};
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) {
    ${io.y}[yo + d] = ${sub ? `xres[${u32(sub.residual)} + row * ${u32(D)} + d] + ` : ''}${act}(${X}[xo + d] * rstd * vec[${u32(io.weight)} + d]);
  }
  if (li == 0u) { stats[${u32(io.stats)} + row] = rstd; }
}`;
  return { label: io.heads ? 'rms.head.fwd' : sub ? 'rms.sub.fwd' : 'rms.fwd', code, bindings, grid: io.heads ? [rows, io.heads.count, 1] : [rows, 1, 1] };
}

/**
 * dx = rstd·(g − x̂·mean(g·x̂)), g = dy·w, x̂ = x·rstd; stored in or added to the residual gradient `dres`, with an
 * optional f16 copy of the new dres in `dres16` for the next f16 matmul. dy is read as f32 or the path's type.
 * With `heads` (rows = tokens), dy is read at dyOff in rows of stride heads.yLd and dx replaces it there, in dy's
 * type (each workgroup reads all of its row before it writes any of it): mode and copy16 do not apply. With
 * `sublayer` (Gemma 3's norms of a sublayer's output), x is read from sublayer.xBuf and dx goes to sublayer.dx (and
 * its f16 copy to sublayer.dx16) instead of dres / dres16.
 */
export function rmsNormBackward(
  rows: number,
  D: number,
  io: {
    dy: string;
    dyType: 'f32' | 'f16';
    x: number;
    weight: number;
    stats: number;
    mode: 'add' | 'store';
    copy16: boolean;
    heads?: HeadRows & { readonly dyOff: number };
    sublayer?: { readonly xBuf: string; readonly dx: string; readonly dx16: string };
  },
): Kernel {
  const h = io.heads;
  const sub = io.sublayer;
  if (h && (io.mode !== 'store' || io.copy16)) throw new Error('rms.head.bwd writes dx over dy: store, no f16 copy');
  if (sub && (h || io.mode !== 'store')) throw new Error('a sublayer norm stores its dx');
  const X = h?.xBuf ?? sub?.xBuf ?? 'xres';
  const DX = sub?.dx ?? 'dres';
  const DX16 = sub?.dx16 ?? 'dres16';
  const at = rowStarts(D, io.x, h?.dyOff, h);
  const bindings: Binding[] = [
    { buffer: io.dy, type: io.dyType, write: !!h },
    { buffer: X, type: 'f32', write: false },
    { buffer: 'vec', type: 'f32', write: false },
    { buffer: 'stats', type: 'f32', write: false },
  ];
  if (!h) bindings.push({ buffer: DX, type: 'f32', write: true });
  if (io.copy16) bindings.push({ buffer: DX16, type: 'f16', write: true });
  const store = h
    ? `${io.dy}[o + d] = ${io.dyType}(v);`
    : `${io.mode === 'add' ? `v += ${DX}[o + d];` : ''}
    ${DX}[o + d] = v;
    ${io.copy16 ? `${DX16}[o + d] = f16(v);` : ''}`;
  const code = `${header(bindings)}
${REDUCE}
@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row = ${at.row};
  let xo = ${at.xo};
  let o = ${at.yo};
  let rstd = stats[${u32(io.stats)} + row];
  var s = 0.0;
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) {
    s = fma(f32(${io.dy}[o + d]) * vec[${u32(io.weight)} + d], ${X}[xo + d] * rstd, s);
  }
  let c = wg_sum(s, li) / ${f32(D)};
  for (var d = li; d < ${u32(D)}; d += ${u32(WG)}) {
    let g = f32(${io.dy}[o + d]) * vec[${u32(io.weight)} + d];
    var v = rstd * (g - ${X}[xo + d] * rstd * c);
    ${store}
  }
}`;
  return { label: h ? 'rms.head.bwd' : sub ? 'rms.sub.bwd' : 'rms.bwd', code, bindings, grid: h ? [rows, h.count, 1] : [rows, 1, 1] };
}
