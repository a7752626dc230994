// Causal multi-head attention forward, flash-attention style: no [T, T] score matrix in memory. qkv is c_attn's
// output [B·T, 3D] (q | k | v column blocks, head h at columns h·hd). One thread owns one query row and walks the
// key rows in a fixed order with an online softmax, staging them in workgroup memory; it saves the row's
// log-sum-exp for the backward (attention-backward.ts). Every output is written by exactly one thread:
// deterministic without atomics.
// A layer with a sliding window (attention-window.ts) skips the key tiles outside it and masks the rest.
import { f32, header, u32, ceilDiv, type Binding, type Kernel } from './kernel';
import { activeWindow, firstKeyRow, inWindow } from './attention-window';

export interface AttnShape {
  readonly B: number;
  readonly T: number;
  readonly H: number;
  readonly D: number;
  /** Multiplies q·k (1/√hd, possibly also 1/(layer+1)). */
  readonly scale: number;
  /** Element type of ctx / dctx / dqkv (the activation type of the path). */
  readonly act: 'f32' | 'f16';
  /**
   * Grouped-query attention (Llama family): key/value heads (default H), query head h reading kv head ⌊h / (H/kv)⌋
   * as HF's repeat_kv does, and the head dimension (default D/H). qkv rows are then [q (H·hd) | k (kv·hd) | v
   * (kv·hd)] and ctx rows H·hd wide; D is unused. GPT-2's shape (kv = H, hd = D/H) gives the same layout as before.
   */
  readonly kvHeads?: number;
  readonly headDim?: number;
  /** Sliding window (attention-window.ts): query i sees keys i − window < j ≤ i; undefined or 0: full causal. */
  readonly window?: number;
}

/** Widths of one qkv row and its parts, for either family. */
export function attnDims(s: AttnShape): { hd: number; kv: number; group: number; qw: number; kw: number; qkvw: number } {
  const hd = s.headDim ?? s.D / s.H;
  const kv = s.kvHeads ?? s.H;
  if (!Number.isInteger(hd) || hd <= 0) throw new Error(`attention: head dim ${hd}`);
  if (!Number.isInteger(kv) || kv <= 0 || s.H % kv !== 0) throw new Error(`attention: ${s.H} heads are not a multiple of ${kv} kv heads`);
  return { hd, kv, group: s.H / kv, qw: s.H * hd, kw: kv * hd, qkvw: s.H * hd + 2 * kv * hd };
}

const ROWS = 64;
const TILE = 32;

function consts(s: AttnShape): string {
  const d = attnDims(s);
  // D: ctx row width (= the q block's); D3: qkv row width; KW: the k (and v) block's; G: query heads per kv head.
  return `const T = ${u32(s.T)}; const H = ${u32(s.H)}; const D = ${u32(d.qw)}; const HD = ${u32(d.hd)}; const D3 = ${u32(d.qkvw)};
const KW = ${u32(d.kw)}; const G = ${u32(d.group)};
const SCALE = ${f32(s.scale)};`;
}

/** ctx[(b,t), h·hd..] = softmax(scale·q kᵀ + causal) v; lse[(b·H + h)·T + t]. Offsets select the layer's slices. */
export function attentionForward(s: AttnShape, io: { qkv: number; ctx: number; lse: number }): Kernel {
  const bindings: Binding[] = [
    { buffer: 'qkv', type: 'f32', write: false },
    { buffer: 'ctx', type: s.act, write: true },
    { buffer: 'lse', type: 'f32', write: true },
  ];
  const { hd } = attnDims(s);
  const w = activeWindow(s.window, s.T);
  // With a window, key tiles before the workgroup's first visible key are skipped.
  const j0Start = w === undefined ? '0u' : firstKeyRow(w, `wg.x * ${u32(ROWS)}`, u32(TILE));
  const visible = w === undefined ? 'i < T && j <= i' : `i < T && j <= i && ${inWindow(w, 'j', 'i')}`;
  const code = `${header(bindings)}
${consts(s)}
var<workgroup> ks: array<f32, ${TILE * hd}>;
var<workgroup> vs: array<f32, ${TILE * hd}>;
@compute @workgroup_size(${ROWS}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let b = wg.z; let h = wg.y; let i = wg.x * ${u32(ROWS)} + li;
  let base = ${u32(io.qkv)} + b * T * D3 + h * HD;
  let kbase = ${u32(io.qkv)} + b * T * D3 + D + (h / G) * HD;
  var q: array<f32, ${hd}>;
  var acc: array<f32, ${hd}>;
  if (i < T) { for (var d = 0u; d < HD; d++) { q[d] = qkv[base + i * D3 + d] * SCALE; } }
  var mx = -3.0e38;
  var l = 0.0;
  let jEnd = min(T, wg.x * ${u32(ROWS)} + ${u32(ROWS)});
  for (var j0 = ${j0Start}; j0 < jEnd; j0 += ${u32(TILE)}) {
    for (var e = li; e < ${u32(TILE * hd)}; e += ${u32(ROWS)}) {
      let j = j0 + e / HD;
      var kv = 0.0; var vv = 0.0;
      if (j < T) { kv = qkv[kbase + j * D3 + e % HD]; vv = qkv[kbase + j * D3 + KW + e % HD]; }
      ks[e] = kv; vs[e] = vv;
    }
    workgroupBarrier();
    for (var jj = 0u; jj < ${u32(TILE)}; jj++) {
      let j = j0 + jj;
      if (${visible}) {
        var sc = 0.0;
        for (var d = 0u; d < HD; d++) { sc = fma(q[d], ks[jj * HD + d], sc); }
        let mNew = max(mx, sc);
        let c = exp(mx - mNew);
        let p = exp(sc - mNew);
        l = l * c + p;
        for (var d = 0u; d < HD; d++) { acc[d] = fma(p, vs[jj * HD + d], acc[d] * c); }
        mx = mNew;
      }
    }
    workgroupBarrier();
  }
  if (i < T) {
    let o = ${u32(io.ctx)} + (b * T + i) * D + h * HD;
    for (var d = 0u; d < HD; d++) { ctx[o + d] = ${s.act}(acc[d] / l); }
    lse[${u32(io.lse)} + (b * H + h) * T + i] = mx + log(l);
  }
}`;
  return { label: 'attn.fwd', code, bindings, grid: [ceilDiv(s.T, ROWS), s.H, s.B] };
}
