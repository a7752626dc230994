// A real federated run where the sites train on the GPU (WebGPU): coordinator + 2 sites over gRPC loopback,
// the demo model, SpamAssassin. Each site's trainer comes from trainerForModel, as at a real site: tfjs
// (tfjs-webgpu here) by default, the WebGPU engine with FEDTUNE_ENGINE=auto|tc|f16|f32. The GPU machine has no copy of the data packages, so the task is tokenised
// here first and carried as JSON:
//   node dist/bench/gpu-round.js --export .gpudata/task.json          (here)
//   node dist/bench/gpu-round.js --run .gpudata/task.json OUT_DIR     (on the GPU machine)
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { Coordinator, loraSettings } from '../coordinator';
// Its rounds run the classic defaults (FedAvg…), as every figure it reported was measured with them.
import { classicConfig } from '../test/classic-defaults';
import { FederationClient } from '../client-sdk/client';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { trainerForModel } from '../client-sdk/sft/lora-trainer';
import { evaluateAdapter } from '../client-sdk/sft/evaluate';
import type { SftExample } from '../client-sdk/sft/types';
import type { TensorList } from '../proto/tensors';

interface TaskFile {
  readonly clients: { train: SftExample[]; eval: SftExample[] }[];
  readonly test: SftExample[];
  readonly choices: number[][];
}

const MODEL_DIR = path.resolve(__dirname, '..', '..', 'examples', 'base-model');

async function exportTask(file: string): Promise<void> {
  // Loaded only here: the GPU machine runs without the data and tokenizer packages.
  const { prepareSpamTask } = require('../client-sdk/demo/spam-task') as typeof import('../client-sdk/demo/spam-task');
  const t = prepareSpamTask({ numClients: 2, splitSeed: 7, maxSeqLen: 96, testLimit: 200, clientEvalLimit: 32 });
  const out: TaskFile = {
    clients: t.clients.map((c) => ({ train: [...c.train].slice(0, 512) as SftExample[], eval: [...(c.eval ?? [])] as SftExample[] })),
    test: t.test,
    choices: t.choices,
  };
  await fs.mkdir(path.dirname(file), { recursive: true });
  await fs.writeFile(file, JSON.stringify(out));
  console.log(`wrote ${file}`);
}

async function runRound(file: string, outDir: string): Promise<void> {
  const task = JSON.parse(await fs.readFile(file, 'utf8')) as TaskFile;
  const backend = await selectBackend();
  const base = await loadGpt2Dir(MODEL_DIR);
  const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'gpu-round-'));
  const config = classicConfig({
    overrides: {
      server: { port: 0 },
      run: { dir: runDir, seed: 42 },
      rounds: { total: 3, minClients: 2, minUpdates: 2, deadlineMs: 300_000 },
      training: { localSteps: 10, batchSize: 16, learningRate: 0.002 },
      model: { dir: MODEL_DIR },
      log: { level: 'warn' },
      auth: { mode: 'tofu' },
    },
  });
  const lora = loraSettings(config);
  const evaluator = (adapter: TensorList): Promise<Record<string, number>> =>
    evaluateAdapter(base.model, { tensors: adapter, lora }, task.test, task.choices, 64, 96);
  const coordinator = new Coordinator({ config, evaluator, logger: pino({ level: 'warn' }) });
  coordinator.on('roundCommitted', (e) =>
    console.log(JSON.stringify({ version: e.version, round: e.round, metrics: e.metrics, backends: e.participants.map((p) => p.backend) })),
  );
  const { address } = await coordinator.start();
  const trainers = await Promise.all(
    task.clients.map((d) => trainerForModel(base.model, lora, { train: d.train, eval: d.eval, choices: task.choices, evalMaxSeqLen: 96 })),
  );
  const t0 = Date.now(); // after the trainers exist: the engine builds its pipelines once per site
  const runs = task.clients.map((_, i) => new FederationClient({ address, name: `gpu-site-${i}`, trainer: trainers[i].trainer }).run());
  const final = await coordinator.done;
  await Promise.all(runs);
  await coordinator.stop();
  await fs.mkdir(outDir, { recursive: true });
  await fs.copyFile(
    path.join(runDir, 'versions', `v${String(final.manifest.version).padStart(6, '0')}`, 'manifest.json'),
    path.join(outDir, 'gpu-round-manifest.json'),
  );
  console.log(
    JSON.stringify({
      backend,
      trainers: trainers.map((t) => t.backend),
      seconds: (Date.now() - t0) / 1000,
      finalVersion: final.manifest.version,
      participants: final.manifest.participants.map((p) => ({ name: p.clientName, backend: p.backend, train_seconds: p.metrics.train_seconds })),
    }),
  );
}

const [mode, a, b] = process.argv.slice(2);
(mode === '--export' ? exportTask(a) : runRound(a, b)).catch((e: Error) => {
  console.error(e);
  process.exit(1);
});
