// Where the engine's GPT-2-small step spends its time, kernel by kernel, warm and in the step's own order: the
// step is recorded as usual except that every dispatch gets its own compute pass with begin/end GPU timestamps
// ('timestamp-query'; Dawn's timestamp quantization turned off where the flag is honoured). For each tuning
// variant (client-sdk/engine/tuning.ts) it builds the engine, times 20 ordinary steps (wall clock, one submit
// each, as engine-throughput.ts does), then profiles a few steps and sums the GPU time by kernel kind (the label
// without its layer). Without 'timestamp-query' it falls back to LoraEngine.profile (each kernel alone, repeated).
// Prints one JSON object (rewritten to --out after every variant, so a crash keeps what was measured).
//   node dist/bench/engine-profile.js [--batch 32] [--steps 20] [--reps 4] [--variants base,loraT] [--budget 420] [--out p.json]
//   node dist/bench/engine-profile.js --tune '{"loraT":true}'      # one ad-hoc variant
//   ... --path f16 --tiny                                          # plumbing check on lavapipe (a 2-layer model)
import * as fs from 'node:fs';
import { openEngineDevice, type EngineDevice } from '../client-sdk/engine/device';
import { LoraEngine, type StepInput } from '../client-sdk/engine/engine';
import { checkTuning, DEFAULT_TUNING, type EngineTuning } from '../client-sdk/engine/tuning';
import { initLoraAdapter, loraScaling } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import { selectBackend } from '../client-sdk/model/backend';
import { GPT2_LORA, randomGpt2Small } from './throughput-models';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import type { EnginePath } from '../client-sdk/engine/program';

const args = process.argv.slice(2);
const pick = (flag: string, dflt: string): string => (args.includes(flag) ? args[args.indexOf(flag) + 1] : dflt);
const log = (s: string): void => void fs.writeSync(2, s + '\n');
const t0 = performance.now();
const elapsed = (): number => (performance.now() - t0) / 1000;

/** Named variants: the candidates bench/RESULTS.md §4d compares. */
const VARIANTS: Record<string, EngineTuning> = {
  // 'base': none of the choices (the kernels before tuning.ts); 'default': DEFAULT_TUNING, what the engine runs.
  base: {},
  default: DEFAULT_TUNING,
  'all+epi': { loraT: true, loraSplitK: 256, attnTiled: true, epiSplit: true },
  epiSplit: { epiSplit: true },
  loraT: { loraT: true },
  split: { loraSplitK: 256 },
  'loraT+split': { loraT: true, loraSplitK: 256 },
  'fwd-s4x2': { tiles: [['^fwd ', 's4x2-t2x4-k32-db-p8-v1']] },
  'fwd-d2x1': { tiles: [['^fwd ', 'd2x1-t4x4']] },
  'fwd-t2x4': { tiles: [['^fwd ', 's2x2-t2x4-k32-db-p8-v1']] },
  'fwd-k64': { tiles: [['^fwd ', 's2x2-t4x4-k64-p8-v1']] },
  'bwd-s4x2': { tiles: [['^bwd\\.dx ', 's4x2-t2x4-k32-db-p8-v1']] },
  'dhs-s': { tiles: [['^lm\\.dhs', 's2x2-t4x4-k32-db-p8-v1']] },
  attnT: { attnTiled: true },
  attnVec: { attnVec: true },
  'attnT+vec': { attnTiled: true, attnVec: true },
  'all-safe': { loraT: true, loraSplitK: 256, attnTiled: true },
};

interface VariantOut {
  name: string;
  tuning: EngineTuning;
  build_s?: number;
  dispatches?: number;
  pipelines?: number;
  step_ms?: number[];
  loss?: number;
  /** GPU ms per step by kernel kind, largest first, and how many dispatches of that kind a step has. */
  kinds?: { kind: string; ms: number; count: number }[];
  gpu_sum_ms?: number;
  /** First begin to last end of a profiled step (GPU), and its wall clock (per-dispatch passes). */
  span_ms?: number;
  profiled_wall_ms?: number;
  /** Share of timestamp differences that are multiples of 65,536 ns (Dawn's quantization). */
  quantized?: number;
  method?: 'timestamps' | 'isolated';
  error?: string;
}

function stepInput(B: number, T: number, V: number): StepInput {
  const rng = new Prng(7);
  const ids = Int32Array.from({ length: B * T }, () => rng.nextInt(V));
  const pos: number[] = [];
  const tgt: number[] = [];
  for (let b = 0; b < B; b++)
    for (let t = 0; t + 1 < T; t++) {
      pos.push(b * T + t);
      tgt.push(ids[b * T + t + 1]);
    }
  return { ids, pairPos: Int32Array.from(pos), pairTarget: Int32Array.from(tgt), lr: 1e-4, weightDecay: 0 };
}

async function readQueries(ed: EngineDevice, qs: GPUQuerySet, n: number): Promise<BigUint64Array> {
  const dev = ed.device;
  const res = dev.createBuffer({ size: 8 * n, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const rd = dev.createBuffer({ size: 8 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = dev.createCommandEncoder();
  enc.resolveQuerySet(qs, 0, n, res, 0);
  enc.copyBufferToBuffer(res, 0, rd, 0, 8 * n);
  dev.queue.submit([enc.finish()]);
  await rd.mapAsync(GPUMapMode.READ);
  const out = new BigUint64Array(rd.getMappedRange().slice(0));
  rd.unmap();
  res.destroy();
  rd.destroy();
  return out;
}

async function main(): Promise<void> {
  await selectBackend({ force: 'wasm' });
  let ed = await openEngineDevice({ timestamps: true, flags: ['disable-dawn-features=timestamp_quantization'] }).catch((e: Error) => ({ error: e.message }));
  if ('error' in ed) ed = await openEngineDevice({ timestamps: true });
  if ('error' in ed) throw new Error(ed.error);
  const dev = ed.device;
  const hasTs = dev.features.has('timestamp-query');
  const B = Number(pick('--batch', '32'));
  const tiny = args.includes('--tiny');
  const T = tiny ? 32 : 256;
  const path = pick('--path', 'tc') as EnginePath;
  const steps = Number(pick('--steps', '20'));
  const reps = Number(pick('--reps', '4'));
  const budget = Number(pick('--budget', '420'));
  const out = pick('--out', '');
  const list: [string, EngineTuning][] = args.includes('--tune')
    ? [['tune', checkTuning(JSON.parse(pick('--tune', '{}')) as EngineTuning)]]
    : pick('--variants', Object.keys(VARIANTS).join(','))
        .split(',')
        .map((n) => {
          const v = VARIANTS[n];
          if (!v) throw new Error(`unknown variant '${n}' (${Object.keys(VARIANTS).join(', ')})`);
          return [n, v] as [string, EngineTuning];
        });
  const TINY = parseGpt2Config({ vocab_size: 500, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 2 });
  const model = tiny ? Gpt2Model.fromTensors(TINY, randomGpt2Weights(TINY, 1)) : randomGpt2Small();
  const cfg = model.config;
  const weights = await model.namedWeights();
  const adapter = initLoraAdapter(cfg, GPT2_LORA, 1).map((t) => {
    // A non-zero lora_B, so the forward LoRA term is not all zeros.
    const rng = new Prng(9, t.data.length);
    return t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.02) } : t;
  });
  const theta = new Float32Array(adapter.reduce((s, t) => s + t.data.length, 0));
  adapter.reduce((o, t) => (theta.set(t.data, o), o + t.data.length), 0);
  const inp = stepInput(B, T, cfg.vocabSize);
  const results: VariantOut[] = [];
  const report = (): string => {
    const json = JSON.stringify(
      { date: new Date().toISOString(), adapter: ed.caps.adapter, path, batch: B, seq: T, timestamps: hasTs, variants: results },
      null,
      1,
    );
    if (out) fs.writeFileSync(out, json + '\n');
    return json;
  };
  for (const [name, tuning] of list) {
    if (elapsed() > budget) {
      results.push({ name, tuning, error: `skipped: budget ${budget} s spent` });
      continue;
    }
    const r: VariantOut = { name, tuning };
    results.push(r);
    log(`${name}: building (${elapsed().toFixed(0)} s)`);
    let e: LoraEngine | undefined;
    try {
      const b0 = performance.now();
      e = new LoraEngine(ed, { config: cfg, weights, adapter, batch: B, seq: T, path, loraScale: loraScaling(GPT2_LORA), tuning });
      const errs = await e.compileErrors();
      if (errs.length) throw new Error(errs.join(' | '));
      e.setAdapter(theta);
      for (let i = 0; i < 3; i++) e.step(inp);
      await e.readLoss();
      r.build_s = (performance.now() - b0) / 1000;
      r.dispatches = e.dispatchesPerStep;
      r.pipelines = e.pipelineCount;
      r.step_ms = [];
      for (let round = 0; round < 2; round++) {
        const w0 = performance.now();
        for (let i = 0; i < steps; i++) e.step(inp);
        const [loss] = await e.readLoss();
        r.step_ms.push((performance.now() - w0) / steps);
        r.loss = loss;
      }
      const kinds = new Map<string, { ms: number; count: number }>();
      if (hasTs) {
        r.method = 'timestamps';
        const qs = dev.createQuerySet({ type: 'timestamp', count: 2 * e.dispatchesPerStep });
        let sum = 0;
        let span = 0;
        let wall = 0;
        let quant = 0;
        let diffs = 0;
        for (let k = 0; k < reps; k++) {
          const labels: string[] = [];
          const w0 = performance.now();
          e.step(inp, { querySet: qs, labels });
          const ts = await readQueries(ed, qs, 2 * labels.length);
          wall += performance.now() - w0;
          span += Number(ts[2 * labels.length - 1] - ts[0]) / 1e6;
          labels.forEach((label, i) => {
            const ns = Number(ts[2 * i + 1] - ts[2 * i]);
            diffs++;
            if (ns % 65536 === 0) quant++;
            const kind = label.replace(/h\d+\./, '');
            const x = kinds.get(kind) ?? { ms: 0, count: 0 };
            x.ms += ns / 1e6 / reps;
            if (k === 0) x.count++;
            kinds.set(kind, x);
            sum += ns / 1e6 / reps;
          });
        }
        qs.destroy();
        r.gpu_sum_ms = sum;
        r.span_ms = span / reps;
        r.profiled_wall_ms = wall / reps;
        r.quantized = quant / Math.max(1, diffs);
      } else {
        r.method = 'isolated';
        for (const [kind, v] of Object.entries(await e.profile(inp.pairPos.length))) kinds.set(kind, v);
        r.gpu_sum_ms = [...kinds.values()].reduce((s, v) => s + v.ms, 0);
      }
      r.kinds = [...kinds].map(([kind, v]) => ({ kind, ms: Number(v.ms.toFixed(4)), count: v.count })).sort((x, y) => y.ms - x.ms);
      log(`${name}: step ${r.step_ms.map((x) => x.toFixed(2)).join(' / ')} ms, GPU sum ${r.gpu_sum_ms.toFixed(2)} ms (${elapsed().toFixed(0)} s)`);
    } catch (err) {
      r.error = (err as Error).message.split('\n').slice(0, 3).join(' ');
      log(`${name}: ${r.error}`);
    }
    if (e) await e.dispose();
    report();
  }
  await dev.queue.onSubmittedWorkDone();
  console.log(report());
  process.exit(0);
}

main().catch((e: Error) => {
  console.error(e);
  process.exit(1);
});
