// Where a round of `npm run demo` at its defaults spends CPU on this machine (tfjs, one thread of work): one site's
// training step (1 SGD step of 32 e-mails, the default recipe), a site's own validation of 50 e-mails, and one
// held-out scoring of the demo's 400 e-mails. CPU-seconds (process.cpuUsage), so the figures hold on a loaded box.
//   node dist/bench/demo-cpu-split.js
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir } from '../client-sdk/model/load';
import { prepareSpamTask, DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { evaluateAdapter } from '../client-sdk/sft/evaluate';
import { loadConfig, loraSettings } from '../coordinator';
import { initLoraAdapter } from '../proto/model/lora-layout';
import type { TrainingPlan } from '../client-sdk/trainer';
import type { ModelConfig } from '../proto/model/model-config';

async function main(): Promise<void> {
  const backend = await selectBackend();
  const base = await loadModelDir(DEFAULT_MODEL_DIR);
  const cfg = loadConfig();
  const lora = loraSettings(cfg);
  const task = prepareSpamTask({ numClients: 5, splitSeed: 7, maxSeqLen: 96, testLimit: 400, clientEvalLimit: 50, alpha: 0.5, modelDir: DEFAULT_MODEL_DIR });
  const t = new LoraSftTrainer({ model: base.model, lora, ...task.clients[0], evalMaxSeqLen: 96 });
  const cpu = (): number => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };
  const start = initLoraAdapter(base.model.config as ModelConfig, lora, 1);
  const { training: tr } = cfg;
  const plan = (seed: number): TrainingPlan => ({
    round: 1,
    taskId: 't',
    localSteps: tr.localSteps,
    batchSize: tr.batchSize,
    learningRate: tr.learningRate,
    weightDecay: tr.weightDecay,
    maxSeqLen: tr.maxSeqLen,
    optimizer: tr.optimizer === 'sgd' ? { name: 'sgd', momentum: tr.momentum } : { name: 'adamw' },
    seed,
  });
  await t.train(start, plan(0)); // warm-up
  const reps = 5;
  let c = cpu();
  let out = await t.train(start, plan(1));
  for (let i = 2; i <= reps; i++) out = await t.train(start, plan(i));
  const train = (cpu() - c) / reps;
  c = cpu();
  await t.evaluate(out.adapter);
  const siteEval = cpu() - c;
  c = cpu();
  await evaluateAdapter(base.model, { tensors: start, lora }, task.test, task.choices, 32, tr.maxSeqLen);
  const heldout = cpu() - c;
  console.log(JSON.stringify({ backend, trainStepCpuS: +train.toFixed(2), siteEval50CpuS: +siteEval.toFixed(2), heldout400CpuS: +heldout.toFixed(2) }));
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
