// Rotary position embeddings on the engine, in place on the q and k blocks of a qkv row ([q (H·hd) | k (kv·hd) |
// v]), HF's non-interleaved layout (rotate_half pairs dimension i with i + hd/2). The cos/sin tables [T, hd] come
// from model/rope.ts (every rope_scaling variant the tfjs model implements, computed once on the CPU), so the
// engine and tfjs rotate by the same f32 numbers. Backward applies the transposed rotation to dq and dk.
// One thread per (row, head, i < hd/2) pair: each pair is read and written by one thread only.
import { header, u32, ceilDiv, type Binding, type Kernel } from './kernel';

export interface RopeShape {
  readonly rows: number;
  readonly T: number;
  /** Query heads, key/value heads, head dimension. */
  readonly H: number;
  readonly kv: number;
  readonly hd: number;
}

/**
 * Forward (y1 = x1·cos − x2·sin, y2 = x2·cos + x1·sin) on `qkv` (f32) or backward (dx1 = dy1·cos + dy2·sin,
 * dx2 = dy2·cos − dy1·sin) on `dqkv` (the path's type). The table buffer `rope` holds cos then sin, [T, hd] each,
 * from element `table` on (Gemma 3's local layers have their own pair after the global layers'; default 0).
 */
export function ropeKernel(s: RopeShape, dir: 'fwd' | 'bwd', io: { buffer: string; type: 'f32' | 'f16'; offset: number; table?: number }): Kernel {
  if (s.hd % 2 !== 0) throw new Error(`rope: head dim ${s.hd} is odd`);
  const half = s.hd / 2;
  const heads = s.H + s.kv; // q heads then k heads: k's block starts right after q's, so one index covers both
  const width = (s.H + 2 * s.kv) * s.hd;
  const total = s.rows * heads * half;
  const bindings: Binding[] = [
    { buffer: 'rope', type: 'f32', write: false },
    { buffer: io.buffer, type: io.type, write: true },
  ];
  const X = io.buffer;
  const sign = dir === 'fwd' ? '' : '-';
  const t0 = io.table ? `${u32(io.table)} + ` : '';
  const code = `${header(bindings)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x;
  if (e >= ${u32(total)}) { return; }
  let i = e % ${u32(half)};
  let hh = (e / ${u32(half)}) % ${u32(heads)};
  let n = e / ${u32(heads * half)};
  let t = n % ${u32(s.T)};
  let o = ${u32(io.offset)} + n * ${u32(width)} + hh * ${u32(s.hd)} + i;
  let c = rope[${t0}t * ${u32(s.hd)} + i];
  let sn = ${sign}rope[${u32((io.table ?? 0) + s.T * s.hd)} + t * ${u32(s.hd)} + i];
  let x1 = f32(${X}[o]);
  let x2 = f32(${X}[o + ${u32(half)}]);
  ${X}[o] = ${io.type}(x1 * c - x2 * sn);
  ${X}[o + ${u32(half)}] = ${io.type}(x2 * c + x1 * sn);
}`;
  return { label: `rope.${dir}`, code, bindings, grid: [ceilDiv(total, 256), 1, 1] };
}
