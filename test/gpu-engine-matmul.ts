// The engine's matmul kernels against a CPU product, for `npm run test:gpu` (test/gpu-engine.ts; `--only-matmul`
// runs these and one full step): both storage orders of each operand, with the bias + LoRA + GELU epilogue, on every
// path the adapter offers (f32, f16, tc). runKernel, which dispatches one kernel on fresh buffers, is shared with the
// SGD kernel's check there.
import type { EngineDevice } from '../client-sdk/engine/device';
import type { EnginePath } from '../client-sdk/engine/program';
import { tiledMatmul, type MatmulSpec } from '../client-sdk/engine/matmul';
import { tcMatmul } from '../client-sdk/engine/matmul-tc';
import { toHalfBits, halfToFloat } from '../client-sdk/engine/half';
import type { Kernel } from '../client-sdk/engine/kernel';
import { Prng } from '../proto/prng';
import { relErr } from './rel-err';

type Check = (name: string, ok: boolean, detail: string) => void;

/** Runs one kernel on fresh buffers (inputs by binding name) and reads `outName`'s first `outElems` floats back. */
export async function runKernel(
  ed: EngineDevice,
  k: Kernel,
  inputs: Record<string, Float32Array | Uint16Array>,
  outName: string,
  outElems: number,
): Promise<Float32Array> {
  const dev = ed.device;
  const bufs = new Map<string, GPUBuffer>();
  for (const b of k.bindings) {
    const data = inputs[b.buffer];
    const size = Math.max(16, Math.ceil(((data ? data.byteLength : outElems * 4) + 3) / 4) * 4);
    const buf = dev.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    if (data) dev.queue.writeBuffer(buf, 0, data.buffer, data.byteOffset, data.byteLength);
    bufs.set(b.buffer, buf);
  }
  const pipeline = dev.createComputePipeline({ layout: 'auto', compute: { module: dev.createShaderModule({ code: k.code }), entryPoint: 'main' } });
  const bg = dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: k.bindings.map((b, i) => ({ binding: i, resource: { buffer: bufs.get(b.buffer) as GPUBuffer } })),
  });
  const enc = dev.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bg);
  const g = typeof k.grid === 'function' ? k.grid({ pairs: 0 }) : k.grid;
  pass.dispatchWorkgroups(g[0], g[1], g[2]);
  pass.end();
  const rd = dev.createBuffer({ size: outElems * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  enc.copyBufferToBuffer(bufs.get(outName) as GPUBuffer, 0, rd, 0, outElems * 4);
  dev.queue.submit([enc.finish()]);
  await rd.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(rd.getMappedRange().slice(0));
  rd.unmap();
  for (const b of bufs.values()) b.destroy();
  return out;
}

/** Matmul kernels (both storage orders of each operand, bias + LoRA + GELU epilogue) against a CPU product. */
export async function matmulTests(ed: EngineDevice, paths: EnginePath[], check: Check): Promise<void> {
  // The second size has whole 128×128 blocks besides partial ones (the tiled tensor-core kernel's interior path).
  for (const size of [
    [70, 150, 96, 4],
    [300, 260, 200, 4],
  ] as const)
    await matmulCase(ed, paths, size, check);
}

async function matmulCase(ed: EngineDevice, paths: EnginePath[], [M, N, K, r]: readonly [number, number, number, number], check: Check): Promise<void> {
  const rng = new Prng(3);
  const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.nextFloat() * 2 - 1);
  for (const kind of paths) {
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ]) {
      const A = rnd(M * K);
      const Bm = rnd(K * N);
      const bias = rnd(N);
      const low = rnd(M * r);
      const lb = rnd(N * r);
      const f16 = kind !== 'f32';
      const q = (x: Float32Array): Float32Array => (f16 ? Float32Array.from(toHalfBits(x).subarray(0, x.length), halfToFloat) : x);
      const Aq = q(A);
      const Bq = q(Bm);
      const want = new Float32Array(M * N);
      const pre = new Float32Array(M * N);
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += Aq[ta ? k * M + m : m * K + k] * Bq[tb ? n * K + k : k * N + n];
          let l = 0;
          for (let k = 0; k < r; k++) l += low[m * r + k] * lb[n * r + k];
          const v = s + bias[n] + 0.5 * l;
          pre[m * N + n] = v;
          const u = Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3);
          want[m * N + n] = v / (1 + Math.exp(-2 * u));
        }
      }
      const spec: MatmulSpec = {
        label: 'test',
        M,
        N,
        K,
        a: { buffer: 'A', offset: 0, type: f16 ? 'f16' : 'f32', trans: ta },
        b: { buffer: 'B', offset: 0, type: f16 ? 'f16' : 'f32', trans: tb },
        epi: {
          bias: { buffer: 'bias', offset: 0 },
          lora: { low: { buffer: 'low', offset: 0 }, mat: { buffer: 'lb', offset: 0 }, layout: 'nr', r, scale: 0.5 },
          gelu: { buffer: 'pre', offset: 0 },
          out: { buffer: 'C', offset: 0, ld: N, mode: 'store' },
        },
      };
      const k = kind === 'tc' ? tcMatmul(spec) : tiledMatmul(spec);
      const inputs = { A: f16 ? toHalfBits(A) : A, B: f16 ? toHalfBits(Bm) : Bm, bias, low, lb };
      const got = await runKernel(ed, k, inputs, 'C', M * N);
      const e = relErr(got, want);
      check(`matmul ${kind} ${M}×${N}×${K} transA=${ta} transB=${tb} (+bias, LoRA, GELU)`, e < 1e-5, `rel err ${e.toExponential(2)}`);
    }
  }
}
