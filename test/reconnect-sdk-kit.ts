// The rig of the SDK's reconnect tests (reconnect-grace-sdk, report-deadline-sdk): one round on a tiny Llama
// directory with federated evaluation on, real training, real gRPC; site-a talks to the coordinator directly, site-b
// through a TCP relay (tcp-relay.ts) that cuts or blackholes its connections, and the run is compared with one
// without any break: the version and every figure must be the same bits.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import pino from 'pino';
import { FederationClient, type FederationClientOptions } from '../client-sdk/client';
import { REPORT_RESENT } from '../client-sdk/report-retry';
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir, type LoadedModel } from '../client-sdk/model/load';
import { HfTokenizer } from '../client-sdk/text/hf-tokenizer';
import { loadJsonlSftData, type JsonlSftData } from '../client-sdk/data/sft-jsonl';
import { TaskLoraTrainer } from '../client-sdk/sft/task-lora';
import type { Trainer, TrainingPlan, TrainOutcome, TrainStep } from '../client-sdk/trainer';
import { clientIdFor } from '../coordinator/registry';
import type { Manifest } from '../coordinator/checkpoints/types';
import type { TensorList } from '../proto/tensors';
import { startCoordinator, tempDir, testIdentity, type Harness } from './harness';
import { makeTinyLlamaDir } from './tiny-llama-dir';
import { tcpRelay, type TcpRelay } from './tcp-relay';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

// Far above the reconnect (25-230 ms measured on the shared 2-core box), so the cut site is back well within it.
export const GRACE_MS = 3_000;
export type Phase = 'train' | 'localEval' | 'fedEval';
export const SITE_B = clientIdFor('site-b');

/** 20 prompt/completion rows; a validation fraction of 0.25 holds out 5. */
export function dataFile(file: string, site: number): void {
  const rows: string[] = [];
  for (let i = 0; i < 20; i++) rows.push(JSON.stringify({ prompt: `Site ${site} question ${i}: what is ${i} plus ${i}?`, completion: ` ${2 * i}` }));
  fs.writeFileSync(file, rows.join('\n') + '\n');
}

/** What a cut is waited on with: the relay, and the coordinator's view of site-b. */
class Link {
  constructor(
    private readonly h: Harness,
    private readonly relay: TcpRelay,
    private readonly clientId: string,
  ) {}

  /**
   * Cuts site-b's connections. Resolves with 'back' once a new task stream of site-b attached at the coordinator,
   * or 'moved on' once the coordinator committed version 1 (without the fix it does so without the site's report);
   * `awayAt` is when the coordinator saw the stream go (the cut's time if it saw the new one first).
   */
  cut(): { outcome: Promise<'back' | 'moved on'>; awayAt: () => number } {
    const registry = this.h.coordinator.registry;
    let awayAt = Date.now();
    let seenAway = false;
    const change = (): void => {
      if (!seenAway && !registry.isLive(this.clientId)) [seenAway, awayAt] = [true, Date.now()];
    };
    registry.on('change', change);
    const outcome = new Promise<'back' | 'moved on'>((resolve) => {
      const attached = (s: { clientId: string }): void => {
        if (s.clientId === this.clientId) done('back');
      };
      const committed = (): void => done('moved on');
      const done = (o: 'back' | 'moved on'): void => {
        registry.off('attached', attached).off('change', change);
        this.h.coordinator.off('roundCommitted', committed);
        resolve(o);
      };
      registry.on('attached', attached);
      this.h.coordinator.on('roundCommitted', committed);
    });
    this.relay.cutAll();
    return { outcome, awayAt: () => awayAt };
  }
}

/**
 * Site-b's trainer: the real one, with its connection cut in the phases asked for. After a cut the call holds until
 * the coordinator has the site back, then until the grace (from when the coordinator saw it go) has passed: a task
 * that outlasts the grace. Evaluate's first call is the evaluation after the upload, its second the federated one;
 * `onFedEval` hears the second's start (after the candidate's download).
 */
class CuttingTrainer implements Trainer {
  trains = 0;
  evaluations = 0;
  /** The phases whose cut the site was back from while its task still ran. */
  readonly backInTask: Phase[] = [];

  constructor(
    private readonly inner: Trainer,
    private readonly link: Link,
    private readonly cuts: readonly Phase[],
    private readonly onFedEval?: () => void,
  ) {}

  get backend(): string {
    return this.inner.backend;
  }

  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal, onStep?: (s: TrainStep) => void): Promise<TrainOutcome> {
    if (++this.trains > 1 || !this.cuts.includes('train')) return this.inner.train(global, plan, signal, onStep);
    let held: Promise<void> | undefined;
    // Cut at the first step's report, while the real training runs on.
    const out = await this.inner.train(global, plan, signal, (s) => {
      held ??= this.hold('train', signal);
      onStep?.(s);
    });
    await held;
    return out;
  }

  async evaluate(adapter: TensorList): Promise<Record<string, number>> {
    const phase: Phase = ++this.evaluations === 1 ? 'localEval' : 'fedEval';
    if (this.evaluations === 2) this.onFedEval?.(); // once: a re-run (a bug) must not be cut again
    const held = this.cuts.includes(phase) ? this.hold(phase) : undefined;
    const figures = await this.inner.evaluate!(adapter);
    await held;
    return figures;
  }

  /** A cut, and the wait after it; rejects as a trainer does when its task is aborted. */
  private async hold(phase: Phase, signal?: AbortSignal): Promise<void> {
    const { outcome, awayAt } = this.link.cut();
    const aborted = new Promise<never>((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason as Error), { once: true }));
    if ((await Promise.race([outcome, aborted])) !== 'back') return;
    this.backInTask.push(phase);
    await new Promise((r) => setTimeout(r, Math.max(0, awayAt() + GRACE_MS + 1 - Date.now())));
  }
}

export interface RunResult {
  adapterSha256: string;
  manifest: Manifest;
  b: {
    trains: number;
    evaluations: number;
    backInTask: Phase[];
    joined: number;
    reconnects: number;
    failed: string[];
    evaluated: number;
    /** Reports site-b sent again, and the failure that made it send each. */
    resent: number;
    resentAfter: string[];
  };
  /** Site-b's metrics reports the coordinator recorded (a repeat is not one). */
  bReports: number;
  /** Site-b's evaluation reports the coordinator accepted, and those it acknowledged as repeats. */
  bEvalReports: { accepted: number; repeated: number };
  /** Connections site-b opened through the relay. */
  connections: number;
  /** When version 1 was committed. */
  committedAt: number;
}

/**
 * What a test may do around one round: arm the relay (given the coordinator), set site-b's options, act when its
 * federated evaluation starts, when it sends a report again, and on what the coordinator logs about it.
 */
export interface RoundSetup {
  arm?: (h: Harness, relay: TcpRelay) => void;
  siteB?: Partial<FederationClientOptions>;
  onFedEval?: (relay: TcpRelay) => void;
  onResent?: (relay: TcpRelay) => void;
  /** Hears each line the coordinator logs about site-b (its message). */
  onLog?: (msg: string) => void;
}

/** Timing figures differ between runs; every other figure must not. */
const figures = (m: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(m).filter(([k]) => !/seconds|per_second/.test(k)));
const named = (m: Manifest): [string, Record<string, number>][] => m.participants.map((p) => [p.clientName, figures(p.metrics)]);

/** Site-b's task ran once (and its federated evaluation), nothing failed, it never joined again, and its metrics report was recorded once. */
export function expectRanOnce(r: RunResult): void {
  const { trains, evaluations, joined, failed, evaluated } = r.b;
  expect({ trains, evaluations, joined, failed, evaluated, bReports: r.bReports }).to.deep.equal({
    trains: 1,
    evaluations: 2,
    joined: 1,
    failed: [],
    evaluated: 1,
    bReports: 1,
  });
}

/** The tiny Llama directory, the two sites' data, and the rounds run on them (set up in a suite's before()). */
export class SdkRig {
  tmp = '';
  private model: LoadedModel | undefined;
  private backend = '';
  private readonly data: JsonlSftData[] = [];
  private plainRun: RunResult | undefined;

  async setUp(prefix: string): Promise<void> {
    this.tmp = await tempDir(prefix);
    makeTinyLlamaDir(path.join(this.tmp, 'model'));
    this.backend = await selectBackend();
    this.model = await loadModelDir(path.join(this.tmp, 'model'));
    const tok = await HfTokenizer.fromDir(path.join(this.tmp, 'model'));
    for (const site of [0, 1]) {
      dataFile(path.join(this.tmp, `${site}.jsonl`), site);
      this.data.push(await loadJsonlSftData(path.join(this.tmp, `${site}.jsonl`), tok, { seed: 7, validationFraction: 0.25 }));
    }
  }

  async tearDown(): Promise<void> {
    this.model?.model.dispose();
    await fs.promises.rm(this.tmp, { recursive: true, force: true });
  }

  /** One round on the tiny Llama directory, federated evaluation on; `logger` hears the coordinator's log. */
  coordinator(name: string, logger?: pino.Logger): Promise<Harness> {
    return startCoordinator(
      path.join(this.tmp, name),
      { total: 1, minClients: 2, minUpdates: 2, deadlineMs: 120_000, reconnectGraceMs: GRACE_MS },
      {
        model: { dir: path.join(this.tmp, 'model'), name: 'tiny-llama' },
        lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] },
        training: { localSteps: 3, batchSize: 2, maxSeqLen: 64 },
        evaluation: { enabled: true, deadlineMs: 120_000 },
      },
      { fromModelDir: true, ...(logger ? { logger } : {}) },
    );
  }

  /** One round of site-a (direct) and site-b (through the relay), with site-b's connection cut in `cuts`. */
  async oneRound(name: string, cuts: readonly Phase[], setup: RoundSetup = {}): Promise<RunResult> {
    const evalReports = { accepted: 0, repeated: 0 };
    const logger = pino(
      { level: 'info' },
      {
        write: (line: string): void => {
          const l = JSON.parse(line) as { msg: string; clientId?: string };
          if (l.clientId !== SITE_B) return;
          setup.onLog?.(l.msg);
          if (l.msg === 'evaluation report accepted') evalReports.accepted++;
          if (l.msg === 'evaluation report repeated: acknowledged, counted once') evalReports.repeated++;
        },
      },
    );
    const h = await this.coordinator(name, logger);
    const relay = await tcpRelay(h.address);
    let bReports = 0;
    let committedAt = 0;
    h.coordinator.on('metricsReported', (e) => (bReports += e.clientId === SITE_B ? 1 : 0));
    h.coordinator.on('roundCommitted', () => (committedAt = Date.now()));
    setup.arm?.(h, relay);
    try {
      const trainer = (i: number): Trainer => new TaskLoraTrainer({ model: this.model!.model, data: this.data[i], lora: {}, backend: this.backend });
      const b = new CuttingTrainer(trainer(1), new Link(h, relay, SITE_B), cuts, setup.onFedEval && (() => setup.onFedEval!(relay)));
      const fast = { initialMs: 20, maxMs: 200, factor: 2 };
      const siteA = new FederationClient({ address: h.address, name: 'site-a', identity: testIdentity('site-a'), trainer: trainer(0), backoff: fast });
      const seen = { joined: 0, reconnects: 0, failed: [] as string[], evaluated: 0, resent: 0, resentAfter: [] as string[] };
      const log = (_: string, msg: string, fields?: Record<string, unknown>): void => {
        if (msg !== REPORT_RESENT) return;
        seen.resent++;
        seen.resentAfter.push(String(fields?.error));
        setup.onResent?.(relay);
      };
      const siteB = new FederationClient({
        address: relay.address,
        name: 'site-b',
        identity: testIdentity('site-b'),
        trainer: b,
        backoff: fast,
        log,
        ...setup.siteB,
      });
      siteB.on('joined', () => seen.joined++);
      siteB.on('reconnecting', () => seen.reconnects++);
      siteB.on('taskFailed', (e) => seen.failed.push(e.error));
      siteB.on('evaluated', () => seen.evaluated++);
      const summaries = await Promise.all([siteA.run(), siteB.run()]);
      expect(summaries.map((s) => s.finalVersion)).to.deep.equal([1, 1]);
      // run() is over and site-b's channel closed with it: no stream or connection of it is left open.
      await relay.idle();
      const vdir = path.join(h.runDir, 'versions', 'v000001');
      return {
        adapterSha256: createHash('sha256')
          .update(fs.readFileSync(path.join(vdir, 'adapter_model.safetensors')))
          .digest('hex'),
        manifest: JSON.parse(fs.readFileSync(path.join(vdir, 'manifest.json'), 'utf8')) as Manifest,
        b: { trains: b.trains, evaluations: b.evaluations, backInTask: b.backInTask, ...seen },
        bReports,
        bEvalReports: evalReports,
        connections: relay.connections(),
        committedAt,
      };
    } finally {
      relay.close();
      await h.coordinator.stop(500);
    }
  }

  /** The run without a break (once per rig), after checking that both sites trained, reported and evaluated. */
  async plain(): Promise<RunResult> {
    if (this.plainRun) return this.plainRun;
    const p = (this.plainRun = await this.oneRound('plain', []));
    expect(p.manifest.participants.map((x) => x.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
    expect(p.manifest.evaluation).to.include({ sites: 2, selected: 2 });
    for (const x of p.manifest.participants) expect(x.metrics).to.include.keys('train_loss', 'eval_loss');
    expect(p.bEvalReports).to.deep.equal({ accepted: 1, repeated: 0 });
    return p;
  }

  /** `r`'s version, its sites' figures and its federated evaluation are those of the run without a break, bit for bit. */
  async expectSameBits(r: RunResult): Promise<void> {
    const p = await this.plain();
    expect(named(r.manifest)).to.deep.equal(named(p.manifest));
    expect(r.manifest.evaluation).to.deep.equal(p.manifest.evaluation);
    expect(r.adapterSha256).to.equal(p.adapterSha256);
  }
}
