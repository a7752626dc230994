// FLoRA on the WebGPU engine, for `npm run test:gpu` (called from test/gpu-engine.ts; alone: --only-flora): on the demo
// GPT-2, a tiny Qwen2 (biases, untied head) and a tiny Qwen3 (per-head q/k norms, q/k/v/o biases), every path:
//  - the merge, a version of rank 24 and one of rank K (the dense form): every value of the merged `w` against
//    W0 + B·A in float64 (within the f32 sum's rounding bound, plus one f16 rounding to the nearest on f16/tc;
//    untouched projections bit for bit), and one step at lr 0 against tfjs's loss on the same batch through MergedBase (the tfjs FLoRA
//    round's forward);
//  - W0 back: restoreBase leaves `w` bit-identical to a fresh engine's, writing into the merged modules only; and after
//    two merges of different module sets (the second drops some of the first's: those get W0 back before it merges);
//  - the f16 rounding alone (BaseMerger on its own buffer, a zero product): every value, ties, subnormals and the
//    largest finite included, rounds to the very f16 the host's upload gives (half.ts);
//  - a FLoRA round of the engine trainer against the tfjs trainer's on the same task (same seeded fresh LoRA, same
//    data order): mean train loss within 1%, and on f32 the uploads within 2% of the distance they moved (the
//    tolerances of the other engine-vs-tfjs runs here) while the same round on W0 ends ten times farther away; the
//    stack and the round's own model scored as tfjs scores them;
//  - a plain task after a FLoRA round on the same (cached) engine gives a fresh engine's adapter bit for bit, and a
//    FLoRA round after it the first one's.
// What the merge costs, on the GPU against the host: bench/engine-flora-merge.ts.
import * as tf from '@tensorflow/tfjs-core';
import * as path from 'node:path';
import { loadGpt2Dir, type CausalLm } from '../client-sdk/model/load';
import { LlamaModel } from '../client-sdk/model/llama';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { initLoraAdapter, loraScaling, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import type { NamedTensor } from '../proto/tensors';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { packBatch } from '../client-sdk/sft/pack';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { floraFreshAdapter, floraFreshLora, floraLocalModel, floraUpload, MergedBase, stackLayout } from '../client-sdk/sft/flora-site';
import type { EngineDevice } from '../client-sdk/engine/device';
import { LoraEngine } from '../client-sdk/engine/engine';
import { EngineSftTrainer } from '../client-sdk/engine/trainer';
import type { EnginePath } from '../client-sdk/engine/program';
import type { TrainingPlan } from '../client-sdk/trainer';
import { TINY_LLAMAS, weightsFor } from './gpu-engine-llama';
import { packedProjections, projectionAt } from '../client-sdk/engine/weights';
import { halfToFloat, toHalfBits } from '../client-sdk/engine/half';
import { loraModules } from '../proto/model/lora-stack';
import { BaseMerger } from '../client-sdk/engine/merge';
import { covered, regions, writesTo } from './engine-writes';

type Check = (name: string, ok: boolean, detail: string) => void;
const MODEL_DIR = path.resolve(__dirname, '..', '..', 'examples', 'base-model');

function synthTask(V: number, n: number, seed: number, len: number): { prompt: number[]; completion: number[] }[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => {
    const prompt = Array.from({ length: len }, () => 1 + rng.nextInt(Math.min(V - 1, 200)));
    return { prompt, completion: prompt.slice().reverse() };
  });
}

/** A version as the coordinator sends it: rank r at scaling 1, non-zero factors (a real delta) on `targets`. */
function stackOf(model: CausalLm, r: number, targets: string[], seed: number, scale: number): NamedTensor[] {
  return initLoraAdapter(model.config, { r, alpha: r, dropout: 0, targetModules: targets }, seed).map((t) => {
    const rng = new Prng(seed + 1, t.data.length);
    return { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * scale) };
  });
}

const same = (a: ArrayBufferView, b: ArrayBufferView): boolean =>
  Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
const dist = (a: readonly NamedTensor[], b: readonly NamedTensor[]): number =>
  Math.sqrt(a.reduce((s, t, k) => s + t.data.reduce((u, x, i) => u + (x - b[k].data[i]) ** 2, 0), 0));

/** The merge and W0 back, on a LoraEngine directly: one step's loss at lr 0 against tfjs through MergedBase. */
const toHalf = (x: number): number => toHalfBits(Float32Array.of(x))[0];

/**
 * The worst excess of the engine's merged `w` over its bound: per merged element |w − (W0 + Σ B·A)| (float64) within
 * e = (r + 2)·2⁻²⁴·(|W0| + Σ|B·A|) (the f32 sum) plus, on f16/tc, half an f16 ulp of the f32 sum (≤ 2⁻¹¹·(|x| + e) +
 * 2⁻²⁵: the merge rounds to the nearest; a driver's other neighbour would show as up to twice the bound); every other
 * element W0's stored form exactly. ≤ 1 passes.
 */
function mergedExcess(w: ArrayBuffer, w0: Float32Array, half: boolean, layout: LoraEngine['layout'], stack: readonly NamedTensor[]): number {
  const got = half ? Float64Array.from(new Uint16Array(w, 0, w0.length), halfToFloat) : Float64Array.from(new Float32Array(w, 0, w0.length));
  const want = Float64Array.from(w0, (x) => (half ? halfToFloat(toHalf(x)) : x));
  const bound = new Float64Array(w0.length);
  for (const m of loraModules(stack)) {
    const P = projectionAt(layout, m.path);
    const r = m.a.shape[0];
    for (let i = 0; i < P.inF; i++)
      for (let o = 0; o < P.outF; o++) {
        const at = P.w + i * P.outF + o;
        let sum = w0[at];
        let abs = Math.abs(w0[at]);
        for (let k = 0; k < r; k++) {
          const t = m.b.data[o * r + k] * m.a.data[k * P.inF + i];
          sum += t;
          abs += Math.abs(t);
        }
        want[at] = sum;
        const e = (r + 2) * 2 ** -24 * abs;
        bound[at] = e + (half ? 2 ** -11 * (Math.abs(sum) + e) + 2 ** -25 : 0);
      }
  }
  let worst = 0;
  for (let j = 0; j < got.length; j++) {
    const d = Math.abs(got[j] - want[j]);
    worst = Math.max(worst, bound[j] === 0 ? (d === 0 ? 0 : Infinity) : d / bound[j]);
  }
  return worst;
}

async function mergeParity(
  ed: EngineDevice,
  paths: EnginePath[],
  check: Check,
  name: string,
  model: CausalLm,
  site: LoraConfig,
  K: number,
  scale: readonly [number, number],
  /** Two module sets, neither within the other, merged one after the other before W0 goes back. */
  sets: readonly [string[], string[]],
): Promise<void> {
  const cfg = model.config;
  const weights = await model.namedWeights();
  const fresh = initLoraAdapter(cfg, site, 5); // B = 0: the step's loss is the merged model's
  const ex = synthTask(cfg.vocabSize, 3, 11, 14);
  const packed = packBatch(
    ex.map((e) => {
      const tokens = [...e.prompt, ...e.completion];
      return { tokens, pairs: tokens.slice(e.prompt.length).map((target, k) => ({ pos: e.prompt.length + k - 1, target })) };
    }),
    32,
  );
  const pairPos = Int32Array.from(packed.pairRow, (r) => packed.rows[r]);
  const lossOf = (merged?: MergedBase): number =>
    tf.tidy(() => -tf.mean(pairLogProbs(model, packed, merged ? { merged: merged.weights } : {}, false)).dataSync()[0]);
  const base = lossOf();
  const stacks = [stackOf(model, 24, site.targetModules as string[], 7, scale[0]), stackOf(model, K, site.targetModules as string[], 8, scale[1])];
  const refs = stacks.map((s) => {
    const m = new MergedBase(model, s);
    const l = lossOf(m);
    m.dispose();
    return l;
  });
  const flat = new Float32Array(fresh.reduce((n, t) => n + t.data.length, 0));
  fresh.reduce((at, t) => (flat.set(t.data, at), at + t.data.length), 0);
  for (const p of paths) {
    const opts = { config: cfg, weights, adapter: fresh, batch: packed.batch, seq: packed.seq, path: p, loraScale: loraScaling(site) };
    const e = new LoraEngine(ed, opts);
    const errs = await e.compileErrors();
    if (errs.length) {
      check(`flora ${name} ${p}: compiles`, false, errs.slice(0, 3).join(' | '));
      continue;
    }
    const step = async (): Promise<number> => {
      e.setAdapter(flat);
      e.step({ ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget, lr: 0, weightDecay: 0 });
      return (await e.readLoss())[0];
    };
    const plain = await step();
    const tol = p === 'f32' ? 1e-5 : 2e-3;
    const w0 = packedProjections(opts, e.layout);
    for (const [i, s] of stacks.entries()) {
      const t0 = performance.now();
      await e.mergeStack(s);
      const ms = performance.now() - t0;
      const excess = mergedExcess(await e.readBytes('w'), w0, p !== 'f32', e.layout, s);
      const got = await step();
      const r = s[0].shape[0];
      check(
        `flora ${name} ${p}: merged rank ${r}: w vs W0 + B·A (float64), and the loss vs tfjs MergedBase`,
        excess <= 1 && Math.abs(got - refs[i]) / refs[i] < tol,
        `worst |error|/bound ${excess.toFixed(3)}; loss engine ${got} tfjs ${refs[i]} (base ${base}, engine base ${plain}); merge ${ms.toFixed(1)} ms`,
      );
    }
    const half = p !== 'f32';
    const bytes = half ? 2 : 4;
    const pathsOf = (st: readonly NamedTensor[]): string[] => loraModules(st).map((m) => m.path);
    const eq = (a: [number, number][], b: [number, number][]): boolean => JSON.stringify(a) === JSON.stringify(b);
    const restored = covered(await writesTo(ed.device, 'w', () => e.restoreBase()), bytes);
    const w = new Uint8Array(await e.readBytes('w'));
    const f = new LoraEngine(ed, opts);
    const wFresh = new Uint8Array(await f.readBytes('w'));
    await f.dispose();
    check(
      `flora ${name} ${p}: W0 back bit for bit, written into the stack's modules only`,
      same(w, wFresh) && (await step()) === plain && eq(restored, regions(e.layout, pathsOf(stacks[1]), half)),
      `${w.length} bytes of w; loss ${plain}; ${restored.reduce((n, [a, b]) => n + b - a, 0)} of ${w.length / bytes} values written`,
    );
    // Two FLoRA tasks whose versions cover different modules, then a plain task's W0.
    const [c, d] = sets.map((t, k) => stackOf(model, 24, t, 20 + k, scale[0]));
    await e.mergeStack(c);
    const dropped = pathsOf(c).filter((x) => !pathsOf(d).includes(x));
    const put = covered(await writesTo(ed.device, 'w', () => e.mergeStack(d)), bytes);
    const excess = mergedExcess(await e.readBytes('w'), w0, half, e.layout, d); // the dropped modules W0's exactly
    const back = covered(await writesTo(ed.device, 'w', () => e.restoreBase()), bytes);
    const w2 = new Uint8Array(await e.readBytes('w'));
    check(
      `flora ${name} ${p}: merges of two module sets, then W0 back: bit for bit, only the modules merged rewritten`,
      same(w2, wFresh) && excess <= 1 && eq(put, regions(e.layout, dropped, half)) && eq(back, regions(e.layout, pathsOf(d), half)),
      `${sets[0].join(' ')} then ${sets[1].join(' ')}: worst |error|/bound ${excess.toFixed(3)}, W0 back ${same(w2, wFresh)}, ${dropped.length} modules put back before the second merge`,
    );
    await e.dispose();
  }
}

/** A FLoRA round on the engine trainer against the tfjs trainer's, then a plain task and another FLoRA round after it. */
async function roundParity(ed: EngineDevice, paths: EnginePath[], check: Check, name: string, model: CausalLm, site: LoraConfig, scale: number): Promise<void> {
  const all = synthTask(model.config.vocabSize, 96, 21, 12);
  const train = all.slice(0, 64);
  const opts = { model, lora: site, train, eval: all.slice(64), evalBatchSize: 8, evalMaxSeqLen: 32 };
  const stack = stackOf(model, 24, site.targetModules as string[], 9, scale);
  const plan: TrainingPlan = {
    round: 2,
    taskId: 'flora',
    localSteps: 20,
    batchSize: 8,
    learningRate: 2e-3,
    weightDecay: 0.01,
    maxSeqLen: 32,
    seed: 4,
    loraAggregation: 'flora',
    floraRank: 2 * site.r,
  };
  const tfjs = new LoraSftTrainer(opts);
  const ref = await tfjs.train(stack, plan);
  // The same round on W0 (a version with no delta): the stack has to matter for the comparison to mean anything.
  const zero = stack.map((t) => (t.name.includes('lora_B') ? { ...t, data: new Float32Array(t.data.length) } : t));
  const onW0 = await new LoraSftTrainer(opts).train(zero, plan);
  const freshCfg = floraFreshLora(plan, site, stackLayout(stack, model.config.nLayer));
  const start = floraUpload(floraFreshAdapter(model.config, freshCfg, plan.seed), loraScaling(freshCfg), plan.floraRank!, stack);
  const plainPlan: TrainingPlan = { ...plan, loraAggregation: 'fedit', floraRank: undefined, round: 3 };
  const plainStart = initLoraAdapter(model.config, site, 3);
  const stackScore = await tfjs.evaluate(stack, { stack: true });
  for (const p of paths) {
    const t = new EngineSftTrainer({ ...opts, device: ed, path: p });
    const out = await t.train(stack, plan);
    const [a, b, c] = [out.metrics.train_loss, ref.metrics.train_loss, onW0.metrics.train_loss];
    check(
      `flora ${name} ${p}: a FLoRA round's mean train loss vs the tfjs trainer's`,
      Math.abs(a - b) / b < 0.01 && out.loraRank === site.r,
      `engine ${a.toFixed(5)} tfjs ${b.toFixed(5)} (on W0 alone ${c.toFixed(5)}); rank ${out.loraRank}, engine ${out.metrics.train_seconds.toFixed(2)} s, tfjs ${ref.metrics.train_seconds.toFixed(2)} s`,
    );
    if (p === 'f32') {
      const moved = dist(ref.adapter, start);
      const gap = dist(out.adapter, ref.adapter) / moved;
      const stackEffect = dist(onW0.adapter, ref.adapter) / moved;
      check(
        `flora ${name} ${p}: the upload is the tfjs trainer's (and not the one trained on W0)`,
        gap < 0.02 && stackEffect > Math.max(10 * gap, 1e-3),
        `difference ${(100 * gap).toFixed(3)}% of the distance moved; the round on W0 ends ${(100 * stackEffect).toFixed(3)}% away`,
      );
    }
    const own = await t.evaluate(out.adapter);
    const whole = await tfjs.evaluate(floraLocalModel(stack, out.adapter), { stack: true });
    const sc = await t.evaluate(stack, { stack: true });
    check(
      `flora ${name} ${p}: scores the stack, and its round's model (stack + own components), as tfjs does`,
      JSON.stringify(sc) === JSON.stringify(stackScore) && JSON.stringify(own) === JSON.stringify(whole),
      `stack ${sc.eval_loss} (tfjs ${stackScore.eval_loss}); after the round ${own.eval_loss}`,
    );
    const engine = t.current;
    const plainOut = await t.train(plainStart, plainPlan);
    const fresh = new EngineSftTrainer({ ...opts, device: ed, path: p });
    const want = await fresh.train(plainStart, plainPlan);
    const again = await t.train(stack, plan);
    check(
      `flora ${name} ${p}: a plain task after it trains on W0 (a fresh engine's adapter, bit for bit), a FLoRA round after that the first's`,
      t.current === engine &&
        plainOut.adapter.every((x, k) => same(x.data, want.adapter[k].data)) &&
        again.adapter.every((x, k) => same(x.data, out.adapter[k].data)),
      `same engine ${t.current === engine}; plain loss ${plainOut.metrics.train_loss} vs fresh ${want.metrics.train_loss}`,
    );
    await fresh.dispose();
    await t.dispose();
  }
}

/** The merge kernel's f16 rounding against half.ts on values chosen to be hard: exact ties, subnormals, ± extremes. */
async function nearestF16(ed: EngineDevice, check: Check): Promise<void> {
  const v: number[] = [0, -0, 1, -1, 65504, -65504, 2 ** -24, 2 ** -25, 3 * 2 ** -25, 2 ** -14, 0.1, -0.1, 1 / 3];
  // Exact midpoints between neighbouring f16 values (ties: to even, odd and even lower neighbours), and either side.
  for (const h of [0x0000, 0x0001, 0x0002, 0x03ff, 0x0400, 0x3c00, 0x3c01, 0x3c02, 0x6400, 0x7bfe]) {
    const mid = (halfToFloat(h) + halfToFloat(h + 1)) / 2;
    v.push(mid, Math.fround(mid * (1 + 2 ** -20)), Math.fround(mid * (1 - 2 ** -20)));
  }
  const rng = new Prng(3);
  for (let i = 0; i < 4000; i++) v.push(Math.fround((rng.nextFloat() - 0.5) * 2 ** (rng.nextInt(30) - 20)));
  const w0 = Float32Array.from(v, (x, i) => (i % 2 ? -x : x));
  const n = w0.length + (w0.length & 1);
  const dev = ed.device;
  const buf = dev.createBuffer({ size: 2 * n, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST });
  await new BaseMerger(dev, buf, 'f16').merge([
    { offset: 0, inF: 1, outF: w0.length, r: 1, w0: () => w0, a: new Float32Array(1), b: new Float32Array(w0.length) },
  ]);
  const read = dev.createBuffer({ size: 2 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = dev.createCommandEncoder();
  enc.copyBufferToBuffer(buf, 0, read, 0, 2 * n);
  dev.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const got = new Uint16Array(read.getMappedRange().slice(0), 0, w0.length);
  read.unmap();
  const want = toHalfBits(w0);
  const bad = [...got.keys()].filter((i) => got[i] !== want[i]);
  check(
    'flora merge: f16 rounding to the nearest, ties to even, as the host uploads W0',
    bad.length === 0,
    `${w0.length} values, ${bad.length} differ${bad.length ? ` (first ${w0[bad[0]]}: ${got[bad[0]].toString(16)} vs ${want[bad[0]].toString(16)})` : ''}`,
  );
  buf.destroy();
  read.destroy();
}

/** `models` (--flora-models gpt2,qwen2,qwen3): those models' checks only; absent, all of them. */
export async function floraEngineTests(ed: EngineDevice, paths: EnginePath[], check: Check, models?: readonly string[]): Promise<void> {
  const picked = (name: string): boolean => !models || models.includes(name.split(' ')[0]);
  if (ed.caps.f16) await nearestF16(ed, check);
  if (picked('gpt2')) await floraGpt2(ed, paths, check);
  if (picked(TINY_LLAMAS[1].name)) await floraQwen2(ed, paths, check);
  if (picked(TINY_LLAMAS[2].name)) await floraQwen3(ed, paths, check);
}

async function floraGpt2(ed: EngineDevice, paths: EnginePath[], check: Check): Promise<void> {
  const { model: gpt2 } = await loadGpt2Dir(MODEL_DIR);
  const gSite: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
  await mergeParity(
    ed,
    paths,
    check,
    'gpt2',
    gpt2,
    gSite,
    gpt2.config.nEmbd,
    [0.3, 0.2],
    [
      ['c_attn', 'c_fc'],
      ['c_fc', 'c_proj'],
    ],
  );
  await roundParity(ed, paths, check, 'gpt2', gpt2, gSite, 0.3);
  gpt2.dispose();
}

async function floraQwen2(ed: EngineDevice, paths: EnginePath[], check: Check): Promise<void> {
  const { name, config } = TINY_LLAMAS[1];
  const llama = LlamaModel.fromTensors(config, randomLlamaWeights(config, 3, 0.08));
  const lSite: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj', 'o_proj', 'down_proj'] };
  await mergeParity(
    ed,
    paths,
    check,
    name,
    llama,
    lSite,
    config.nEmbd,
    [0.6, 0.5],
    [
      ['q_proj', 'v_proj'],
      ['v_proj', 'k_proj', 'down_proj'],
    ],
  );
  await roundParity(ed, paths, check, name, llama, lSite, 0.6);
  llama.dispose();
}

async function floraQwen3(ed: EngineDevice, paths: EnginePath[], check: Check): Promise<void> {
  // Qwen3: W0 merged under the per-head q/k norms (drawn away from 1, with q/k/v/o biases); q_proj 32 → 64.
  const q3 = TINY_LLAMAS[2];
  const qwen3 = LlamaModel.fromTensors(q3.config, weightsFor(q3.config, 3));
  const qSite: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'o_proj', 'up_proj'] };
  await mergeParity(
    ed,
    paths,
    check,
    q3.name,
    qwen3,
    qSite,
    q3.config.nEmbd,
    [0.6, 0.5],
    [
      ['q_proj', 'k_proj'],
      ['k_proj', 'o_proj', 'up_proj'],
    ],
  );
  await roundParity(ed, paths, check, q3.name, qwen3, qSite, 0.6);
  qwen3.dispose();
}
