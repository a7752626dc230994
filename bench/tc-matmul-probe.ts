// Tensor-core matmul variants on the GPT-2-small step's shapes (client-sdk/engine/matmul-tc.ts). For each variant:
// a correctness check against a float64 CPU product on small odd shapes (every storage order, K tail, split-K,
// bias epilogue, row limit), then the time of each base product the step runs (forward and dX of the four
// projections with their real epilogues, the LM head and dhs) at 8,192 and 2,048 rows: TFLOP/s per shape and the
// matmul milliseconds of a step (each shape × its count per step). One JSON file, rewritten after every variant
// so a crash keeps what was measured.
//   node dist/bench/tc-matmul-probe.js --out tc-probe.json [--variants cur,s2x2-t4x4-k32-db-p8-v4] [--budget 230]
//   node dist/bench/tc-matmul-probe.js --null --out x.json   # compile every variant's WGSL on Dawn's null backend
//   node dist/bench/tc-matmul-probe.js --emulate --out x.json  # run the checks with subgroup matrices emulated
// Without subgroup matrices (e.g. Mesa's lavapipe) it checks its own harness with the register-tiled f16 kernel and
// reports the tensor-core variants as unsupported.
import * as fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { DAWN_TOGGLES, openEngineDevice } from '../client-sdk/engine/device';
import { halfToFloat, toHalfBits } from '../client-sdk/engine/half';
import { Prng } from '../proto/prng';
import * as kit from './tc-matmul-probe-kit';
import type { Buffers, Variant } from './tc-matmul-probe-kit';

const { log, pick, args } = kit;
// The `webgpu` package is ESM only; tsc's CommonJS output would turn a plain import() into require().
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const importEsm = new Function('specifier', 'return import(specifier)') as (s: string) => Promise<{ create: (f: string[]) => GPU; globals: object }>;
const t0 = performance.now();
const elapsed = (): number => (performance.now() - t0) / 1000;

interface VariantResult {
  name: string;
  tile?: unknown;
  status: 'ok' | 'failed-check' | 'unsupported' | 'error' | 'skipped';
  reason?: string;
  check?: Record<string, number | string>;
  compileMs?: number;
  shapes?: Record<string, { rows: number; ms: number; tflops: number } | { error: string }>;
  stepMatmulMs?: Record<string, number>;
}

async function checkVariant(dev: GPUDevice, v: Variant, wgBytes: number, emulate = false): Promise<Record<string, number | string>> {
  const out: Record<string, number | string> = {};
  for (const c of kit.checks()) {
    const rng = new Prng(11);
    const { M, N, K } = c.spec;
    const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, () => rng.nextFloat() * 2 - 1);
    const q = (x: Float32Array): Float32Array => Float32Array.from(toHalfBits(x).subarray(0, x.length), halfToFloat);
    const A = q(rnd(M * K));
    const B = q(rnd(K * N));
    const bias = rnd(N);
    try {
      const k = kit.kernelOf(v, c.spec, wgBytes, emulate);
      const S = c.spec.splitK ?? 1;
      const bufs: Buffers = new Map();
      const put = (name: string, data: Uint16Array | Float32Array | Uint32Array): void => {
        const b = kit.makeBuffer(dev, data.byteLength);
        dev.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
        bufs.set(name, b);
      };
      put('A', toHalfBits(A).subarray(0, M * K));
      put('B', toHalfBits(B).subarray(0, K * N));
      put('bias', bias);
      put('step', Uint32Array.of(c.rows));
      // The output starts as NaN so a skipped element shows.
      put('C', new Float32Array(S * M * N).fill(NaN));
      const got = await kit.withScope(dev, async () => {
        const p = await kit.pipelineOf(dev, k);
        const grid = typeof k.grid === 'function' ? k.grid({ pairs: c.rows }) : k.grid;
        await kit.dispatch(dev, p, kit.bindGroup(dev, p, k, bufs), grid, 1);
        return kit.readF32(dev, bufs.get('C') as GPUBuffer, S * M * N);
      });
      for (const b of bufs.values()) b.destroy();
      const want = kit.reference(c, A, B, bias);
      let err = 0;
      let scale = 0;
      for (let i = 0; i < c.rows * N; i++) {
        let g = 0;
        for (let s = 0; s < S; s++) g += got[s * M * N + i];
        err = Math.max(err, Number.isFinite(g) ? Math.abs(g - want[i]) : Infinity);
        scale = Math.max(scale, Math.abs(want[i]));
      }
      out[c.label] = err / scale;
    } catch (e) {
      out[c.label] = `error: ${String((e as Error).message ?? e).split('\n')[0]}`;
    }
  }
  return out;
}

async function timeVariant(dev: GPUDevice, v: Variant, wgBytes: number, bufs: Buffers, budget: number, res: VariantResult): Promise<void> {
  const shapes = kit.stepShapes();
  const tc = performance.now();
  // Compile every shape's pipeline at once: the driver's subgroup-matrix compiles are slow, and async ones overlap.
  type Built = { k: ReturnType<typeof kit.kernelOf>; p: GPUComputePipeline; bg: GPUBindGroup } | { error: string };
  const built = await Promise.all(
    shapes.map(async (s): Promise<Built> => {
      try {
        const k = kit.kernelOf(v, kit.timed(s), wgBytes);
        const p = await kit.withScope(dev, () => kit.pipelineOf(dev, k));
        return { k, p, bg: kit.bindGroup(dev, p, k, bufs) };
      } catch (e) {
        return { error: String((e as Error).message ?? e).split('\n')[0] };
      }
    }),
  );
  res.compileMs = Math.round(performance.now() - tc);
  res.shapes = {};
  // The GPU idles while pipelines compile; without a warm-up the first shapes timed ran at a fraction of their speed
  // (the first H200 run: forward products 4–13× slower at 8,192 rows than at 2,048).
  const first = built.find((x): x is Exclude<Built, { error: string }> => !('error' in x));
  if (first) {
    dev.queue.writeBuffer(bufs.get('step') as GPUBuffer, 0, Uint32Array.of(kit.ROWS.b32));
    const grid = typeof first.k.grid === 'function' ? first.k.grid({ pairs: kit.ROWS.b32 }) : first.k.grid;
    for (let w = performance.now(); performance.now() - w < 500;) await kit.dispatch(dev, first.p, first.bg, grid, 10);
  }
  const step: Record<string, number> = {};
  for (const b of Object.keys(kit.ROWS) as (keyof typeof kit.ROWS)[]) {
    let total = 0;
    for (let i = 0; i < shapes.length; i++) {
      const s = shapes[i];
      const key = `${s.label} @${b}`;
      const bl = built[i];
      if ('error' in bl) {
        res.shapes[key] = { error: bl.error };
        total = NaN;
        continue;
      }
      if (elapsed() > budget) {
        res.shapes[key] = { error: 'skipped: time budget' };
        total = NaN;
        continue;
      }
      const rows = kit.rowsFor(s, b);
      try {
        const ms = await kit.withScope(dev, async () => {
          dev.queue.writeBuffer(bufs.get('step') as GPUBuffer, 0, Uint32Array.of(rows));
          const grid = typeof bl.k.grid === 'function' ? bl.k.grid({ pairs: rows }) : bl.k.grid;
          const warm = await kit.dispatch(dev, bl.p, bl.bg, grid, 2);
          const reps = Math.max(3, Math.min(50, Math.round(40 / Math.max(warm / 2, 0.01))));
          let best = Infinity;
          for (let r = 0; r < 2; r++) best = Math.min(best, (await kit.dispatch(dev, bl.p, bl.bg, grid, reps)) / reps);
          return best;
        });
        const tflops = kit.flops(s, rows) / ms / 1e9;
        res.shapes[key] = { rows, ms: +ms.toFixed(4), tflops: +tflops.toFixed(2) };
        total += s.count * ms;
        log(`  ${v.name} ${key}: ${ms.toFixed(3)} ms, ${tflops.toFixed(1)} TFLOP/s`);
      } catch (e) {
        res.shapes[key] = { error: String((e as Error).message ?? e).split('\n')[0] };
        total = NaN;
      }
    }
    step[b] = +total.toFixed(2);
  }
  res.stepMatmulMs = step;
}

interface Gpu {
  dev: GPUDevice;
  adapter: string;
  subgroupMatrix: boolean;
  wgBytes: number;
  maxBinding: number;
}

async function openNull(): Promise<Gpu> {
  const mod = await importEsm(pathToFileURL(require.resolve('webgpu')).href);
  Object.assign(globalThis, mod.globals);
  const gpu = mod.create(['backend=null', ...DAWN_TOGGLES]);
  (globalThis as { __probeGpu?: GPU }).__probeGpu = gpu; // Dawn must outlive its devices (bench/webgpu-crash-repro.js)
  const ad = await gpu.requestAdapter();
  if (!ad) throw new Error('no null adapter');
  const dev = await ad.requestDevice({ requiredFeatures: ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as GPUFeatureName[] });
  return { dev, adapter: 'dawn null backend (compile only)', subgroupMatrix: true, wgBytes: 48 * 1024, maxBinding: 0 };
}

async function compileOnly(g: Gpu, variants: Variant[], results: VariantResult[]): Promise<void> {
  for (const v of variants) {
    const res: VariantResult = { name: v.name, tile: v.tile, status: 'ok', check: {} };
    for (const s of [...kit.stepShapes().map(kit.timed), ...kit.checks().map((c) => c.spec)]) {
      try {
        const k = kit.kernelOf(v, s, g.wgBytes);
        const info = await g.dev.createShaderModule({ code: k.code }).getCompilationInfo();
        const err = info.messages.find((m) => m.type === 'error');
        (res.check as Record<string, string>)[s.label] = err ? `WGSL ${err.lineNum}:${err.linePos} ${err.message}` : 'compiles';
        if (err) res.status = 'error';
      } catch (e) {
        (res.check as Record<string, string>)[s.label] = `error: ${(e as Error).message}`;
        res.status = 'error';
      }
    }
    log(`${v.name}: ${res.status}`);
    results.push(res);
  }
}

async function main(): Promise<void> {
  const outPath = pick('--out', 'tc-probe.json');
  const budget = Number(pick('--budget', '230'));
  const only = args.includes('--variants') ? new Set(pick('--variants', '').split(',')) : undefined;
  const variants = kit.VARIANTS.filter((v) => !only || only.has(v.name));
  let g: Gpu;
  if (args.includes('--null')) g = await openNull();
  else {
    const ed = await openEngineDevice();
    if ('error' in ed) throw new Error(ed.error);
    const c = ed.caps;
    g = {
      dev: ed.device,
      adapter: c.adapter,
      subgroupMatrix: c.subgroupMatrix,
      wgBytes: c.maxComputeWorkgroupStorageSize,
      maxBinding: c.maxStorageBufferBindingSize,
    };
  }
  const report = {
    tool: 'bench/tc-matmul-probe.ts',
    started: new Date().toISOString(),
    device: g.adapter,
    subgroupMatrix: g.subgroupMatrix,
    budgetS: budget,
    variants: [] as VariantResult[],
  };
  const save = (): void => fs.writeFileSync(outPath, JSON.stringify(report, null, 1) + '\n');
  log(`device: ${g.adapter}; subgroup matrices: ${g.subgroupMatrix}; workgroup memory ${g.wgBytes} B`);
  if (args.includes('--null')) {
    await compileOnly(g, variants, report.variants);
    save();
    return;
  }
  // Step-sized buffers, allocated and filled once (only where the timed shapes fit the device's bindings).
  const M = kit.ROWS.b32;
  const need = { A: M * kit.VP * 2, C: M * kit.VP * 4 };
  const canTime = g.subgroupMatrix && g.maxBinding >= need.C;
  const bufs: Buffers = new Map();
  if (canTime) {
    const rng = new Prng(5);
    const mk = (name: string, elems: number, type: 'f16' | 'f32', fillIt: boolean, scale = 1): void => {
      const b = kit.makeBuffer(g.dev, elems * (type === 'f16' ? 2 : 4));
      if (fillIt) kit.fill(g.dev, b, elems, type, rng, scale);
      bufs.set(name, b);
    };
    mk('A', M * kit.VP, 'f16', true);
    mk('B', 50257 * 768, 'f16', true);
    mk('C', M * kit.VP, 'f32', false);
    mk('C16', M * kit.F, 'f16', false);
    mk('res', M * kit.F, 'f32', true);
    mk('pre', M * kit.F, 'f32', true);
    mk('bias', kit.F, 'f32', true);
    mk('low', M * kit.R, 'f32', true);
    mk('mat', kit.F * kit.R, 'f32', true, 0.1);
    mk('step', 4, 'f32', false);
    await g.dev.queue.onSubmittedWorkDone();
    log(`buffers ready (${elapsed().toFixed(1)} s)`);
  }
  for (const v of variants) {
    const res: VariantResult = { name: v.name, tile: v.tile, status: 'ok' };
    report.variants.push(res);
    const emulate = args.includes('--emulate') && v.tile !== undefined;
    if (v.tc && !g.subgroupMatrix && !emulate) {
      res.status = 'unsupported';
      res.reason = 'the adapter offers no f16 subgroup matrices';
      log(`${v.name}: unsupported`);
      continue;
    }
    if (!v.tc && g.subgroupMatrix) {
      report.variants.pop(); // the harness check is for devices without tensor cores
      continue;
    }
    if (elapsed() > budget) {
      res.status = 'skipped';
      res.reason = 'time budget';
      continue;
    }
    try {
      log(`${v.name}: checking (${elapsed().toFixed(1)} s)`);
      res.check = await checkVariant(g.dev, v, g.wgBytes, emulate);
      const bad = Object.values(res.check).filter((e) => typeof e === 'string' || e > 1e-5);
      if (bad.length) {
        res.status = Object.values(res.check).every((e) => typeof e === 'string') ? 'error' : 'failed-check';
        log(`${v.name}: ${res.status} ${JSON.stringify(res.check)}`);
      } else if (canTime && !emulate) await timeVariant(g.dev, v, g.wgBytes, bufs, budget, res);
      log(`${v.name}: ${res.status} step matmul ms ${JSON.stringify(res.stepMatmulMs ?? {})} compile ${res.compileMs ?? 0} ms`);
    } catch (e) {
      res.status = 'error';
      res.reason = String((e as Error).message ?? e).split('\n')[0];
      log(`${v.name}: error ${res.reason}`);
    }
    save();
  }
  save();
  const ok = report.variants.filter((r) => r.stepMatmulMs && Number.isFinite(r.stepMatmulMs.b32));
  ok.sort((x, y) => (x.stepMatmulMs?.b32 ?? 0) - (y.stepMatmulMs?.b32 ?? 0));
  log(`ranking (step matmul ms at b32 / b8): ${ok.map((r) => `${r.name} ${r.stepMatmulMs?.b32}/${r.stepMatmulMs?.b8}`).join(', ')}`);
  log(`wrote ${outPath} (${elapsed().toFixed(1)} s)`);
}

main().then(
  () => process.exit(0),
  (e) => {
    log(`ERROR ${(e as Error).stack ?? e}`);
    process.exit(1);
  },
);
