// One cell of the learning-quality benchmark (bench/quality.ts): one split, one seed, one configuration, run as
// a real federation — the coordinator and its sites in this process, talking gRPC over loopback, the server-side
// evaluator scoring each committed version on the pooled held-out test set. Run as a child process by the
// driver: `node dist/bench/quality-cell.js '<cell JSON>'`; prints one line of JSON (the result) last.
// Sites train on the WebGPU engine when FEDTUNE_ENGINE is set (GPU machine), else on tfjs.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import pino from 'pino';
import { Coordinator, loraSettings } from '../coordinator';
import { readRelease } from '../coordinator/checkpoints/release';
// Its rounds run the classic defaults (FedAvg…), as every figure it reported was measured with them.
import { classicConfig } from '../test/classic-defaults';
import { FederationClient } from '../client-sdk/client';
import { identityFromSecretKey } from '../client-sdk/identity';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import type { Gpt2Model } from '../client-sdk/model/gpt2';
import { trainerForModel, type SftData } from '../client-sdk/sft/lora-trainer';
import { evaluateAdapter } from '../client-sdk/sft/evaluate';
import { prepareSpamTask, DEFAULT_MODEL_DIR, type SpamTask } from '../client-sdk/demo/spam-task';
import type { Trainer } from '../client-sdk/trainer';
import type { LoraConfig } from '../proto/model/lora-layout';
import type { TensorList } from '../proto/tensors';
import { QUALITY_CONFIGS, cellOverrides, deepMerge } from './quality-configs';
import { UPDATE_NORM, withUpdateNorm } from './quality-update-norm';
import { withCandidateEvalOnly } from './quality-site-eval';
import { COHORT_POOL_CLIENTS, COHORT_TRAINERS, SharedTrainer, drawCohorts, sampledEpsilon, slotData, slotTrainer, virtualSites } from './quality-cohort';

/** The sites' metrics a curve keeps (the mean over sites): the update's norm, and the seconds a site trained. */
const KEPT_CLIENT_METRICS = new Set([UPDATE_NORM, 'clients.train_seconds']);

export const SPLITS = {
  'dirichlet-0.5': { partition: 'dirichlet', alpha: 0.5 },
  'dirichlet-0.1': { partition: 'dirichlet', alpha: 0.1 },
  groups: { partition: 'groups', alpha: 0.5 },
} as const;
export type SplitName = keyof typeof SPLITS;

export interface QualityCell {
  readonly split: SplitName;
  readonly seed: number;
  readonly splitSeed: number;
  readonly config: string;
  readonly rounds: number;
  readonly clients: number;
  readonly localSteps: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly testLimit: number;
  /**
   * Federated evaluation each round (evaluation.enabled): every site scores the candidate version on its own
   * validation split, so the curve carries eval.loss/eval.accuracy for early stopping's pick. Absent: on.
   */
  readonly fedEval?: boolean;
  /** Validation e-mails each site scores per round (clientEvalLimit; absent: 50, runs 4-8). */
  readonly valLimit?: number;
  /**
   * Score the held-out set every this many rounds (and in the last round); absent: 1, every round. Run 14's FedSGD
   * cells run hundreds of one-step rounds, where scoring 400 e-mails a round would cost more than the training.
   * The curve keeps only the scored rounds, so "largest drop after round 6" compares consecutive scored rounds.
   */
  readonly evalEvery?: number;
  /**
   * Also score each of the last this many rounds (absent: 0). Run 17 reads the mean of the last 10 rounds of a
   * sparsely scored curve (bench/quality-configs-run17.ts).
   */
  readonly evalLast?: number;
  /**
   * Federated evaluation every this many rounds (absent: evalEvery). Run 19 scores the held-out set every 10 rounds
   * (the cadence its "best seen" is defined on) and the sites' validation every 20 (each costs about two scorings).
   */
  readonly fedEvalEvery?: number;
  /** Keep which held-out e-mails each scored version got right (RoundPoint.correct), for run 19's bootstrap. */
  readonly keepCorrect?: boolean;
  /**
   * Local-only cells: train this site alone (absent: every site, one after another). Run 20 runs each site of a
   * local cell as its own process, so 45 sites' 30 rounds spread over the GPU host's cores.
   */
  readonly site?: number;
}

export interface RoundPoint {
  readonly round: number;
  readonly accuracy: number;
  readonly loss: number;
  /** Manifest metrics other than held-out ones worth keeping (e.g. privacy.epsilon, eval.*). */
  readonly extra: Record<string, number>;
  /** With keepCorrect: base64 of a bit set over the held-out e-mails (bit i: e-mail i answered right). */
  correct?: string;
}

export interface CellResult {
  readonly cell: QualityCell;
  readonly ok: boolean;
  readonly error?: string;
  /** One curve per federation: one for federated/centralized, one per site for local. Round 0 = base model. */
  readonly curves: RoundPoint[][];
  readonly backend: string;
  readonly seconds: number;
  /** The version each federation's release pointer named at its end (per curve; null: none). */
  readonly releases?: (number | null)[];
  /** Held-out e-mails each scoring read (the set, or its first testLimit in the seeded sample's order; run 20). */
  readonly heldOut?: number;
}

/** A cell's data: its split of SpamAssassin into `numClients` sites, held-out and validation as the cell asks. */
export function cellTask(cell: QualityCell, numClients: number): SpamTask {
  const split = SPLITS[cell.split];
  return prepareSpamTask({
    numClients,
    splitSeed: cell.splitSeed,
    maxSeqLen: 128,
    testLimit: cell.testLimit,
    clientEvalLimit: cell.valLimit ?? 50,
    alpha: split.alpha,
    partition: split.partition,
  });
}

export async function runCell(cell: QualityCell, log: (line: string) => void): Promise<CellResult> {
  const t0 = Date.now();
  const cfg = QUALITY_CONFIGS[cell.config];
  if (!cfg) throw new Error(`unknown quality config ${JSON.stringify(cell.config)}`);
  await selectBackend();
  // A cohort cell's population is cut from the 5-site split's pooled training e-mails (bench/quality-cohort.ts).
  const task = cellTask(cell, cfg.cohort ? COHORT_POOL_CLIENTS : cell.clients);
  const base = await loadGpt2Dir(DEFAULT_MODEL_DIR);
  const groups: { data: SftData[]; localSteps: number; site?: number }[] =
    cfg.mode === 'federated'
      ? [{ data: task.clients, localSteps: cell.localSteps }]
      : cfg.mode === 'centralized'
        ? [{ data: [pooled(task)], localSteps: cell.localSteps * cell.clients }]
        : task.clients.flatMap((d, i) => (cell.site === undefined || cell.site === i ? [{ data: [d], localSteps: cell.localSteps, site: i }] : []));
  const curves: RoundPoint[][] = [];
  let backend = '';
  if (cfg.cohort) {
    // Cross-device (bench/quality-cohort.ts): K slots over real gRPC, each round training the sampled sites.
    const spec = cfg.cohort;
    const sites = virtualSites(pooled(task).train, spec, cell.splitSeed);
    const cohorts = drawCohorts(spec, cell.seed, cell.rounds);
    const pools = Array.from({ length: Math.min(COHORT_TRAINERS, spec.slots) }, () => slotData(sites, task.choices));
    // One SharedTrainer per trainer made, shared by every slot (its queue is what keeps two members apart).
    let shared: SharedTrainer[] | undefined;
    const slots = {
      count: spec.slots,
      trainer: (made: readonly Trainer[], i: number): Trainer =>
        slotTrainer((shared ??= made.map((t, k) => new SharedTrainer(t, pools[k].pool))), i, cohorts, sites),
    };
    const r = await runFederation(
      cell,
      cellOverrides(cfg),
      base.model,
      base.modelHash,
      task,
      pools.map((s) => s.data),
      cell.localSteps,
      (l) => log(`[0] ${l}`),
      slots,
    );
    const privacy = cfg.overrides.privacy as { enabled?: boolean; noiseMultiplier?: number; delta?: number } | undefined;
    for (const p of r.curve) {
      if (p.round < 1) continue;
      p.extra['cohort.size'] = cohorts[p.round - 1].length;
      // The manifest's ε charges q = 1 (it cannot know how its slots were chosen): kept, under its own name.
      if (p.extra['privacy.epsilon'] !== undefined) p.extra['privacy.epsilon_q1'] = p.extra['privacy.epsilon'];
      delete p.extra['privacy.epsilon'];
      // The noiseless arm's z (1e-6) is there only because the config refuses 0: no ε worth stating.
      if (privacy?.enabled && privacy.noiseMultiplier !== undefined && privacy.noiseMultiplier >= 0.01)
        p.extra['privacy.epsilon_sampled'] = sampledEpsilon(spec, privacy.noiseMultiplier, p.round, privacy.delta ?? 1e-5);
    }
    return { cell, ok: true, curves: [r.curve], backend: r.backend, seconds: (Date.now() - t0) / 1000, heldOut: task.test.length };
  }
  const releases: (number | null)[] = [];
  for (const [gi, g] of groups.entries()) {
    const r = await runFederation(cell, cellOverrides(cfg), base.model, base.modelHash, task, g.data, g.localSteps, (l) => log(`[${g.site ?? gi}] ${l}`));
    curves.push(r.curve);
    releases.push(r.release);
    backend = r.backend;
  }
  return { cell, ok: true, curves, backend, seconds: (Date.now() - t0) / 1000, releases, heldOut: task.test.length };
}

/** Whether round `round` is scored on the held-out set: every evalEvery-th, the last evalLast, and the last. */
export function isScoredRound(round: number, cell: Pick<QualityCell, 'rounds' | 'evalEvery' | 'evalLast'>): boolean {
  return round % (cell.evalEvery ?? 1) === 0 || round > cell.rounds - (cell.evalLast ?? 0) || round === cell.rounds;
}

function pooled(task: SpamTask): SftData {
  return { train: task.clients.flatMap((c) => c.train), eval: task.clients.flatMap((c) => c.eval ?? []), choices: task.choices };
}

export async function runFederation(
  cell: QualityCell,
  overrides: Readonly<Record<string, unknown>>,
  model: Gpt2Model,
  modelHash: string,
  task: SpamTask,
  sites: readonly SftData[],
  localSteps: number,
  log: (line: string) => void,
  /**
   * A cohort cell: `count` federation clients, client i training through `trainer(made, i)` over the trainers made
   * for `sites` (bench/quality-cohort.ts). Absent: one client per site, each with its own trainer.
   */
  slots?: { readonly count: number; readonly trainer: (made: readonly Trainer[], i: number) => Trainer },
  /** Called with the fresh run directory before the coordinator starts (run 22 writes a shared sampling secret there). */
  prepare?: (runDir: string) => Promise<void>,
): Promise<{ curve: RoundPoint[]; backend: string; release: number | null }> {
  const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-quality-'));
  await prepare?.(runDir);
  const n = slots?.count ?? sites.length;
  const identities = Array.from({ length: n }, () => identityFromSecretKey(nacl.sign.keyPair().secretKey));
  const common: Record<string, unknown> = {
    server: { port: 0 },
    auth: { mode: 'enrolled', allowList: identities.map((id, i) => `site-${i}=${Buffer.from(id.publicKey).toString('base64')}`) },
    run: { dir: runDir, seed: cell.seed },
    // A cell waits for every site (a 50-site cell on a busy machine, or a CPU smoke check, outlasts the 120 s default).
    rounds: { total: cell.rounds, minClients: n, minUpdates: n, clientsPerRound: n, deadlineMs: 600_000 },
    training: { localSteps, batchSize: cell.batchSize, learningRate: cell.learningRate },
    // The WebGPU engine has no LoRA dropout (a task plan asking for it trains on tfjs instead); the coordinator's 0
    // reaches every site in the task plan, so CPU and GPU cells train the same way.
    lora: { dropout: 0 },
    // Every site, every round, waited for (a site's 50 validation e-mails cost less than its training).
    // With --eval-every k, every k-th round (the rounds the held-out set is scored in, so each has both figures).
    ...(cell.fedEval !== false
      ? { evaluation: { enabled: true, everyRounds: cell.fedEvalEvery ?? cell.evalEvery ?? 1, sites: 'participants', minSites: n, deadlineMs: 600_000 } }
      : {}),
    model: { dir: DEFAULT_MODEL_DIR },
    log: { level: 'warn' },
  };
  const config = classicConfig({ overrides: deepMerge(common, overrides) });
  const lora = loraSettings(config);
  const scored = (version: number): boolean => isScoredRound(version, cell);
  // Which held-out e-mails each scored version got right, by version (cell.keepCorrect): bit i of byte i >> 3.
  const correct = new Map<number, Uint8Array>();
  const evaluator = async (adapter: TensorList, version: number): Promise<Record<string, number>> => {
    if (!scored(version)) return {};
    const bits = new Uint8Array(Math.ceil(task.test.length / 8));
    const onExample = cell.keepCorrect ? (i: number, right: boolean) => void (right && (bits[i >> 3] |= 1 << (i & 7))) : undefined;
    const m = await evaluateAdapter(model, { tensors: adapter, lora }, task.test, task.choices, 32, 128, onExample);
    if (cell.keepCorrect) correct.set(version, bits);
    return m;
  };
  const coordinator = new Coordinator({ config, evaluator, extraSeeds: { dataSplit: cell.splitSeed }, logger: pino({ level: 'warn' }) });
  const curve: (RoundPoint & { version: number })[] = [];
  const started = Date.now();
  coordinator.on('roundCommitted', (ev: { version: number; round: number; metrics: Record<string, number> }) => {
    const m = ev.metrics;
    if (m['heldout.eval_accuracy'] === undefined) return; // a round --eval-every skips: not on the curve
    const extra: Record<string, number> = {};
    for (const [k, v] of Object.entries(m)) if (!k.startsWith('heldout.') && (!k.startsWith('clients.') || KEPT_CLIENT_METRICS.has(k))) extra[k] = v;
    // Seconds since the federation started, at this commit: the cost of a round on the machine that ran it.
    extra['cell.seconds'] = (Date.now() - started) / 1000;
    const bits = correct.get(ev.version);
    correct.delete(ev.version);
    curve.push({
      version: ev.version,
      round: ev.round,
      accuracy: m['heldout.eval_accuracy'],
      loss: m['heldout.eval_loss'],
      extra,
      ...(bits ? { correct: Buffer.from(bits).toString('base64') } : {}),
    });
    // The validation figures too: a cell cut short by a time limit leaves its curve, early stopping's signal included, in the log.
    const val = m['eval.loss'] !== undefined ? `, val loss ${m['eval.loss'].toFixed(4)}, val accuracy ${(100 * m['eval.accuracy']).toFixed(2)}%` : '';
    // Two decimals: one e-mail of the whole held-out set (907) is 0.11 point, so a cut cell's log keeps exact scores.
    log(`round ${ev.round}: accuracy ${(100 * m['heldout.eval_accuracy']).toFixed(2)}%, loss ${m['heldout.eval_loss']?.toFixed(4)}${val}`);
  });
  coordinator.on('roundFailed', (ev: { reason: string }) => log(`round failed: ${ev.reason}`));
  const { address } = await coordinator.start();
  const trainers = await Promise.all(sites.map((d) => makeTrainer(model, lora, d, (cell.evalEvery ?? 1) > 1)));
  const made = trainers.map((t) => t.trainer);
  if (slots) log(`${n} federation clients over ${made.length} trainers`);
  const clients = identities.map(
    (identity, i) =>
      new FederationClient({ address, name: `site-${i}`, identity, baseModelSha256: modelHash, trainer: slots ? slots.trainer(made, i) : made[i] }),
  );
  // Thousands of sites in one process (run 22: 4,624) joining at once starve the event loop: Hellos and Joins pass
  // their 10 s deadlines, every retry leaves a challenge open, and the 10,000 a peer may hold run out. The sites
  // join in waves of JOIN_WAVE, each after the last has joined (or one of its sites has ended).
  const runs: Promise<unknown>[] = [];
  for (let k = 0; k < clients.length; k += JOIN_WAVE) {
    const wave = clients.slice(k, k + JOIN_WAVE);
    const joined = Promise.all(wave.map((c) => new Promise<void>((resolve) => c.once('joined', () => resolve()))));
    const started = wave.map((c) => c.run());
    runs.push(...started);
    await Promise.race([joined, ...started.map((p) => p.then(noop, noop))]);
  }
  let release: number | null;
  try {
    await coordinator.done;
    await Promise.all(runs);
    // What the run would ship: the release pointer as the coordinator left it (earlyStopping.*).
    release = await readRelease(runDir);
    // A GPU failure moves a site to its next backend mid-run (client-sdk/engine/fallback.ts): not this cell's measure.
    const moved = trainers.find((t) => t.trainer.backend !== t.backend);
    if (moved) throw new Error(`a site fell back from ${moved.backend} to ${moved.trainer.backend} during the run`);
    // ε lives in the manifest's privacy record, not in its metrics; so does adaptive clipping's C and noised fraction.
    for (const p of curve) {
      const privacy = (await coordinator.store.read(p.version)).manifest.privacy;
      if (typeof privacy?.epsilon === 'number') p.extra['privacy.epsilon'] = privacy.epsilon;
      const clip = privacy?.adaptiveClipping;
      if (clip) {
        p.extra['privacy.clip_norm'] = clip.clipNorm;
        p.extra['privacy.unclipped_fraction'] = clip.unclippedFraction;
      }
    }
  } finally {
    await coordinator.stop();
    for (const t of trainers) await (t.trainer as { dispose?: () => Promise<void> }).dispose?.();
    await fs.rm(runDir, { recursive: true, force: true });
  }
  return { curve: curve.sort((a, b) => a.round - b.round).map(({ version: _v, ...p }) => p), backend: trainers[0].backend, release };
}

/** Sites that join at once (runFederation); a cell of fewer sites joins all at once, as before. */
const JOIN_WAVE = 500;
const noop = (): void => undefined;

/** The site's trainer as a site would get it (FEDTUNE_ENGINE picks the engine); a cell never measures a fallback. */
async function makeTrainer(model: Gpt2Model, lora: LoraConfig, d: SftData, candidateEvalOnly: boolean): Promise<{ trainer: Trainer; backend: string }> {
  const t = await trainerForModel(model, lora, { ...d, evalMaxSeqLen: 128 });
  if (t.engineFallback) throw new Error(`FEDTUNE_ENGINE=${process.env.FEDTUNE_ENGINE}: ${t.engineFallback}`);
  // Cells scored every k > 1 rounds skip the per-round validation of the site's own adapter (quality-site-eval.ts).
  return { trainer: withUpdateNorm(candidateEvalOnly ? withCandidateEvalOnly(t.trainer) : t.trainer), backend: t.backend };
}

if (require.main === module) {
  const cell = JSON.parse(process.argv[2] ?? '') as QualityCell;
  void runCell(cell, (l) => process.stderr.write(`${cell.split}/${cell.config}/${cell.seed} ${l}\n`))
    .catch((e: Error): CellResult => ({ cell, ok: false, error: e.message, curves: [], backend: '', seconds: 0 }))
    .then((r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    });
}
