// A real federation on one machine: a coordinator and N sites talking gRPC over loopback, each site
// fine-tuning LoRA adapters of the pretrained demo model on its own non-IID slice of SpamAssassin.
//   npm run demo                      # 5 sites, the coordinator's defaults (600 one-step rounds), a fresh run directory under runs/
//   fedtune-site simulate --clients 3 --rounds 3 --run-dir runs/mine
// It runs a coordinator in-process, so this file (and only the demo) imports coordinator/ from the SDK side.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import pino from 'pino';
import { Coordinator, loadConfig, loraSettings } from '../../coordinator';
import nacl from 'tweetnacl';
import { identityFromSecretKey, type ClientIdentity } from '../identity';
import { FederationClient } from '../client';
import { selectBackend } from '../model/backend';
import { loadModelDir } from '../model/load';
import { isLlamaConfig } from '../../proto/model/model-config';
import { demoSiteTrainer, siteLora } from './site-trainer';
import type { LoraConfig } from '../../proto/model/lora-layout';
import type { SiteWorkerData } from './site-worker';
import { evaluateAdapter } from '../sft/evaluate';
import { stackLoraConfig } from '../sft/flora-site';
import type { TensorList } from '../../proto/tensors';
import { prepareSpamTask, DEMO_MODELS, type DemoModel } from './spam-task';
import { withCandidateEvalOnly } from './candidate-eval-only';

export interface SimulationOptions {
  readonly clients: number;
  /** rounds.total (wins over config); the fields below that name a key likewise. */
  readonly rounds?: number;
  /** run.dir */
  readonly runDir?: string;
  /** run.seed */
  readonly seed?: number;
  readonly splitSeed: number;
  /** training.localSteps */
  readonly localSteps?: number;
  /** training.batchSize */
  readonly batchSize?: number;
  /** training.learningRate */
  readonly learningRate?: number;
  readonly testLimit: number;
  /**
   * Score the held-out set every this many rounds, and in the last (default: evalEveryFor(rounds), every round up to
   * 60 rounds). The default recipe's 600 rounds of one step would spend more on 400 e-mails a round than on training;
   * the benchmark that measured it scored every 10th round (bench/QUALITY.md run 16). Only scored rounds are printed.
   */
  readonly evalEvery?: number;
  /** Cap on each site's own validation set, evaluated after every local training (default 50). */
  readonly clientEvalLimit?: number;
  readonly alpha: number;
  /** How the corpus is divided among the sites (default 'dirichlet' at `alpha`; 'groups': whole corpus groups a site). */
  readonly partition?: 'groups' | 'dirichlet';
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
  /** Each site's own LoRA rank (≤ lora.r), one per site: zero-padded, or its fresh rank under 'flora' (siteLora). */
  readonly siteRanks?: readonly number[];
  /**
   * The coordinator's configuration layers, as `fedtune coordinator` reads them: a JSON file and FEDTUNE_*
   * variables, then `keys` (dotted key → value: the demo's flags, simulate-cli.ts). The fields above win over
   * all of them, and the simulation fixes a few keys itself (simulate-cli.ts SIMULATION_FIXED).
   */
  readonly config?: { readonly file?: string; readonly env?: NodeJS.ProcessEnv; readonly keys?: Readonly<Record<string, string | number>> };
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
  const given: Record<string, unknown> = { ...o.config?.keys };
  const set = (key: string, v: unknown): void => {
    if (v !== undefined) given[key] = v;
  };
  set('rounds.total', o.rounds);
  set('rounds.deadlineMs', o.deadlineMs || undefined);
  set('run.dir', o.runDir);
  set('run.seed', o.seed);
  set('training.localSteps', o.localSteps);
  set('training.batchSize', o.batchSize);
  set('training.learningRate', o.learningRate);
  for (const [k, v] of Object.entries(o.clientTraining ?? {})) set(`training.${k}`, v);
  for (const [k, v] of Object.entries(o.strategy ?? {})) set(`strategy.${k}`, v);
  const config = loadConfig({
    file: o.config?.file,
    env: o.config?.env,
    // Dotted keys are set one by one (config.ts applies each leaf of the overrides with conf.set).
    overrides: {
      ...given,
      server: { port: 0 },
      auth: { mode: 'enrolled', allowList: identities.map((id, i) => `site-${i}=${Buffer.from(id.publicKey).toString('base64')}`) },
      rounds: {
        minClients: o.clients,
        minUpdates: o.secagg ? o.clients : Math.max(1, Math.ceil(o.clients / 2)),
        clientsPerRound: o.clients,
      },
      secagg: { enabled: o.secagg === true },
      model: { dir: demo.dir, name: demo.name },
      lora: { targetModules: [...demo.targetModules] },
      log: { level: 'warn' },
    },
  });
  const runDir = config.run.dir;
  const lora = loraSettings(config);
  if (o.siteRanks && o.siteRanks.length !== o.clients) throw new Error(`--site-ranks names ${o.siteRanks.length} rank(s) for ${o.clients} sites: one per site`);
  const siteLoras = Array.from({ length: o.clients }, (_, i) => siteLora(lora, o.siteRanks, i));
  const rounds = config.rounds.total;
  const evalEvery = o.evalEvery ?? evalEveryFor(rounds);
  if (!(Number.isInteger(evalEvery) && evalEvery >= 1)) throw new Error(`--eval-every must be an integer ≥ 1, not ${o.evalEvery}`);
  const scored = (round: number): boolean => round % evalEvery === 0 || round === rounds;
  // Scoring sparsely, the sites also skip validating their own adapter after each round (candidate-eval-only.ts).
  const candidateEvalOnly = evalEvery > 1;
  const task = prepareSpamTask({
    numClients: o.clients,
    splitSeed: o.splitSeed,
    maxSeqLen: config.training.maxSeqLen,
    testLimit: o.testLimit,
    clientEvalLimit: o.clientEvalLimit ?? 50,
    alpha: o.alpha,
    partition: o.partition,
    modelDir: demo.dir,
  });
  const base = await loadModelDir(demo.dir);
  o.print(
    `fedtune simulation: ${o.clients} sites, ${rounds} rounds, strategy ${config.strategy.name}${config.strategy.ema > 0 ? ` (scored as its average, ema ${config.strategy.ema})` : ''}, ${config.training.localSteps} local ${config.training.optimizer} step(s) of ${config.training.batchSize}, backend ${backend}, base model ${base.name} (${isLlamaConfig(base.config) ? base.config.modelType : 'gpt2'}, ${base.modelHash.slice(0, 12)}), run dir ${runDir}`,
  );
  task.split.clients.forEach((c, i) => {
    const spam = c.train.filter((e) => e.completion === ' yes').length;
    const rank = siteLoras[i].r === lora.r ? '' : `, LoRA rank ${siteLoras[i].r}`;
    o.print(
      `  site-${i}: ${c.train.length} train / ${c.val.length} val e-mails, ${((100 * spam) / c.train.length).toFixed(0)}% spam, groups ${c.groups.join(', ')}${rank}`,
    );
  });
  o.print(
    `  held-out test: ${task.test.length} e-mails (of ${task.split.test.length}; no site trains on them), scored ${evalEvery === 1 ? 'every round' : `every ${evalEvery} rounds and the last`}`,
  );

  // Under strategy.ema the coordinator hands the evaluator the average (what is released and exported).
  // Under lora.aggregation 'flora' a version is a stack of its own rank at scaling 1 (coordinator/flora-stack.ts).
  const heldOutLora = (adapter: TensorList): LoraConfig => (config.lora.aggregation === 'flora' ? stackLoraConfig(adapter, lora) : lora);
  const evaluator = async (adapter: TensorList, version: number): Promise<Record<string, number>> =>
    scored(version)
      ? evaluateAdapter(base.model, { tensors: adapter, lora: heldOutLora(adapter) }, task.test, task.choices, 32, config.training.maxSeqLen)
      : {};
  const coordinator = new Coordinator({ config, evaluator, extraSeeds: { dataSplit: o.splitSeed }, logger: pino({ level: 'warn' }) });
  let before: Record<string, number> = {};
  let last = Date.now();
  let lastRound = 0;
  coordinator.registry.setMaxListeners(50);
  coordinator.on('roundCommitted', (ev: { version: number; round: number; participants: unknown[]; metrics: Record<string, number> }) => {
    const m = ev.metrics;
    if (ev.round === 0) {
      before = m;
      o.print(`round 0 (initial adapter = base model): held-out loss ${fmt(m['heldout.eval_loss'])}, accuracy ${pct(m['heldout.eval_accuracy'])}`);
    } else if (m['heldout.eval_accuracy'] !== undefined) {
      const took = `${((Date.now() - last) / 1000).toFixed(1)} s${ev.round - lastRound > 1 ? ` for ${ev.round - lastRound} rounds` : ''}`;
      o.print(
        `round ${ev.round}/${rounds}: ${ev.participants.length} updates, train loss ${fmt(m['clients.train_loss'])}, ` +
          `held-out loss ${fmt(m['heldout.eval_loss'])}, accuracy ${pct(m['heldout.eval_accuracy'])} → v${ev.version} (${took})`,
      );
    } else return; // a round not scored: printed with the next scored one
    last = Date.now();
    lastRound = ev.round;
  });
  coordinator.on('roundFailed', (ev: { reason: string }) => o.print(`round failed: ${ev.reason}`));
  // --no-workers: every site on this thread, each on the engine FEDTUNE_ENGINE picks, as in the worker sites
  // (trainerForModel; tfjs when unset). Made before the coordinator starts, so a refused engine stops the demo at once.
  const mainThreadTrainers = o.workers
    ? []
    : await Promise.all(
        task.clients.map(async (data, i) => {
          const made = await demoSiteTrainer(base.model, lora, siteLoras[i], config.lora.aggregation, {
            train: data.train,
            eval: data.eval,
            choices: data.choices,
            evalMaxSeqLen: config.training.maxSeqLen,
          });
          return made.trainer;
        }),
      );
  const { address } = await coordinator.start();

  const runs = o.workers
    ? startWorkerSites(o, address, lora, siteLoras, config.lora.aggregation, config.training.maxSeqLen, identities, demo.dir, candidateEvalOnly)
    : task.clients.map((_, i) =>
        new FederationClient({
          address,
          name: `site-${i}`,
          identity: identities[i],
          baseModelSha256: base.modelHash,
          trainer: candidateEvalOnly ? withCandidateEvalOnly(mainThreadTrainers[i]) : mainThreadTrainers[i],
        }).run(),
      );
  const final = await coordinator.done;
  await Promise.all(runs);
  await coordinator.stop();
  const after = final.manifest.metrics;
  // What the run left on disk: under the default recipe a whole version is about 1.3 MB; retention (checkpoints.*)
  // keeps the weights of the newest and every k-th version only (README "Checkpoints").
  const mib = (await bytesUnder(path.join(runDir, 'versions'))) / 2 ** 20;
  const keep = config.checkpoints;
  const retention =
    keep.keepServerState === 0 && keep.keepAdapters === 0
      ? 'every file kept'
      : `retention: state ${keep.keepServerState || 'all'}, adapters ${keep.keepAdapters || 'all'}${keep.keepEvery ? ` + every ${keep.keepEvery}th` : ''}`;
  o.print(
    `done in ${((Date.now() - t0) / 1000).toFixed(0)} s: held-out loss ${fmt(before['heldout.eval_loss'])} → ${fmt(after['heldout.eval_loss'])}, ` +
      `accuracy ${pct(before['heldout.eval_accuracy'])} → ${pct(after['heldout.eval_accuracy'])}; checkpoints in ${path.join(runDir, 'versions')} ` +
      `(${final.manifest.version + 1} versions, ${mib.toFixed(mib < 10 ? 1 : 0)} MiB; ${retention})`,
  );
  return { before, after, finalVersion: final.manifest.version, runDir, seconds: (Date.now() - t0) / 1000 };
}

/** Sites as worker threads (site-worker.ts); resolves when each has seen the run finish. */
function startWorkerSites(
  o: SimulationOptions,
  address: string,
  lora: LoraConfig,
  loras: readonly LoraConfig[],
  aggregation: string,
  maxSeqLen: number,
  identities: readonly ClientIdentity[],
  modelDir: string,
  candidateEvalOnly: boolean,
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
      partition: o.partition,
      maxSeqLen,
      clientEvalLimit: o.clientEvalLimit ?? 50,
      modelDir,
      lora,
      own: loras[i],
      aggregation,
      candidateEvalOnly,
    };
    const w = new Worker(path.join(__dirname, 'site-worker.js'), { workerData: data });
    return new Promise((resolve, reject) => {
      w.on('message', (m: { done?: unknown; error?: string }) => (m.error ? reject(new Error(`site-${i}: ${m.error}`)) : resolve(m.done)));
      w.on('error', reject);
    }).finally(() => w.terminate());
  });
}

/** Bytes of the files under `dir` (the demo's last line; bench/demo-round-cost.ts reports disk with it too). */
export async function bytesUnder(dir: string): Promise<number> {
  let n = 0;
  for (const e of await fs.readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) n += (await fs.stat(path.join(e.parentPath, e.name))).size;
  return n;
}

/** The default held-out cadence: every round up to 60 rounds, else every ⌈rounds/60⌉-th (600 rounds: every 10th). */
export function evalEveryFor(rounds: number): number {
  return Math.max(1, Math.ceil(rounds / 60));
}

const fmt = (x: number | undefined): string => (x === undefined ? 'n/a' : x.toFixed(4));
const pct = (x: number | undefined): string => (x === undefined ? 'n/a' : `${(100 * x).toFixed(1)}%`);
