// What tc-matmul-probe.ts measures: the kernel variants, the GPT-2-small step's base products with their real
// epilogues, the small correctness cases and their float64 reference, and the WebGPU plumbing to run them.
import * as fs from 'node:fs';
import type { Epilogue } from '../client-sdk/engine/epilogue';
import { toHalfBits } from '../client-sdk/engine/half';
import type { Kernel } from '../client-sdk/engine/kernel';
import { tiledMatmul, type MatmulSpec } from '../client-sdk/engine/matmul';
import { tcMatmul, tcMatmulSimple } from '../client-sdk/engine/matmul-tc';
import { tcMatmulTiled, type TcTile } from '../client-sdk/engine/matmul-tc-tiled';
import { type Prng } from '../proto/prng';

const log = (s: string): void => void fs.writeSync(1, s + '\n');
const args = process.argv.slice(2);
const pick = (flag: string, dflt: string): string => (args.includes(flag) ? args[args.indexOf(flag) + 1] : dflt);

interface Variant {
  readonly name: string;
  readonly tile?: TcTile;
  readonly tc: boolean;
}
const staged = (sgm: number, sgn: number, tm: number, tn: number, bk: number, double: boolean, pad: number, vec: boolean): Variant => ({
  name: `s${sgm}x${sgn}-t${tm}x${tn}-k${bk}${double ? '-db' : ''}-p${pad}-v${vec ? 4 : 1}`,
  tile: { sgm, sgn, tm, tn, bk, mode: 'staged', double, pad, vec },
  tc: true,
});
const direct = (sgm: number, sgn: number, tm: number, tn: number): Variant => ({
  name: `d${sgm}x${sgn}-t${tm}x${tn}`,
  tile: { sgm, sgn, tm, tn, bk: 16, mode: 'direct' },
  tc: true,
});
// In priority order: the time budget cuts from the end.
// 'cur': the first kernel (tcMatmulSimple); 'engine': what tcMatmul picks per product today.
const VARIANTS: Variant[] = [
  { name: 'cur', tc: true },
  { name: 'engine', tc: true },
  staged(2, 2, 4, 4, 32, true, 8, true),
  direct(2, 2, 4, 4),
  staged(2, 2, 4, 4, 32, false, 8, true),
  staged(4, 2, 2, 4, 32, true, 8, true),
  staged(2, 2, 4, 2, 32, true, 8, true),
  direct(2, 2, 2, 2),
  staged(2, 2, 4, 4, 32, true, 0, true),
  staged(2, 2, 4, 4, 16, true, 8, true),
  staged(2, 4, 4, 2, 32, true, 8, true),
  staged(2, 2, 2, 4, 32, true, 8, true),
  staged(2, 2, 2, 2, 32, true, 8, true),
  staged(2, 2, 4, 4, 64, false, 8, true),
  staged(4, 2, 4, 4, 32, false, 8, true),
  staged(2, 2, 4, 4, 32, true, 8, false),
  direct(2, 1, 4, 4),
  { name: 'f16-tiled', tc: false },
];

function kernelOf(v: Variant, spec: MatmulSpec, wgBytes: number, emulate = false): Kernel {
  if (!v.tc) return tiledMatmul(spec);
  if (v.tile) return tcMatmulTiled(spec, { ...v.tile, wgBytes }, { emulate });
  return v.name === 'engine' ? tcMatmul(spec, wgBytes) : tcMatmulSimple(spec);
}

// ---------- the step's base products (GPT-2 small, seq 256): K×N per projection, forward and dX ----------
const D = 768;
const F = 3072;
const V = 50257;
const VP = 50264;
const R = 16;
const ROWS = { b32: 8192, b8: 2048 };
const SPLIT_V = 25; // program-kit.ts: max(2, min(32, ceil(V / 2048)))

interface Shape {
  readonly label: string;
  readonly count: number;
  readonly pairs: boolean;
  readonly spec: MatmulSpec;
}
function stepShapes(): Shape[] {
  const M = ROWS.b32;
  const op = (buffer: string, trans: boolean, ld?: number): MatmulSpec['a'] => ({ buffer, offset: 0, type: 'f16', trans, ...(ld ? { ld } : {}) });
  const lora = (layout: 'nr' | 'rn'): Epilogue['lora'] => ({ low: { buffer: 'low', offset: 0 }, mat: { buffer: 'mat', offset: 0 }, layout, r: R, scale: 2 });
  const bias = { buffer: 'bias', offset: 0 };
  const out = (ld: number, type: 'f32' | 'f16' = 'f32'): Epilogue['out'] => ({
    buffer: type === 'f16' ? 'C16' : 'C',
    offset: 0,
    ld,
    mode: 'store',
    ...(type === 'f16' ? { type } : {}),
  });
  const fwd = (label: string, K: number, N: number, epi: Epilogue): Shape => ({
    label,
    count: 12,
    pairs: false,
    spec: { label, M, N, K, a: op('A', false), b: op('B', false), epi },
  });
  const dx = (label: string, K: number, N: number, epi: Epilogue): Shape => ({
    label,
    count: 12,
    pairs: false,
    spec: { label, M, N, K, a: op('A', false), b: op('B', true), epi },
  });
  return [
    fwd('fwd c_attn 768x2304', D, 3 * D, { bias, lora: lora('nr'), out: out(3 * D) }),
    fwd('fwd attn.c_proj 768x768', D, D, { bias, lora: lora('nr'), residual: { buffer: 'res', offset: 0 }, out: out(D) }),
    fwd('fwd c_fc 768x3072', D, F, { bias, lora: lora('nr'), gelu: { buffer: 'pre', offset: 0 }, out: out(F, 'f16') }),
    fwd('fwd mlp.c_proj 3072x768', F, D, { bias, lora: lora('nr'), residual: { buffer: 'res', offset: 0 }, out: out(D) }),
    dx('dX mlp.c_proj 768->3072 (B^T)', D, F, { lora: lora('rn'), geluGrad: { buffer: 'pre', offset: 0 }, out: out(F, 'f16') }),
    dx('dX c_fc 3072->768 (B^T)', F, D, { lora: lora('rn'), out: out(D, 'f16') }),
    dx('dX attn.c_proj 768->768 (B^T)', D, D, { lora: lora('rn'), out: out(D, 'f16') }),
    dx('dX c_attn 2304->768 (B^T)', 3 * D, D, { lora: lora('rn'), out: out(D, 'f16') }),
    {
      label: 'lm.logits 768x50257 (B^T)',
      count: 1,
      pairs: true,
      spec: { label: 'lm.logits', M, N: V, K: D, rowsArePairs: true, a: op('A', false), b: op('B', true), epi: { out: out(VP) } },
    },
    {
      label: 'lm.dhs 50257x768 (split-K 25)',
      count: 1,
      pairs: true,
      spec: { label: 'lm.dhs', M, N: D, K: V, rowsArePairs: true, splitK: SPLIT_V, a: op('A', false, VP), b: op('B', false), epi: { out: out(D) } },
    },
  ];
}
// Every timed kernel has rowsArePairs semantics in the probe (rows from the step buffer), so one pipeline serves
// both row counts; the engine bakes the row count in, which only changes a constant.
const timed = (s: Shape): MatmulSpec => ({ ...s.spec, rowsArePairs: true });
const rowsFor = (s: Shape, b: keyof typeof ROWS): number => (s.pairs ? ROWS[b] - ROWS[b] / 256 : ROWS[b]);
const flops = (s: Shape, rows: number): number => 2 * rows * s.spec.N * s.spec.K;

// ---------- correctness: small odd shapes against float64 ----------
interface Check {
  readonly label: string;
  readonly spec: MatmulSpec;
  readonly rows: number;
}
function checks(): Check[] {
  const [M, N, K] = [150, 200, 120];
  const mk = (label: string, ta: boolean, tb: boolean, extra: Partial<MatmulSpec>, rows = M): Check => ({
    label,
    rows,
    spec: {
      label,
      M,
      N,
      K,
      a: { buffer: 'A', offset: 0, type: 'f16', trans: ta },
      b: { buffer: 'B', offset: 0, type: 'f16', trans: tb },
      epi: { out: { buffer: 'C', offset: 0, ld: N, mode: 'store' } },
      ...extra,
    },
  });
  return [
    mk('A·B plain', false, false, {}),
    mk('Aᵀ·Bᵀ +bias', true, true, { epi: { bias: { buffer: 'bias', offset: 0 }, out: { buffer: 'C', offset: 0, ld: N, mode: 'store' } } }),
    mk('A·Bᵀ split-K 3, K 200', false, true, { K: 200, splitK: 3 }),
    mk(
      'Aᵀ·B rows 130 of 150 +bias',
      true,
      false,
      { rowsArePairs: true, epi: { bias: { buffer: 'bias', offset: 0 }, out: { buffer: 'C', offset: 0, ld: N, mode: 'store' } } },
      130,
    ),
  ];
}

function reference(c: Check, A: Float32Array, B: Float32Array, bias: Float32Array): Float64Array {
  const { M, N, K, a, b, epi } = c.spec;
  const out = new Float64Array(M * N);
  for (let m = 0; m < c.rows; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += A[a.trans ? k * M + m : m * K + k] * B[b.trans ? n * K + k : k * N + n];
      out[m * N + n] = s + (epi.bias ? bias[n] : 0);
    }
  }
  return out;
}

// ---------- device plumbing ----------
type Buffers = Map<string, GPUBuffer>;
const BYTES = { f32: 4, f16: 2, u32: 4, i32: 4 } as const;

async function pipelineOf(dev: GPUDevice, k: Kernel): Promise<GPUComputePipeline> {
  const module = dev.createShaderModule({ label: k.label, code: k.code });
  const info = await module.getCompilationInfo();
  const err = info.messages.find((m) => m.type === 'error');
  if (err) throw new Error(`WGSL ${err.lineNum}:${err.linePos} ${err.message}`);
  return dev.createComputePipelineAsync({ label: k.label, layout: 'auto', compute: { module, entryPoint: 'main' } });
}

function bindGroup(dev: GPUDevice, p: GPUComputePipeline, k: Kernel, bufs: Buffers): GPUBindGroup {
  const entries = k.bindings.map((b, i) => {
    const buffer = bufs.get(b.buffer);
    if (!buffer) throw new Error(`no buffer ${b.buffer}`);
    return { binding: i, resource: { buffer } };
  });
  return dev.createBindGroup({ layout: p.getBindGroupLayout(0), entries });
}

async function dispatch(dev: GPUDevice, p: GPUComputePipeline, bg: GPUBindGroup, grid: readonly number[], reps: number): Promise<number> {
  const t0 = performance.now();
  const enc = dev.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(p);
  pass.setBindGroup(0, bg);
  for (let r = 0; r < reps; r++) pass.dispatchWorkgroups(grid[0], grid[1], grid[2]);
  pass.end();
  dev.queue.submit([enc.finish()]);
  await dev.queue.onSubmittedWorkDone();
  return performance.now() - t0;
}

async function readF32(dev: GPUDevice, src: GPUBuffer, n: number): Promise<Float32Array> {
  const rd = dev.createBuffer({ size: n * 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = dev.createCommandEncoder();
  enc.copyBufferToBuffer(src, 0, rd, 0, n * 4);
  dev.queue.submit([enc.finish()]);
  await rd.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(rd.getMappedRange().slice(0));
  rd.unmap();
  rd.destroy();
  return out;
}

function makeBuffer(dev: GPUDevice, bytes: number): GPUBuffer {
  return dev.createBuffer({ size: Math.ceil(bytes / 16) * 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
}

/** Fills a buffer with values in [-1, 1) (f16 bits or f32), 16 MiB from one random block at a time. */
function fill(dev: GPUDevice, buf: GPUBuffer, elems: number, type: 'f16' | 'f32', rng: Prng, scale = 1): void {
  const blockElems = Math.min(elems, (16 << 20) / BYTES[type]);
  const f = Float32Array.from({ length: blockElems }, () => (rng.nextFloat() * 2 - 1) * scale);
  const block = type === 'f16' ? toHalfBits(f).subarray(0, blockElems) : f;
  for (let at = 0; at < elems; at += blockElems) {
    const n = Math.min(blockElems, elems - at);
    dev.queue.writeBuffer(buf, at * BYTES[type], block.buffer, block.byteOffset, n * BYTES[type]);
  }
}

async function withScope<T>(dev: GPUDevice, f: () => Promise<T>): Promise<T> {
  dev.pushErrorScope('validation');
  dev.pushErrorScope('internal');
  dev.pushErrorScope('out-of-memory');
  let value: T | undefined;
  let thrown: unknown;
  try {
    value = await f();
  } catch (e) {
    thrown = e;
  }
  const errs = [await dev.popErrorScope(), await dev.popErrorScope(), await dev.popErrorScope()].filter((e): e is GPUError => e !== null);
  if (thrown !== undefined) throw thrown instanceof Error ? thrown : new Error(JSON.stringify(thrown));
  if (errs.length) throw new Error(errs.map((e) => e.message.split('\n')[0]).join('; '));
  return value as T;
}

export { log, pick, args, VARIANTS, kernelOf, stepShapes, timed, rowsFor, flops, checks, reference, pipelineOf, bindGroup, dispatch, readF32 };
export { makeBuffer, fill, withScope, ROWS, R, F, VP };
export type { Variant, Shape, Check, Buffers };
