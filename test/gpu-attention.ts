// Attention kernels against a float64 CPU reference, for `npm run test:gpu` (test/gpu-engine.ts): the forward
// (ctx, log-sum-exp) and the tiled backward (dq, dk, dv, delta) on small shapes that leave partial tiles, at the
// device's workgroup-memory budget and at WebGPU's default 16 KiB (a smaller tile), and bit-identical reruns.
// Runs on lavapipe too (`FEDTUNE_ENGINE_SOFTWARE=1 node dist/test/gpu-engine.js --only-attention`).
import { attentionForward, type AttnShape } from '../client-sdk/engine/attention';
import { attentionForwardTiled, attnFwdTile } from '../client-sdk/engine/attention-tiled';
import { attentionBackward, attnBwdTile } from '../client-sdk/engine/attention-backward';
import { attentionBackwardVec, attnBwdVecTile } from '../client-sdk/engine/attention-backward-vec';
import type { EngineDevice } from '../client-sdk/engine/device';
import type { Kernel } from '../client-sdk/engine/kernel';
import { Prng } from '../proto/prng';
import { halfToFloat, toHalfBits } from '../client-sdk/engine/half';
import { relErr } from './rel-err';

type Check = (name: string, ok: boolean, detail: string) => void;

interface Shape {
  B: number;
  T: number;
  H: number;
  D: number;
  scale: number;
  /** Sliding window: query i sees keys i − window < j ≤ i (absent: full causal). */
  window?: number;
}

/**
 * Runs kernels in order in one compute pass over shared buffers; returns the named buffers' contents. A buffer the
 * kernels bind as f16 (the f16 and tc paths' activations) is uploaded rounded to half and read back widened.
 */
async function runKernels(
  ed: EngineDevice,
  ks: readonly Kernel[],
  sizes: Record<string, number>,
  inputs: Record<string, Float32Array>,
  outs: string[],
): Promise<Record<string, Float32Array>> {
  const dev = ed.device;
  const bufs = new Map<string, GPUBuffer>();
  const half = new Set(ks.flatMap((k) => k.bindings.filter((b) => b.type === 'f16').map((b) => b.buffer)));
  const bytes = (name: string): number => (half.has(name) ? Math.ceil(sizes[name] / 2) * 4 : sizes[name] * 4);
  for (const [name, n] of Object.entries(sizes)) {
    const buf = dev.createBuffer({ size: bytes(name), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    const f = inputs[name] ?? new Float32Array(n);
    const data = half.has(name) ? toHalfBits(f) : f;
    dev.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength);
    bufs.set(name, buf);
  }
  const enc = dev.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const k of ks) {
    const pipeline = dev.createComputePipeline({ layout: 'auto', compute: { module: dev.createShaderModule({ code: k.code }), entryPoint: 'main' } });
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      dev.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: k.bindings.map((b, i) => ({ binding: i, resource: { buffer: bufs.get(b.buffer) as GPUBuffer } })),
      }),
    );
    const g = typeof k.grid === 'function' ? k.grid({ pairs: 0 }) : k.grid;
    pass.dispatchWorkgroups(g[0], g[1], g[2]);
  }
  pass.end();
  const reads = outs.map((name) => {
    const rd = dev.createBuffer({ size: bytes(name), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    enc.copyBufferToBuffer(bufs.get(name) as GPUBuffer, 0, rd, 0, bytes(name));
    return rd;
  });
  dev.queue.submit([enc.finish()]);
  const result: Record<string, Float32Array> = {};
  for (const [i, rd] of reads.entries()) {
    await rd.mapAsync(GPUMapMode.READ);
    const raw = rd.getMappedRange().slice(0);
    result[outs[i]] = half.has(outs[i]) ? Float32Array.from(new Uint16Array(raw, 0, sizes[outs[i]]), halfToFloat) : new Float32Array(raw);
    rd.unmap();
    rd.destroy();
  }
  for (const b of bufs.values()) b.destroy();
  return result;
}

/** float64 causal attention forward and backward (within s.window if set): ctx, lse, delta and dqkv ([B·T, 3D], q | k | v). */
export function attentionReference(s: Shape, qkv: Float32Array, dctx: Float32Array): Record<string, Float64Array> {
  const { B, T, H, D, scale } = s;
  const hd = D / H;
  const D3 = 3 * D;
  const ctx = new Float64Array(B * T * D);
  const lse = new Float64Array(B * H * T);
  const delta = new Float64Array(B * H * T);
  const dqkv = new Float64Array(B * T * D3);
  const at = (b: number, t: number, part: number, h: number, d: number): number => (b * T + t) * D3 + part * D + h * hd + d;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const P: number[][] = [];
      for (let i = 0; i < T; i++) {
        const sc: number[] = [];
        for (let j = 0; j <= i; j++) {
          if (s.window !== undefined && i - j >= s.window) {
            sc.push(-Infinity); // outside the window: p = 0
            continue;
          }
          let x = 0;
          for (let d = 0; d < hd; d++) x += qkv[at(b, i, 0, h, d)] * qkv[at(b, j, 1, h, d)];
          sc.push(x * scale);
        }
        const m = Math.max(...sc);
        const l = sc.reduce((a, x) => a + Math.exp(x - m), 0);
        lse[(b * H + h) * T + i] = m + Math.log(l);
        P.push(sc.map((x) => Math.exp(x - m) / l));
        for (let d = 0; d < hd; d++) ctx[(b * T + i) * D + h * hd + d] = P[i].reduce((a, p, j) => a + p * qkv[at(b, j, 2, h, d)], 0);
      }
      for (let i = 0; i < T; i++) {
        const go = (d: number): number => dctx[(b * T + i) * D + h * hd + d];
        let dl = 0;
        for (let d = 0; d < hd; d++) dl += go(d) * ctx[(b * T + i) * D + h * hd + d];
        delta[(b * H + h) * T + i] = dl;
        for (let j = 0; j <= i; j++) {
          let dp = 0;
          for (let d = 0; d < hd; d++) dp += go(d) * qkv[at(b, j, 2, h, d)];
          const ds = P[i][j] * (dp - dl);
          for (let d = 0; d < hd; d++) {
            dqkv[at(b, i, 0, h, d)] += scale * ds * qkv[at(b, j, 1, h, d)];
            dqkv[at(b, j, 1, h, d)] += scale * ds * qkv[at(b, i, 0, h, d)];
            dqkv[at(b, j, 2, h, d)] += P[i][j] * go(d);
          }
        }
      }
    }
  }
  return { ctx, lse, delta, dqkv };
}

/** Forward kernels: attention.ts's one thread per row, attention-tiled.ts's scalar or vec4 tiles (and the vec4 backward). */
export type AttnKind = 'row' | 'tiled' | 'vec';

/** One kind's forward and backward at a workgroup budget, run twice: each run's ctx, lse, delta and dqkv. */
export async function runAttention(
  ed: EngineDevice,
  shape: AttnShape,
  kind: AttnKind,
  budget: number,
  sizes: Record<string, number>,
  inputs: Record<string, Float32Array>,
): Promise<Record<string, Float32Array>[]> {
  const io = { qkv: 0, ctx: 0, lse: 0 };
  const fwd = kind === 'row' ? attentionForward(shape, io) : attentionForwardTiled(shape, io, budget, kind === 'vec');
  const ks = [fwd, ...(kind === 'vec' ? attentionBackwardVec : attentionBackward)(shape, io, budget)];
  const outs = ['ctx', 'lse', 'delta', 'dqkv'];
  return [await runKernels(ed, ks, sizes, inputs, outs), await runKernels(ed, ks, sizes, inputs, outs)];
}

export const sameBits = (a: Float32Array, b: Float32Array): boolean => Buffer.from(a.buffer).equals(Buffer.from(b.buffer));

export async function attentionTests(ed: EngineDevice, check: Check): Promise<void> {
  const rng = new Prng(5);
  const shapes: Shape[] = [
    { B: 2, T: 40, H: 2, D: 64, scale: 1 / Math.sqrt(32) },
    { B: 1, T: 70, H: 2, D: 128, scale: 1 / Math.sqrt(64) },
  ];
  for (const s of shapes) {
    const N = s.B * s.T;
    const qkv = Float32Array.from({ length: N * 3 * s.D }, () => rng.nextFloat() * 2 - 1);
    const dctx = Float32Array.from({ length: N * s.D }, () => rng.nextFloat() * 2 - 1);
    const want = attentionReference(s, qkv, dctx);
    const sizes = { qkv: N * 3 * s.D, ctx: N * s.D, lse: s.B * s.H * s.T, dctx: N * s.D, delta: s.B * s.H * s.T, dqkv: N * 3 * s.D };
    const hd = s.D / s.H;
    // Forward: 'row' (attention.ts), 'tiled' and 'vec' (attention-tiled.ts, scalar and vec4 tiles); backward:
    // scalar (attention-backward.ts) or, with 'vec', attention-backward-vec.ts. Each at the device's workgroup
    // memory and at WebGPU's default 16 KiB (smaller tiles).
    const byKind = new Map<string, Record<string, Float32Array>>();
    for (const budget of [ed.caps.maxComputeWorkgroupStorageSize, 16384]) {
      for (const kind of ['row', 'tiled', 'vec'] as const) {
        const outs = ['ctx', 'lse', 'delta', 'dqkv'];
        const [got, again] = await runAttention(ed, { ...s, act: 'f32' }, kind, budget, sizes, { qkv, dctx });
        const part = (x: ArrayLike<number>, k: number): number[] => Array.from(x).filter((_, i) => Math.floor((i % (3 * s.D)) / s.D) === k);
        const errs = [
          ...outs.map((o) => `${o} ${relErr(got[o], want[o]).toExponential(2)}`),
          ...['dq', 'dk', 'dv'].map((n, k) => `${n} ${relErr(part(got.dqkv, k), part(want.dqkv, k)).toExponential(2)}`),
        ];
        const worst = Math.max(...outs.map((o) => relErr(got[o], want[o])));
        const fwdTile = kind === 'row' ? 0 : attnFwdTile(kind === 'vec' ? hd + 3 : hd, budget);
        const bwdTile = kind === 'vec' ? attnBwdVecTile(hd, budget) : attnBwdTile(hd, budget);
        const fwdTag = kind === 'row' ? 'row forward' : `${kind} forward (tile ${fwdTile})`;
        const tag = `attention B${s.B} T${s.T} H${s.H} hd${hd}, ${fwdTag}, ${kind === 'vec' ? 'vec4 ' : ''}backward tile ${bwdTile}`;
        check(`${tag}: forward and backward against float64`, worst < 1e-5, errs.join(', '));
        check(
          `${tag}: rerun bit-identical`,
          outs.every((o) => sameBits(got[o], again[o])),
          'ctx, lse, delta, dqkv',
        );
        byKind.set(`${kind} ${budget}`, got);
        // The vec4 kernels sum the same terms in the same order: bit-identical to the scalar ones (the forward
        // where its tile is the scalar one's; the backward's sums do not depend on the tile).
        const scalar = byKind.get(`tiled ${budget}`);
        if (kind === 'vec' && scalar) {
          const sameFwd = fwdTile === attnFwdTile(hd, budget);
          const outsCmp = sameFwd ? ['ctx', 'lse', 'delta', 'dqkv'] : [];
          check(
            `${tag}: bit-identical to the scalar kernels`,
            outsCmp.every((o) => sameBits(got[o], scalar[o])),
            sameFwd ? 'ctx, lse, delta, dqkv' : 'tiles differ: compared against float64 only',
          );
        }
      }
    }
  }
}
