// GPU test script for the WebGPU engine (`npm run test:gpu`; needs a WebGPU adapter, so it is not part of the
// CI suite). Checks the matmul kernels against a CPU product, one full training step (loss and every adapter
// gradient) against the tfjs reference on the same weights and data, determinism, FedProx against the tfjs trainer,
// FFA-LoRA (lora_A frozen: bit for bit, loss against tfjs), client SGD (its kernel against tfjs's ops, a run
// against the tfjs trainer), a 200-step run against the tfjs trainer, the same checks for the Llama family
// (gpu-engine-llama.ts), LoRA dropout against tfjs with the same masks (gpu-engine-dropout.ts), and GPU failures
// with the fallback after them (gpu-fallback.ts), FLoRA rounds and stacks (gpu-engine-flora.ts), and sliding-window
// attention (gpu-engine-window.ts). Prints
// `tests: N passed, N failed` like the mocha reporter.
//   node dist/test/gpu-engine.js [--paths f32,f16,tc] [--long] [--only-attention | --only-fallback | --only-sgd | --only-scaffold | --only-llama | --only-dropout | --only-flora | --only-window | --only-matmul | --only-tuning] [--skip-llama] [--llama-configs qwen3,llama,mistral] [--flora-models gpt2,qwen2,qwen3] [--tuning]
// SCAFFOLD's update lines against the tfjs trainer: gpu-engine-scaffold.ts.
import * as tf from '@tensorflow/tfjs-core';
import '../client-sdk/model/gradients';
import * as path from 'node:path';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { initLoraAdapter, loraScaling, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import { FlatAdapter } from '../client-sdk/sft/flat-adapter';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { packBatch } from '../client-sdk/sft/pack';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { choosePath, openEngineDevice, type EngineDevice } from '../client-sdk/engine/device';
import { EngineSftTrainer } from '../client-sdk/engine/trainer';
import { progressRun } from './gpu-engine-progress';
import type { EnginePath } from '../client-sdk/engine/program';
import { sgd } from '../client-sdk/engine/optimizer';
import { STEP } from '../client-sdk/engine/loss';
import type { NamedTensor } from '../proto/tensors';
import { attentionTests } from './gpu-attention';
import { fallbackTests } from './gpu-fallback';
import { llamaEngineTests } from './gpu-engine-llama';
import { dropoutEngineTests } from './gpu-engine-dropout';
import { scaffoldTests } from './gpu-engine-scaffold';
import { tuningTests } from './gpu-engine-tuning';
import { relErr } from './rel-err';
import { engineStep, stepTolerance } from './gpu-engine-step';
import { matmulTests, runKernel } from './gpu-engine-matmul';
import { floraEngineTests } from './gpu-engine-flora';
import { windowTests } from './gpu-engine-window';

const MODEL_DIR = path.resolve(__dirname, '..', '..', 'examples', 'base-model');
const LORA: LoraConfig = { r: 16, alpha: 32, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
let passed = 0;
let failed = 0;
const log = (s: string): void => console.log(s);
function check(name: string, ok: boolean, detail: string): void {
  if (ok) passed++;
  else failed++;
  log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
}

function synthTask(V: number, n: number, seed: number, promptLen: number, complLen: number): { prompt: number[]; completion: number[] }[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => {
    const prompt = Array.from({ length: promptLen }, () => 1 + rng.nextInt(Math.min(V - 1, 200)));
    // A learnable rule: the completion repeats the prompt's tokens in reverse.
    return { prompt, completion: prompt.slice().reverse().slice(0, complLen) };
  });
}

async function stepParity(ed: EngineDevice, paths: EnginePath[]): Promise<void> {
  const { model } = await loadGpt2Dir(MODEL_DIR);
  const cfg = model.config;
  const weights = await model.namedWeights();
  // A non-zero B so that every gradient (A's too) is non-trivial.
  const adapter: NamedTensor[] = initLoraAdapter(cfg, LORA, 5).map((t) => {
    const rng = new Prng(9, t.data.length);
    return t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.05) } : t;
  });
  const B = 4;
  const T = 48;
  const ex = synthTask(cfg.vocabSize, B, 11, 20, 20);
  const packed = packBatch(
    ex.map((e) => {
      const tokens = [...e.prompt, ...e.completion];
      return { tokens, pairs: tokens.slice(e.prompt.length).map((target, i) => ({ pos: e.prompt.length + i - 1, target })) };
    }),
    T,
  );
  // tfjs reference: loss and gradient of the flat adapter.
  const flat = new FlatAdapter(adapter);
  const scaling = loraScaling(LORA);
  const { value, grads } = tf.variableGrads(
    () => tf.neg(tf.mean(pairLogProbs(model, packed, { lora: { modules: flat.modules(), scaling, dropout: 0 } }, true))) as tf.Scalar,
    [flat.theta],
  );
  const refLoss = (await value.data())[0];
  const refGrad = new Float32Array(await grads[flat.theta.name].data());
  const theta0 = new Float32Array(await flat.theta.data());
  const Tn = packed.seq;
  const pairPos = Int32Array.from(packed.pairRow, (r) => packed.rows[r]);
  const inp = { ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget };
  for (const p of paths) {
    const run = await engineStep(ed, { config: cfg, weights, adapter, batch: B, seq: Tn, path: p, loraScale: scaling }, theta0, inp, check, `step ${p}`);
    if (!run) continue;
    const { e, loss, grad } = run;
    const tol = stepTolerance(p);
    check(
      `step ${p}: loss vs tfjs`,
      Math.abs(loss - refLoss) / refLoss < tol.loss,
      `engine ${loss} tfjs ${refLoss} (${e.dispatchesPerStep} dispatches, ${e.pipelineCount} pipelines)`,
    );
    // per tensor
    let worst = 0;
    let worstName = '';
    let off = 0;
    for (const t of adapter) {
      const n = t.data.length;
      const er = relErr(grad.subarray(off, off + n), refGrad.subarray(off, off + n));
      if (er > worst) [worst, worstName] = [er, t.name.replace('base_model.model.transformer.', '')];
      off += n;
    }
    check(
      `step ${p}: every adapter gradient vs tfjs`,
      worst < tol.grad,
      `worst per-tensor rel err ${worst.toExponential(2)} (${worstName}); global ${relErr(grad, refGrad).toExponential(2)}`,
    );
    // determinism: same inputs → same bytes
    e.setAdapter(theta0);
    e.step({ ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget, lr: 1e-3, weightDecay: 0.01 });
    const th1 = await e.readF32('theta', e.layout.adapterSize);
    e.setAdapter(theta0);
    e.step({ ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget, lr: 1e-3, weightDecay: 0.01 });
    const th2 = await e.readF32('theta', e.layout.adapterSize);
    check(`step ${p}: deterministic`, Buffer.compare(Buffer.from(th1.buffer), Buffer.from(th2.buffer)) === 0, 'two runs, same adapter bytes');
    await e.dispose();
  }
  flat.dispose();
  model.dispose();
}

async function longRun(ed: EngineDevice, paths: EnginePath[], steps: number): Promise<void> {
  const { model } = await loadGpt2Dir(MODEL_DIR);
  const train = synthTask(model.config.vocabSize, 256, 21, 12, 12);
  const adapter = initLoraAdapter(model.config, LORA, 1);
  const plan = { round: 1, taskId: 'parity', localSteps: steps, batchSize: 8, learningRate: 2e-3, weightDecay: 0.01, maxSeqLen: 32, seed: 4 };
  const ref = await new LoraSftTrainer({ model, lora: LORA, train }).train(adapter, plan);
  for (const p of paths) {
    const t = new EngineSftTrainer({ model, lora: LORA, train, device: ed, path: p });
    const out = await t.train(adapter, plan);
    const a = out.metrics.train_loss;
    const b = ref.metrics.train_loss;
    const tol = 0.01;
    check(
      `${steps} steps ${p}: mean train loss vs tfjs trainer`,
      Math.abs(a - b) / b < tol,
      `engine ${a.toFixed(5)} tfjs ${b.toFixed(5)} (${((100 * Math.abs(a - b)) / b).toFixed(3)}%), engine ${out.metrics.train_seconds.toFixed(2)} s, tfjs ${ref.metrics.train_seconds.toFixed(2)} s`,
    );
    await t.dispose();
  }
  model.dispose();
}

/** FFA-LoRA on the engine: lora_A comes back bit for bit, and the loss follows the tfjs trainer's (A frozen there too). */
async function ffaRun(ed: EngineDevice, paths: EnginePath[], steps: number): Promise<void> {
  const { model } = await loadGpt2Dir(MODEL_DIR);
  const train = synthTask(model.config.vocabSize, 64, 23, 12, 12);
  const adapter = initLoraAdapter(model.config, LORA, 2);
  const plan = {
    round: 1,
    taskId: 'ffa',
    localSteps: steps,
    batchSize: 8,
    learningRate: 2e-3,
    weightDecay: 0.01,
    maxSeqLen: 32,
    seed: 5,
    loraAggregation: 'ffa' as const,
  };
  const ref = await new LoraSftTrainer({ model, lora: LORA, train }).train(adapter, plan);
  for (const p of paths) {
    const t = new EngineSftTrainer({ model, lora: LORA, train, device: ed, path: p });
    const out = await t.train(adapter, plan);
    const aSame = out.adapter.every(
      (x, k) =>
        !x.name.includes('.lora_A.') ||
        Buffer.compare(Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength), Buffer.from(adapter[k].data.buffer)) === 0,
    );
    const bMoved = out.adapter.some((x, k) => x.name.includes('.lora_B.') && x.data.some((v, i) => v !== adapter[k].data[i]));
    check(`ffa ${p}: lora_A unchanged bit for bit, lora_B trained`, aSame && bMoved, `A same ${aSame}, B moved ${bMoved}`);
    const a = out.metrics.train_loss;
    const b = ref.metrics.train_loss;
    check(`ffa ${steps} steps ${p}: mean train loss vs tfjs trainer`, Math.abs(a - b) / b < 0.01, `engine ${a.toFixed(5)} tfjs ${b.toFixed(5)}`);
    await t.dispose();
  }
  model.dispose();
}

/**
 * FedProx on the engine: 30 steps with μ = 5 from a nonzero adapter against the tfjs trainer's run with the same μ
 * (f32: the adapters within 2% of the distance they moved), and on every path nearer the start than without μ.
 */
async function proximalRun(ed: EngineDevice, paths: EnginePath[]): Promise<void> {
  const { model } = await loadGpt2Dir(MODEL_DIR);
  const train = synthTask(model.config.vocabSize, 128, 23, 12, 12);
  const adapter = initLoraAdapter(model.config, LORA, 1).map((t) => ({ ...t, data: t.data.map((x, i) => (x === 0 ? 0.01 * ((i % 5) - 2) : x)) }));
  const plan = { round: 1, taskId: 'fedprox', localSteps: 30, batchSize: 8, learningRate: 2e-3, weightDecay: 0, maxSeqLen: 32, seed: 4 };
  const dist = (a: readonly NamedTensor[], b: readonly NamedTensor[]): number =>
    Math.sqrt(a.reduce((s, t, k) => s + t.data.reduce((u, x, i) => u + (x - b[k].data[i]) ** 2, 0), 0));
  const ref = await new LoraSftTrainer({ model, lora: LORA, train }).train(adapter, { ...plan, proximalMu: 5 });
  for (const p of paths) {
    const t = new EngineSftTrainer({ model, lora: LORA, train, device: ed, path: p });
    const free = await t.train(adapter, plan);
    const held = await t.train(adapter, { ...plan, proximalMu: 5 });
    const [dFree, dHeld] = [dist(free.adapter, adapter), dist(held.adapter, adapter)];
    check(`fedprox ${p}: μ = 5 ends nearer the start`, dHeld < 0.8 * dFree, `moved ${dHeld.toExponential(3)} with μ, ${dFree.toExponential(3)} without`);
    if (p === 'f32') {
      const gap = dist(held.adapter, ref.adapter) / dist(ref.adapter, adapter);
      check(`fedprox ${p}: same adapter as the tfjs trainer's`, gap < 0.02, `difference ${(100 * gap).toFixed(3)}% of the distance moved`);
    }
    await t.dispose();
  }
  model.dispose();
}

/**
 * Client SGD on the engine: the update kernel alone against tfjs's ops (sft/local-optimizer.ts) on random values,
 * with momentum, decay, clip and FedProx's term; then 30 steps of SGD with momentum 0.9 (and FedProx) against the
 * tfjs trainer's run (f32: the adapters within 2% of the distance they moved; every path: mean loss within 1%).
 */
async function sgdRun(ed: EngineDevice, paths: EnginePath[]): Promise<void> {
  const n = 3000;
  const rng = new Prng(31);
  const vals = (scale: number): Float32Array => Float32Array.from({ length: n }, () => (rng.nextFloat() - 0.5) * scale);
  const [theta, grad, buf, anchor] = [vals(1), vals(0.1), vals(0.1), vals(1)];
  const [lr, decay, momentum, mu, maxNorm, norm] = [0.05, Math.fround(1 - 0.05 * 0.01), 0.9, 0.5, 0.3, 1.7];
  const step = new Float32Array(8);
  [step[STEP.lr], step[STEP.decay], step[STEP.clip], step[STEP.mu]] = [lr, decay, maxNorm, mu];
  const got = await runKernel(ed, sgd(n, momentum, true, true), { step, grad, theta, adamM: buf, anchor, norm: Float32Array.of(norm) }, 'theta', n);
  const want = tf.tidy(() => {
    // tfjs: clip scale, FedProx's gradient, decoupled decay, b = m·b + g, θ − lr·b (the trainer's op order).
    const th = tf.tensor1d(theta);
    const g = tf.add(tf.mul(tf.tensor1d(grad), Math.min(1, maxNorm / (norm + 1e-6))), tf.mul(tf.sub(th, tf.tensor1d(anchor)), mu));
    const b = tf.add(tf.mul(tf.tensor1d(buf), momentum), g);
    return tf.sub(tf.mul(th, decay), tf.mul(b, lr)).dataSync() as Float32Array;
  });
  check('sgd kernel (momentum, decay, clip, FedProx) vs tfjs ops', relErr(got, want) < 1e-6, `rel err ${relErr(got, want).toExponential(2)}`);

  const { model } = await loadGpt2Dir(MODEL_DIR);
  const train = synthTask(model.config.vocabSize, 128, 29, 12, 12);
  const adapter = initLoraAdapter(model.config, LORA, 1).map((t) => ({ ...t, data: t.data.map((x, i) => (x === 0 ? 0.01 * ((i % 5) - 2) : x)) }));
  const plan = {
    round: 1,
    taskId: 'sgd',
    localSteps: 30,
    batchSize: 8,
    learningRate: 0.05,
    weightDecay: 0,
    maxSeqLen: 32,
    seed: 4,
    proximalMu: 0.5,
    optimizer: { name: 'sgd' as const, momentum: 0.9 },
  };
  const dist = (a: readonly NamedTensor[], b: readonly NamedTensor[]): number =>
    Math.sqrt(a.reduce((s, t, k) => s + t.data.reduce((u, x, i) => u + (x - b[k].data[i]) ** 2, 0), 0));
  const ref = await new LoraSftTrainer({ model, lora: LORA, train }).train(adapter, plan);
  for (const p of paths) {
    const t = new EngineSftTrainer({ model, lora: LORA, train, device: ed, path: p });
    const out = await t.train(adapter, plan);
    const [a, b] = [out.metrics.train_loss, ref.metrics.train_loss];
    check(`sgd 30 steps ${p}: mean train loss vs tfjs trainer`, Math.abs(a - b) / b < 0.01, `engine ${a.toFixed(5)} tfjs ${b.toFixed(5)}`);
    if (p === 'f32') {
      const gap = dist(out.adapter, ref.adapter) / dist(ref.adapter, adapter);
      check(`sgd ${p}: same adapter as the tfjs trainer's`, gap < 0.02, `difference ${(100 * gap).toFixed(3)}% of the distance moved`);
    }
    await t.dispose();
  }
  model.dispose();
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const backend = await selectBackend({ force: (process.env.FEDTUNE_TEST_TFJS as 'wasm' | 'cpu' | undefined) ?? 'wasm' });
  const ed = await openEngineDevice();
  if ('error' in ed) throw new Error(ed.error);
  log(
    `adapter: ${ed.caps.adapter}; f16 ${ed.caps.f16}, subgroup matrix ${ed.caps.subgroupMatrix}, subgroup ${ed.caps.subgroupMinSize}-${ed.caps.subgroupMaxSize}; tfjs reference on ${backend}`,
  );
  const want = args.includes('--paths') ? (args[args.indexOf('--paths') + 1].split(',') as EnginePath[]) : (['f32', 'f16', 'tc'] as EnginePath[]);
  const paths = want.filter((p) => {
    try {
      choosePath(ed.caps, p);
      return true;
    } catch (e) {
      log(`skip ${p}: ${(e as Error).message}`);
      return false;
    }
  });
  const onlyLlama = args.includes('--only-llama');
  const listArg = (flag: string): string[] | undefined => (args.includes(flag) ? args[args.indexOf(flag) + 1].split(',') : undefined);
  const only = (
    ['--only-attention', '--only-fallback', '--only-sgd', '--only-scaffold', '--only-llama', '--only-dropout', '--only-flora', '--only-window'] as const
  ).find((a) => args.includes(a));
  if (args.includes('--only-tuning')) await tuningTests(ed, paths, check);
  else if (args.includes('--only-matmul')) {
    // the matmul kernels and one full step against tfjs: the checks a matmul kernel change needs, in about a minute
    await matmulTests(ed, paths, check);
    await stepParity(ed, paths);
    if (args.includes('--tuning')) await tuningTests(ed, paths, check);
  } else if (only === '--only-sgd') await sgdRun(ed, paths);
  else if (only === '--only-scaffold') await scaffoldTests(ed, paths, check);
  else if (only === '--only-dropout') await dropoutEngineTests(ed, paths, check, { long: args.includes('--long') });
  else if (only === '--only-flora') await floraEngineTests(ed, paths, check, listArg('--flora-models'));
  else if (only === '--only-window') await windowTests(ed, paths, check);
  else if (only === undefined || only === '--only-attention') await attentionTests(ed, check);
  const narrow = args.includes('--only-matmul') || args.includes('--only-tuning');
  if (only === undefined && !narrow) {
    if (!args.includes('--skip-matmul')) await matmulTests(ed, paths, check);
    await stepParity(ed, paths);
    // Each choice against none (minutes of tc compiles): with --tuning, or alone with --only-tuning / --only-matmul.
    if (args.includes('--tuning')) await tuningTests(ed, paths, check);
    await ffaRun(ed, paths, 20);
    await proximalRun(ed, paths);
    await progressRun(ed, paths, check);
    await sgdRun(ed, paths);
    await scaffoldTests(ed, paths, check);
    await dropoutEngineTests(ed, paths, check, { long: args.includes('--long') });
    await floraEngineTests(ed, paths, check);
    await windowTests(ed, paths, check);
    if (args.includes('--long')) await longRun(ed, paths, Number(process.env.LONG_STEPS ?? 200));
  }
  if ((only === undefined || onlyLlama) && !args.includes('--skip-llama') && !narrow)
    await llamaEngineTests(ed, paths, check, {
      long: args.includes('--long'),
      steps: Number(process.env.LONG_STEPS ?? 200),
      ...(args.includes('--llama-configs') ? { configs: listArg('--llama-configs') } : {}),
    });
  // GPU failures made real (device lost, validation error, NaN) and the fallback after them; on its own device.
  if ((only === undefined && !narrow) || only === '--only-fallback') await fallbackTests(check);
  await ed.device.queue.onSubmittedWorkDone();
  log(`tests: ${passed} passed, ${failed} failed`);
  ed.device.destroy();
  process.exit(failed ? 1 : 0);
}

main().catch((e: Error) => {
  console.error(e.stack ?? e);
  console.log(`tests: ${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
