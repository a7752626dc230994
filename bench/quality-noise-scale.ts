// The gradient noise scale of the quality task (bench/QUALITY.md, run 14): how many Adam steps a larger pooled
// batch saves. McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training"): with per-example gradients
// g_i of mean G and covariance Σ, B_simple = tr(Σ)/|G|², and the steps to a given loss scale as
// S(B) ≈ S_min·(1 + B_noise/B): a batch well under B_noise needs proportionally more steps, one well over it few
// fewer. Measured here on the pooled training data of one split (the data the centralized ceiling trains on), at the
// LoRA init and after k Adam steps of the ceiling's recipe (batch 16, lr 0.002, Adam restarted every 50 steps):
// each g_i is one client SGD step at rate 1 on one example (the update is −g_i), as FedSGD's sites take them.
//   node dist/bench/quality-noise-scale.js --split groups --at 0,100,300 --samples 64
import { Command } from 'commander';
import { loadConfig, loraSettings } from '../coordinator';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { trainerForModel } from '../client-sdk/sft/lora-trainer';
import { evaluateAdapter } from '../client-sdk/sft/evaluate';
import { prepareSpamTask, DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import { initLoraAdapter } from '../proto/model/lora-layout';
import type { NamedTensor } from '../proto/tensors';
import type { TrainingPlan } from '../client-sdk/trainer';
import { SPLITS, type SplitName } from './quality-cell';

/** tr(Σ) (unbiased), |G|² (unbiased: |mean|² − tr(Σ)/n) and their ratio, over flat per-example gradients. */
export function noiseScale(grads: readonly Float64Array[]): { traceSigma: number; gradSq: number; bSimple: number } {
  const n = grads.length;
  const d = grads[0].length;
  const mean = new Float64Array(d);
  for (const g of grads) for (let j = 0; j < d; j++) mean[j] += g[j] / n;
  let ss = 0;
  for (const g of grads) for (let j = 0; j < d; j++) ss += (g[j] - mean[j]) ** 2;
  const traceSigma = ss / (n - 1);
  let m2 = 0;
  for (let j = 0; j < d; j++) m2 += mean[j] ** 2;
  const gradSq = m2 - traceSigma / n;
  return { traceSigma, gradSq, bSimple: traceSigma / gradSq };
}

const flatDiff = (a: readonly NamedTensor[], b: readonly NamedTensor[]): Float64Array => {
  const out = new Float64Array(a.reduce((s, t) => s + t.data.length, 0));
  let off = 0;
  for (const [k, t] of a.entries()) for (let j = 0; j < t.data.length; j++) out[off++] = b[k].data[j] - t.data[j];
  return out;
};

async function main(): Promise<void> {
  const o = new Command('quality-noise-scale')
    .option('--split <name>', 'split', 'groups')
    .option('--at <list>', 'Adam steps of the ceiling recipe before each measurement', '0,100,300')
    .option('--samples <n>', 'per-example gradients per measurement', '64')
    .option('--test-limit <n>', 'held-out e-mails scored at each point (where in training it is)', '200')
    .parse()
    .opts<Record<string, string>>();
  await selectBackend();
  const split = SPLITS[o.split as SplitName];
  const task = prepareSpamTask({ numClients: 5, splitSeed: 7, maxSeqLen: 128, testLimit: Number(o.testLimit), clientEvalLimit: 0, ...split });
  const train = task.clients.flatMap((c) => c.train);
  const lora = loraSettings(loadConfig({ overrides: { lora: { dropout: 0 }, model: { dir: DEFAULT_MODEL_DIR } } }));
  const { model } = await loadGpt2Dir(DEFAULT_MODEL_DIR);
  const { trainer } = await trainerForModel(model, lora, { train, choices: task.choices, evalMaxSeqLen: 128 });
  const plan = (p: Partial<TrainingPlan>): TrainingPlan => ({
    round: 1,
    taskId: 'noise',
    localSteps: 1,
    batchSize: 1,
    learningRate: 1,
    weightDecay: 0,
    maxSeqLen: 128,
    loraDropout: 0,
    seed: 1,
    ...p,
  });
  let adapter: NamedTensor[] = initLoraAdapter(model.config, lora, 1);
  let done = 0;
  const rows = [];
  for (const at of o.at.split(',').map(Number)) {
    // The ceiling's recipe up to `at`: rounds of 50 Adam steps of 16 at lr 0.002 (Adam restarted each round).
    while (done < at) {
      const k = Math.min(50, at - done);
      adapter = (await trainer.train(adapter, plan({ localSteps: k, batchSize: 16, learningRate: 0.002, seed: 1000 + done }))).adapter;
      done += k;
    }
    const grads: Float64Array[] = [];
    for (let i = 0; i < Number(o.samples); i++) {
      const out = await trainer.train(adapter, plan({ optimizer: { name: 'sgd', momentum: 0 }, seed: 50_000 + i }));
      grads.push(flatDiff(out.adapter, adapter)); // the update is −g_i; its sign does not matter to either figure
    }
    const acc = (await evaluateAdapter(model, { tensors: adapter, lora }, task.test, task.choices, 32, 128)).eval_accuracy;
    const ns = noiseScale(grads);
    // |G|² under the sampling error of its estimate (tr(Σ)/n): the noise dominates, B_simple is at least about n.
    const resolved = ns.gradSq > ns.traceSigma / grads.length;
    // Steps at pooled batch B relative to the ceiling's 16, if B_noise ≈ B_simple: (1 + Bn/B)/(1 + Bn/16).
    const rel = (b: number): number => (1 + ns.bSimple / b) / (1 + ns.bSimple / 16);
    rows.push({
      adamSteps: at,
      heldoutAccuracy: acc,
      ...ns,
      ...(resolved ? { stepsRelativeToBatch16: { 80: rel(80), 160: rel(160), 320: rel(320) } } : { bSimple: null, bSimpleAtLeast: grads.length }),
    });
    console.log(JSON.stringify(rows[rows.length - 1]));
  }
}

if (require.main === module) {
  main().catch((e: Error) => {
    console.error(e.message);
    process.exit(1);
  });
}
