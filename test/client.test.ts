// The client SDK against a real coordinator over loopback gRPC: backoff, reconnecting when the coordinator
// restarts (or is not up yet), a cancel or a lost session aborting local training, stop() leaving the
// federation, and a base-model mismatch refusing to train instead of retrying forever.
import { promises as fs } from 'node:fs';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { Coordinator } from '../coordinator/coordinator';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { FederationClient, type ClientLogger } from '../client-sdk/client';
import { backoffDelay, DEFAULT_BACKOFF } from '../client-sdk/backoff';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import type { TensorList } from '../proto/tensors';
import { ConstantTrainer, freePort, smallAdapter, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const fast = { initialMs: 20, maxMs: 200, factor: 2 };

/** Hangs on the calls `hangOn` picks until aborted (recording why), otherwise adds `value`. */
class GateTrainer implements Trainer {
  readonly backend = 'test';
  calls = 0;
  readonly abortReasons: string[] = [];
  constructor(
    private readonly hangOn: (call: number, plan: TrainingPlan) => boolean,
    private readonly value = 0.5,
  ) {}
  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
    const call = ++this.calls;
    if (this.hangOn(call, plan)) {
      await new Promise<void>((_, reject) =>
        signal!.addEventListener('abort', () => {
          this.abortReasons.push((signal!.reason as Error).message);
          reject(signal!.reason);
        }),
      );
    }
    return new ConstantTrainer(this.value).train(global, plan, signal);
  }
}

describe('client SDK', function () {
  this.timeout(30_000);
  const coordinators: Coordinator[] = [];
  const clients: FederationClient[] = [];
  const dirs: string[] = [];

  async function coordinator(runDir: string, rounds: Record<string, unknown>, port = 0): Promise<{ c: Coordinator; address: string; port: number }> {
    const config = classicConfig({
      overrides: {
        server: { port },
        run: { dir: runDir, seed: 3 },
        rounds: { total: 1, minClients: 1, minUpdates: 1, clientsPerRound: 100, deadlineMs: 10_000, maxAttempts: 3, ...rounds },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
      },
    });
    const c = new Coordinator({
      config,
      initialAdapter: () => smallAdapter(0),
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 'test', sha256: '0'.repeat(64) },
      logger: pino({ level: 'silent' }),
    });
    coordinators.push(c);
    const started = await c.start();
    return { c, ...started };
  }
  const dir = async (): Promise<string> => {
    const d = await tempDir('client');
    dirs.push(d);
    return d;
  };
  const site = (address: string, trainer: Trainer, extra: Partial<ConstructorParameters<typeof FederationClient>[0]> = {}): FederationClient => {
    const c = new FederationClient({ address, name: 'site', identity: testIdentity('site'), trainer, backoff: fast, ...extra });
    clients.push(c);
    return c;
  };

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.stop().catch(() => undefined);
    for (const c of coordinators.splice(0)) await c.stop(200);
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });

  describe('backoff', () => {
    it('grows the upper bound by factor per attempt and caps it at maxMs', () => {
      const o = { initialMs: 100, maxMs: 1000, factor: 3 };
      expect([0, 1, 2, 3, 10].map((n) => backoffDelay(n, o, () => 1))).to.deep.equal([100, 300, 900, 1000, 1000]);
      expect(backoffDelay(-1, o, () => 1)).to.equal(100);
      expect(backoffDelay(5, o, () => 0)).to.equal(0);
    });

    it('draws uniformly below the bound (full jitter), so clients that lost the coordinator together spread out', () => {
      const draws = Array.from({ length: 2000 }, () => backoffDelay(4, DEFAULT_BACKOFF));
      const cap = Math.min(DEFAULT_BACKOFF.maxMs, DEFAULT_BACKOFF.initialMs * 2 ** 4);
      expect(Math.min(...draws)).to.be.at.least(0);
      expect(Math.max(...draws)).to.be.at.most(cap);
      const mean = draws.reduce((s, x) => s + x, 0) / draws.length;
      expect(mean).to.be.closeTo(cap / 2, cap * 0.05);
      expect(new Set(draws).size).to.be.greaterThan(100);
    });

    it('refuses options that would not back off', () => {
      expect(() => backoffDelay(1, { initialMs: 10, maxMs: 100, factor: 0.5 })).to.throw(RangeError, 'factor');
      expect(() => backoffDelay(1, { initialMs: -1, maxMs: 100, factor: 2 })).to.throw(RangeError);
    });
  });

  it('reconnects with backoff after the coordinator restarts, aborting the training the lost session made pointless', async () => {
    const runDir = await dir();
    const first = await coordinator(runDir, { total: 2 });
    // Round 2's first task hangs, so the coordinator goes down mid-training; the retry (new coordinator) completes.
    const trainer = new GateTrainer((call, plan) => plan.round === 2 && call === 2);
    const client = site(first.address, trainer);
    const reconnects: number[] = [];
    client.on('reconnecting', (e) => reconnects.push(e.attempt));
    const run = client.run();
    await new Promise<void>((r) => first.c.on('roundStarted', (e) => e.round === 2 && r()));
    await new Promise((r) => setTimeout(r, 100));
    await first.c.stop(200);

    const second = await coordinator(runDir, { total: 2 }, first.port);
    const summary = await run;
    const final = await second.c.done;
    expect(summary).to.include({ finalVersion: 2, reason: 'all rounds committed' });
    expect(reconnects.length).to.be.greaterThan(0);
    expect(trainer.abortReasons).to.have.length(1);
    // The restarted coordinator does not know the session (its task ids are new): the reopened stream is refused.
    expect(trainer.abortReasons[0]).to.match(/^session lost: .*UNAUTHENTICATED: unknown session token/);
    expect(final.manifest).to.include({ version: 2, round: 2 });
    expect(final.manifest.participants.map((p) => p.clientName)).to.deep.equal(['site']);
  });

  it('keeps retrying until a coordinator comes up at its address', async () => {
    const port = await freePort();
    const client = site(`127.0.0.1:${port}`, new ConstantTrainer(0.5));
    const reconnects: string[] = [];
    client.on('reconnecting', (e) => reconnects.push(e.error));
    const run = client.run();
    await new Promise((r) => setTimeout(r, 400));
    expect(reconnects.length).to.be.greaterThan(1);
    expect(reconnects[0]).to.contain('UNAVAILABLE');
    await coordinator(await dir(), {}, port);
    expect((await run).finalVersion).to.equal(1);
  });

  it('stop() ends a backoff wait: run() resolves as stopped at once', async () => {
    const port = await freePort(); // nobody listens: every attempt fails and waits
    const hour = 3_600_000;
    const client = site(`127.0.0.1:${port}`, new ConstantTrainer(0.5), { backoff: { initialMs: hour, maxMs: hour, factor: 2 } });
    // Delays are drawn uniformly in [0, 1 h]. A draw of 10 s or more is a wait that stop() must end: the run resolves
    // within 5 s (a loaded CI box stalls for seconds), sooner than the wait would. A shorter draw (1 in 360) just leads to the next attempt
    // within 10 s, well inside the test's timeout. (The threshold was 60 s: a draw between 30 and 60 s, about 1 in
    // 120, slept past the timeout and failed the test.)
    const longWait = new Promise<number>((r) => client.on('reconnecting', (e) => e.delayMs >= 10_000 && r(e.delayMs)));
    const run = client.run();
    const delayMs = await longWait;
    const t0 = Date.now();
    await client.stop();
    expect(await run).to.include({ finalVersion: -1, reason: 'stopped' });
    expect(Date.now() - t0, `stopped a wait of ${delayMs} ms`).to.be.below(5_000);
  });

  it('stops a training that would overrun the round deadline (before the coordinator cancels the task), and trains the retry', async () => {
    const { c, address } = await coordinator(await dir(), { deadlineMs: 2500, maxAttempts: 2 });
    const trainer = new GateTrainer((call) => call === 1);
    const client = site(address, trainer);
    const failed: { cancelled: boolean; error: string }[] = [];
    client.on('taskFailed', (e) => failed.push(e));
    const summary = await client.run();
    const final = await c.done;
    expect(trainer.abortReasons).to.have.length(1);
    // The SDK stops it shortly before the deadline (TrainingPlan.deadlineUnixMs), ahead of the coordinator's cancel.
    expect(trainer.abortReasons[0]).to.match(/^training stopped: the round deadline \(.*\) is near$/);
    expect(failed).to.have.length(1);
    expect(failed[0].cancelled).to.equal(false); // the site stopped it; the coordinator had not cancelled it yet
    expect(summary).to.include({ finalVersion: 1, tasksCompleted: 1 });
    expect(final.manifest).to.include({ version: 1, attempt: 2 });
  });

  it('stop() leaves the federation and resolves run() as stopped', async () => {
    const { c, address } = await coordinator(await dir(), { minClients: 2 });
    const lines: string[] = [];
    const capture = (level: string) => (_f: Record<string, unknown>, msg: string) => lines.push(`${level} ${msg}`);
    const logger: ClientLogger = { info: capture('info'), warn: capture('warn'), error: capture('error') };
    const client = site(address, new ConstantTrainer(0.5), { logger });
    const joined = new Promise<string>((r) => client.once('joined', (e) => r(e.clientId)));
    const run = client.run();
    const id = await joined;
    for (let i = 0; i < 500 && c.registry.connected().length === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(c.registry.connected().map((s) => s.clientId)).to.deep.equal([id]);
    await client.stop();
    expect(await run).to.include({ finalVersion: -1, reason: 'stopped', tasksCompleted: 0 });
    for (let i = 0; i < 500 && c.registry.byId(id) !== undefined; i++) await new Promise((r) => setTimeout(r, 20)); // slow box: Leave may land late
    expect(c.registry.byId(id)).to.equal(undefined);
    // On a loaded box version 0 may still be committing when the site has come and gone.
    for (let i = 0; i < 500 && c.engine.phase !== 'WAITING_FOR_CLIENTS'; i++) await new Promise((r) => setTimeout(r, 20));
    expect(c.engine.phase).to.equal('WAITING_FOR_CLIENTS');
    expect(lines).to.include('info joined');
  });

  it('refuses to train for a coordinator whose base model differs, without retrying', async () => {
    const { address } = await coordinator(await dir(), {});
    const client = site(address, new ConstantTrainer(0.5), { baseModelSha256: 'f'.repeat(64) });
    let reconnects = 0;
    client.on('reconnecting', () => reconnects++);
    const err = await client.run().then(
      () => null,
      (e: { code?: number; message: string }) => e,
    );
    expect(err?.code).to.equal(status.FAILED_PRECONDITION);
    expect(err?.message).to.contain('fine-tunes base model 0000');
    expect(reconnects).to.equal(0);
  });
});
