// npm run bench's training section: local LoRA training throughput of the demo model on the selected tfjs backend
// (steps, examples and tokens per second after a warm-up).

const now = (): number => Number(process.hrtime.bigint()) / 1e9;

export async function benchTraining(): Promise<Record<string, number | string>> {
  // Loaded here, not at the top: the other sections run without tfjs (e.g. on a machine bundled without it).
  /* eslint-disable @typescript-eslint/no-require-imports -- a lazy load, typed through typeof import() */
  const { selectBackend } = require('../client-sdk/model/backend') as typeof import('../client-sdk/model/backend');
  const { loadGpt2Dir } = require('../client-sdk/model/load') as typeof import('../client-sdk/model/load');
  const { LoraSftTrainer } = require('../client-sdk/sft/lora-trainer') as typeof import('../client-sdk/sft/lora-trainer');
  const { initLoraAdapter } = require('../proto/model/lora-layout') as typeof import('../proto/model/lora-layout');
  const { prepareSpamTask, DEFAULT_MODEL_DIR } = require('../client-sdk/demo/spam-task') as typeof import('../client-sdk/demo/spam-task');
  /* eslint-enable @typescript-eslint/no-require-imports */
  const backend = await selectBackend();
  const task = prepareSpamTask({ numClients: 1, splitSeed: 7, maxSeqLen: 96 });
  const base = await loadGpt2Dir(DEFAULT_MODEL_DIR);
  const lora = { r: 8, alpha: 16, dropout: 0.05, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
  const trainer = new LoraSftTrainer({ model: base.model, lora, train: task.clients[0].train });
  const adapter = initLoraAdapter(base.config, lora, 1);
  const plan = { round: 1, taskId: 'bench', localSteps: 2, batchSize: 16, learningRate: 1e-3, weightDecay: 0, maxSeqLen: 96, seed: 1 };
  await trainer.train(adapter, plan); // warm-up: kernels, buffers
  const steps = 10;
  const t = now();
  const out = await trainer.train(adapter, { ...plan, localSteps: steps, seed: 2 });
  const dt = now() - t;
  const meanLen = task.clients[0].train.reduce((s, e) => s + Math.min(96, e.prompt.length + e.completion.length), 0) / task.clients[0].train.length;
  return {
    backend,
    steps,
    batch_size: 16,
    step_seconds: dt / steps,
    examples_per_second: (steps * 16) / dt,
    tokens_per_second: (steps * 16 * meanLen) / dt,
    mean_sequence_tokens: meanLen,
    train_loss: out.metrics.train_loss ?? NaN,
  };
}

/** The training section's summary row (npm run bench). */
export function trainingRow(t: Record<string, number | string>): [string, string, string, string] {
  return [
    `LoRA training (${t.backend}, batch 16)`,
    `${Number(t.tokens_per_second).toFixed(0)} tokens/s`,
    `${(Number(t.step_seconds) * 1000).toFixed(0)} ms/step`,
    `${Number(t.examples_per_second).toFixed(1)} examples/s`,
  ];
}
