// rounds.reconnectGraceMs with the real SDK: a site whose connection is cut while its task runs (during training,
// during the evaluation after its upload, during a federated evaluation) reopens its task stream at once while the
// task runs on, so the coordinator has it back while the task runs. The task then outlasts the grace, and its
// update, its report and its evaluation report still count: the version and every figure are the same bits as a run
// without the cut. Real coordinator on a tiny Llama directory, real training, real gRPC; site-b talks to it through a
// TCP relay that cuts its connections (its gRPC channel connects again through the relay). And a `fedtune-site`
// process cut mid-round exits by itself once the run is over: no stream or timer of the reconnect is left behind.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FederationClient } from '../client-sdk/client';
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
const GRACE_MS = 3_000;
const SITE_CLI = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');
type Phase = 'train' | 'localEval' | 'fedEval';

/** 20 prompt/completion rows; a validation fraction of 0.25 holds out 5. */
function dataFile(file: string, site: number): void {
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
 * that outlasts the grace. Evaluate's first call is the evaluation after the upload, its second the federated one.
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

interface RunResult {
  adapterSha256: string;
  manifest: Manifest;
  b: { trains: number; evaluations: number; backInTask: Phase[]; joined: number; reconnects: number; failed: string[]; evaluated: number; resent: number };
  /** Site-b's metrics reports the coordinator recorded (a repeat is not one). */
  bReports: number;
  /** When version 1 was committed. */
  committedAt: number;
}

/** Timing figures differ between runs; every other figure must not. */
const figures = (m: Record<string, number>): Record<string, number> => Object.fromEntries(Object.entries(m).filter(([k]) => !/seconds|per_second/.test(k)));

describe('reconnect grace with the SDK: a cut during a task (real coordinator, training and gRPC)', function () {
  this.timeout(180_000);
  let tmp: string;
  let model: LoadedModel;
  let backend = '';
  const data: JsonlSftData[] = [];

  before(async () => {
    tmp = await tempDir('reconnect-sdk');
    makeTinyLlamaDir(path.join(tmp, 'model'));
    backend = await selectBackend();
    model = await loadModelDir(path.join(tmp, 'model'));
    const tok = await HfTokenizer.fromDir(path.join(tmp, 'model'));
    for (const site of [0, 1]) {
      dataFile(path.join(tmp, `${site}.jsonl`), site);
      data.push(await loadJsonlSftData(path.join(tmp, `${site}.jsonl`), tok, { seed: 7, validationFraction: 0.25 }));
    }
  });
  after(async () => {
    model?.model.dispose();
    await fs.promises.rm(tmp, { recursive: true, force: true });
  });

  /** One round of site-a (direct) and site-b (through the relay), with site-b's connection cut in `cuts`. */
  /** One round on the tiny Llama directory, federated evaluation on. */
  const coordinator = (name: string): Promise<Harness> =>
    startCoordinator(
      path.join(tmp, name),
      { total: 1, minClients: 2, minUpdates: 2, deadlineMs: 120_000, reconnectGraceMs: GRACE_MS },
      {
        model: { dir: path.join(tmp, 'model'), name: 'tiny-llama' },
        lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] },
        training: { localSteps: 3, batchSize: 2, maxSeqLen: 64 },
        evaluation: { enabled: true, deadlineMs: 120_000 },
      },
      { fromModelDir: true },
    );

  async function oneRound(name: string, cuts: readonly Phase[], arm?: (h: Harness, relay: TcpRelay) => void): Promise<RunResult> {
    const h = await coordinator(name);
    const relay = await tcpRelay(h.address);
    let bReports = 0;
    let committedAt = 0;
    h.coordinator.on('metricsReported', (e) => (bReports += e.clientId === clientIdFor('site-b') ? 1 : 0));
    h.coordinator.on('roundCommitted', () => (committedAt = Date.now()));
    arm?.(h, relay);
    try {
      const trainer = (i: number): Trainer => new TaskLoraTrainer({ model: model.model, data: data[i], lora: {}, backend });
      const b = new CuttingTrainer(trainer(1), new Link(h, relay, clientIdFor('site-b')), cuts);
      const fast = { initialMs: 20, maxMs: 200, factor: 2 };
      const siteA = new FederationClient({ address: h.address, name: 'site-a', identity: testIdentity('site-a'), trainer: trainer(0), backoff: fast });
      const seen = { joined: 0, reconnects: 0, failed: [] as string[], evaluated: 0, resent: 0 };
      const log = (_: string, msg: string): void => void (seen.resent += msg === REPORT_RESENT ? 1 : 0);
      const siteB = new FederationClient({ address: relay.address, name: 'site-b', identity: testIdentity('site-b'), trainer: b, backoff: fast, log });
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
        committedAt,
      };
    } finally {
      relay.close();
      await h.coordinator.stop(500);
    }
  }

  let plain: RunResult;
  /** The run without a cut, and one cut in `cuts`: site-b counted, the same bits as without the cut. */
  async function expectCounted(cuts: readonly Phase[]): Promise<void> {
    plain ??= await oneRound('plain', []);
    expect(plain.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
    expect(plain.manifest.evaluation).to.include({ sites: 2, selected: 2 });
    for (const p of plain.manifest.participants) expect(p.metrics).to.include.keys('train_loss', 'eval_loss');
    const r = await oneRound(cuts.join('-'), cuts);
    // Back while each task still ran, having reopened its stream under the same session (no second join); the
    // task ran once (the coordinator's re-send of the open task on the new stream was not run again), nothing failed.
    expect(r.b.backInTask).to.deep.equal(cuts);
    expect({ trains: r.b.trains, evaluations: r.b.evaluations, joined: r.b.joined, failed: r.b.failed, evaluated: r.b.evaluated }).to.deep.equal({
      trains: 1,
      evaluations: 2,
      joined: 1,
      failed: [],
      evaluated: 1,
    });
    expect(r.b.reconnects).to.be.at.least(cuts.length);
    // Its update, its report and its evaluation report counted: the version, the sites' figures and the federated
    // evaluation are those of the run without the cut, bit for bit.
    const named = (m: Manifest): [string, Record<string, number>][] => m.participants.map((p) => [p.clientName, figures(p.metrics)]);
    expect(named(r.manifest)).to.deep.equal(named(plain.manifest));
    expect(r.manifest.evaluation).to.deep.equal(plain.manifest.evaluation);
    expect(r.adapterSha256).to.equal(plain.adapterSha256);
  }

  it('cut during training: the stream is back while it trains; its update and report count', () => expectCounted(['train']));

  it('cut during the evaluation after its upload: its report counts', () => expectCounted(['localEval']));

  it('cut during training and again during the federated evaluation: its update, report and evaluation report count', () =>
    expectCounted(['train', 'fedEval']));

  /**
   * Site-b's connection cut during its ReportMetrics call. The relay spots the call by its bytes (metric names travel
   * in clear only in a MetricsReport). 'holdReplies': the report lands, and its answer is held until the coordinator
   * recorded it, then the connection is cut: the site cannot know it landed. 'cut': the report never reaches the
   * coordinator. Either way the SDK sends it again over its reconnected channel, and the round commits with site-b's
   * report, once, the same bits as without the cut, long before the round's deadline (120 s).
   */
  async function expectReportCounted(act: 'cut' | 'holdReplies'): Promise<void> {
    plain ??= await oneRound('plain', []);
    let cutAt = 0;
    const r = await oneRound(`report-${act}`, [], (h, relay) => {
      void relay.onSiteBytes(/train_loss/, act).then(async () => {
        if (act === 'holdReplies') await new Promise((landed) => h.coordinator.once('metricsReported', landed));
        relay.cutAll();
        cutAt = Date.now();
      });
    });
    expect(cutAt, 'the relay saw the report call').to.be.above(0);
    expect({
      trains: r.b.trains,
      evaluations: r.b.evaluations,
      joined: r.b.joined,
      failed: r.b.failed,
      evaluated: r.b.evaluated,
      bReports: r.bReports,
    }).to.deep.equal({
      trains: 1,
      evaluations: 2,
      joined: 1,
      failed: [],
      evaluated: 1,
      bReports: 1,
    });
    expect(r.b.resent, 'the report was sent again').to.be.at.least(1);
    expect(r.committedAt - cutAt, 'committed without waiting for the deadline').to.be.below(30_000);
    const named = (m: Manifest): [string, Record<string, number>][] => m.participants.map((p) => [p.clientName, figures(p.metrics)]);
    expect(named(r.manifest)).to.deep.equal(named(plain.manifest));
    expect(r.manifest.evaluation).to.deep.equal(plain.manifest.evaluation);
    expect(r.adapterSha256).to.equal(plain.adapterSha256);
  }

  it('cut during its ReportMetrics call after the report landed (the answer lost): sent again, acknowledged, counted once', () =>
    expectReportCounted('holdReplies'));

  it('cut during its ReportMetrics call before the report arrived: sent again, counted, the round does not wait for its deadline', () =>
    expectReportCounted('cut'));

  it('a site process cut when it is selected reconnects, counts, and exits by itself once the run is over', async () => {
    const h = await coordinator('process');
    const relay = await tcpRelay(h.address);
    try {
      h.coordinator.on('clientSelected', (e: { clientId: string }) => e.clientId === clientIdFor('site-b') && relay.cuts() === 0 && relay.cutAll());
      // execFile settles only when the process has exited: a stream or timer left behind would keep it alive.
      const site = (name: string, address: string, data: number): Promise<{ stdout: string; stderr: string }> =>
        promisify(execFile)(
          process.execPath,
          [SITE_CLI, 'client', ...['--address', address, '--name', name, '--model', path.join(tmp, 'model'), '--data', path.join(tmp, `${data}.jsonl`)]].concat(
            ['--val-fraction', '0.25', '--identity', path.join(tmp, `${name}.id.json`), '--progress', 'off'],
          ),
          { timeout: 120_000 },
        );
      const [, b] = await Promise.all([site('site-a', h.address, 0), site('site-b', relay.address, 1)]);
      const lines = b.stdout
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg: string });
      expect(relay.cuts()).to.be.at.least(1);
      expect(lines.filter((l) => l.msg === 'connection lost; retrying').length).to.be.at.least(1);
      expect(lines.filter((l) => l.msg === 'joined')).to.have.length(1); // the stream reopened under the same session
      const final = await h.coordinator.done;
      expect(final.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
      expect(final.manifest.evaluation).to.include({ sites: 2, selected: 2 });
    } finally {
      relay.close();
      await h.coordinator.stop(500);
    }
  });
});
