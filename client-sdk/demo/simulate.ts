// A real federation on one machine: a coordinator and N sites talking gRPC over loopback, each site
// fine-tuning LoRA adapters of the pretrained demo model on its own non-IID slice of SpamAssassin.
//   npm run demo                      # 5 sites, 10 rounds, a fresh run directory under runs/
//   fedtune-site simulate --clients 3 --rounds 3 --run-dir runs/mine
// It runs a coordinator in-process, so this file (and only the demo) imports coordinator/ from the SDK side.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Command } from 'commander';
import pino from 'pino';
import { Coordinator, loadConfig, loraSettings } from '../../coordinator';
import nacl from 'tweetnacl';
import { identityFromSecretKey, type ClientIdentity } from '../identity';
import { FederationClient } from '../client';
import { selectBackend } from '../model/backend';
import { loadModelDir } from '../model/load';
import { isLlamaConfig } from '../../proto/model/model-config';
import { LoraSftTrainer } from '../sft/lora-trainer';
import type { LoraConfig } from '../../proto/model/lora-layout';
import type { SiteWorkerData } from './site-worker';
import { evaluateAdapter } from '../sft/evaluate';
import type { TensorList } from '../../proto/tensors';
import { prepareSpamTask, DEMO_MODELS, parseDemoModel, type DemoModel } from './spam-task';

export interface SimulationOptions {
  readonly clients: number;
  readonly rounds: number;
  readonly runDir: string;
  readonly seed: number;
  readonly splitSeed: number;
  readonly localSteps: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly testLimit: number;
  readonly alpha: number;
  /** Run each site in its own worker thread (parallel training); false keeps them on this thread. */
  readonly workers?: boolean;
  /** Secure aggregation: every round needs all sites (at least 5); the coordinator sees only the sum. */
  readonly secagg?: boolean;
  /** strategy.* keys (name, serverLearningRate, momentum, beta1, beta2, tau); default: FedAvg. */
  readonly strategy?: Readonly<Record<string, string | number>>;
  /** FedProx and the learning-rate schedule (training.proximalMu, schedule, warmupRounds, minLearningRate). */
  readonly clientTraining?: Readonly<Record<string, string | number>>;
  /** Time a site has per round (default: the coordinator's rounds.deadlineMs); raise it on a slow or shared box. */
  readonly deadlineMs?: number;
  /** Which pretrained demo base the sites fine-tune (default gpt2; llama: examples/llama-base). */
  readonly model?: DemoModel;
  readonly print: (line: string) => void;
}

export interface SimulationResult {
  readonly before: Record<string, number>;
  readonly after: Record<string, number>;
  readonly finalVersion: number;
  readonly runDir: string;
  readonly seconds: number;
}

export async function simulate(o: SimulationOptions): Promise<SimulationResult> {
  const t0 = Date.now();
  const backend = await selectBackend();
  const demo = DEMO_MODELS[o.model ?? 'gpt2'];
  // Each site gets a fresh Ed25519 identity, enrolled through the allow-list (the production path, not tofu).
  const identities = Array.from({ length: o.clients }, () => identityFromSecretKey(nacl.sign.keyPair().secretKey));
  const config = loadConfig({
    overrides: {
      server: { port: 0 },
      auth: { mode: 'enrolled', allowList: identities.map((id, i) => `site-${i}=${Buffer.from(id.publicKey).toString('base64')}`) },
      run: { dir: o.runDir, seed: o.seed },
      rounds: {
        ...(o.deadlineMs ? { deadlineMs: o.deadlineMs } : {}),
        total: o.rounds,
        minClients: o.clients,
        minUpdates: o.secagg ? o.clients : Math.max(1, Math.ceil(o.clients / 2)),
        clientsPerRound: o.clients,
      },
      secagg: { enabled: o.secagg === true },
      training: { localSteps: o.localSteps, batchSize: o.batchSize, learningRate: o.learningRate, ...o.clientTraining },
      ...(o.strategy ? { strategy: o.strategy } : {}),
      model: { dir: demo.dir, name: demo.name },
      lora: { targetModules: [...demo.targetModules] },
      log: { level: 'warn' },
    },
  });
  const task = prepareSpamTask({
    numClients: o.clients,
    splitSeed: o.splitSeed,
    maxSeqLen: config.training.maxSeqLen,
    testLimit: o.testLimit,
    clientEvalLimit: 50,
    alpha: o.alpha,
    modelDir: demo.dir,
  });
  const base = await loadModelDir(demo.dir);
  const lora = loraSettings(config);
  o.print(
    `fedtune simulation: ${o.clients} sites, ${o.rounds} rounds, strategy ${config.strategy.name}, backend ${backend}, base model ${base.name} (${isLlamaConfig(base.config) ? base.config.modelType : 'gpt2'}, ${base.modelHash.slice(0, 12)}), run dir ${o.runDir}`,
  );
  task.split.clients.forEach((c, i) => {
    const spam = c.train.filter((e) => e.completion === ' yes').length;
    o.print(
      `  site-${i}: ${c.train.length} train / ${c.val.length} val e-mails, ${((100 * spam) / c.train.length).toFixed(0)}% spam, groups ${c.groups.join(', ')}`,
    );
  });
  o.print(`  held-out test: ${task.test.length} e-mails (of ${task.split.test.length}; no site trains on them)`);

  const evaluator = (adapter: TensorList): Promise<Record<string, number>> =>
    evaluateAdapter(base.model, { tensors: adapter, lora }, task.test, task.choices, 32, config.training.maxSeqLen);
  const coordinator = new Coordinator({ config, evaluator, extraSeeds: { dataSplit: o.splitSeed }, logger: pino({ level: 'warn' }) });
  let before: Record<string, number> = {};
  let last = Date.now();
  coordinator.registry.setMaxListeners(50);
  coordinator.on('roundCommitted', (ev: { version: number; round: number; participants: unknown[]; metrics: Record<string, number> }) => {
    const m = ev.metrics;
    if (ev.round === 0) {
      before = m;
      o.print(`round 0 (initial adapter = base model): held-out loss ${fmt(m['heldout.eval_loss'])}, accuracy ${pct(m['heldout.eval_accuracy'])}`);
    } else {
      o.print(
        `round ${ev.round}/${o.rounds}: ${ev.participants.length} updates, train loss ${fmt(m['clients.train_loss'])}, ` +
          `held-out loss ${fmt(m['heldout.eval_loss'])}, accuracy ${pct(m['heldout.eval_accuracy'])} → v${ev.version} (${((Date.now() - last) / 1000).toFixed(1)} s)`,
      );
    }
    last = Date.now();
  });
  coordinator.on('roundFailed', (ev: { reason: string }) => o.print(`round failed: ${ev.reason}`));
  const { address } = await coordinator.start();

  const runs = o.workers
    ? startWorkerSites(o, address, lora, config.training.maxSeqLen, identities, demo.dir)
    : task.clients.map((data, i) =>
        new FederationClient({
          address,
          name: `site-${i}`,
          identity: identities[i],
          baseModelSha256: base.modelHash,
          trainer: new LoraSftTrainer({
            model: base.model,
            lora,
            train: data.train,
            eval: data.eval,
            choices: data.choices,
            evalMaxSeqLen: config.training.maxSeqLen,
          }),
        }).run(),
      );
  const final = await coordinator.done;
  await Promise.all(runs);
  await coordinator.stop();
  const after = final.manifest.metrics;
  o.print(
    `done in ${((Date.now() - t0) / 1000).toFixed(0)} s: held-out loss ${fmt(before['heldout.eval_loss'])} → ${fmt(after['heldout.eval_loss'])}, ` +
      `accuracy ${pct(before['heldout.eval_accuracy'])} → ${pct(after['heldout.eval_accuracy'])}; checkpoints in ${path.join(o.runDir, 'versions')}`,
  );
  return { before, after, finalVersion: final.manifest.version, runDir: o.runDir, seconds: (Date.now() - t0) / 1000 };
}

/** Sites as worker threads (site-worker.ts); resolves when each has seen the run finish. */
function startWorkerSites(
  o: SimulationOptions,
  address: string,
  lora: LoraConfig,
  maxSeqLen: number,
  identities: readonly ClientIdentity[],
  modelDir: string,
): Promise<unknown>[] {
  return Array.from({ length: o.clients }, (_, i) => {
    const data: SiteWorkerData = {
      identitySecretKey: identities[i].secretKey,
      address,
      name: `site-${i}`,
      shard: i,
      of: o.clients,
      splitSeed: o.splitSeed,
      alpha: o.alpha,
      maxSeqLen,
      clientEvalLimit: 50,
      modelDir,
      lora,
    };
    const w = new Worker(path.join(__dirname, 'site-worker.js'), { workerData: data });
    return new Promise((resolve, reject) => {
      w.on('message', (m: { done?: unknown; error?: string }) => (m.error ? reject(new Error(`site-${i}: ${m.error}`)) : resolve(m.done)));
      w.on('error', reject);
    }).finally(() => w.terminate());
  });
}

const fmt = (x: number | undefined): string => (x === undefined ? 'n/a' : x.toFixed(4));
const pct = (x: number | undefined): string => (x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`);

export async function main(): Promise<void> {
  const p = new Command('simulate')
    .option('--clients <n>', 'sites', '5')
    .option('--rounds <n>', 'rounds', '10')
    .option('--run-dir <dir>', 'run directory (an existing one resumes)', `runs/demo-${new Date().toISOString().replace(/[:.]/g, '-')}`)
    .option('--seed <n>', 'master seed', '42')
    .option('--split-seed <n>', 'data split seed', '7')
    .option('--local-steps <n>', 'local steps per round', '10')
    .option('--batch-size <n>', 'examples per step', '16')
    .option('--lr <x>', 'client learning rate', '0.002')
    .option('--alpha <x>', 'Dirichlet concentration of the non-IID split', '0.5')
    .option('--test-limit <n>', 'held-out e-mails evaluated each round', '400')
    .option('--no-workers', 'run every site on the main thread instead of one worker thread each')
    .option('--secagg', 'secure aggregation: the coordinator learns only the sum of the updates (needs ≥ 5 sites)')
    .option('--strategy <name>', 'server strategy: fedavg, fedavgm, fedadam, fedyogi, fedadagrad', 'fedavg')
    .option('--server-lr <x>', 'server learning rate η (0: the strategy default)', '0')
    .option('--proximal-mu <x>', 'FedProx μ (0: off)', '0')
    .option('--schedule <name>', "client learning-rate schedule: 'constant' or 'cosine'", 'constant')
    .option('--warmup-rounds <n>', 'rounds of linear learning-rate warm-up', '0')
    .option('--deadline-ms <n>', 'time a site has per round (default 120000; raise it on a slow or shared box)')
    .option('--model <family>', 'the pretrained demo base: gpt2 (examples/base-model) or llama (examples/llama-base)', 'gpt2')
    .parse();
  const a = p.opts<Record<string, string>>();
  await simulate({
    clients: Number(a.clients),
    rounds: Number(a.rounds),
    runDir: a.runDir,
    seed: Number(a.seed),
    splitSeed: Number(a.splitSeed),
    localSteps: Number(a.localSteps),
    batchSize: Number(a.batchSize),
    learningRate: Number(a.lr),
    alpha: Number(a.alpha),
    testLimit: Number(a.testLimit),
    workers: a.workers as unknown as boolean,
    secagg: a.secagg as unknown as boolean,
    strategy: { name: a.strategy, serverLearningRate: Number(a.serverLr) },
    clientTraining: { proximalMu: Number(a.proximalMu), schedule: a.schedule, warmupRounds: Number(a.warmupRounds) },
    model: parseDemoModel(a.model),
    deadlineMs: a.deadlineMs === undefined ? undefined : Number(a.deadlineMs),
    print: (l) => console.log(l),
  });
}
