// The round state machine, beyond round-engine.test.ts: its phases and events, what a manifest records,
// selection as a function of seed (not join order), a client that leaves or reconnects mid-round, late
// uploads, a run that exhausts its attempts, aggregation that fails, and resuming after a restart.
// Real Coordinator, real gRPC on loopback; a tiny hand-made adapter and constant-delta trainers.
import { PROTOCOL_VERSION } from '../proto/load';
import { promises as fs } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { Coordinator } from '../coordinator/coordinator';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { deriveSeed, selectClients } from '../coordinator/selection';
import type { Checkpoint } from '../coordinator/checkpoints/types';
import type { RoundPhase } from '../coordinator/round-events';
import { FedAvg } from '../coordinator/strategy/fedavg';
import type { Strategy, WeightedSum } from '../coordinator/strategy/strategy';
import { FederationClient } from '../client-sdk/client';
import type { Trainer } from '../client-sdk/trainer';
import type { NamedTensor, TensorList } from '../proto/tensors';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import { ConstantTrainer, join, nextTask, rawClient, sendUpload, smallAdapter, tempDir, uploadFrames, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SEED = 5;
const fast = { initialMs: 20, maxMs: 200, factor: 2 };

interface Opts {
  rounds?: Record<string, unknown>;
  evaluator?: (a: TensorList, v: number) => Promise<Record<string, number>>;
  strategy?: Strategy;
  initialCalls?: { n: number };
  port?: number;
}

describe('round state machine', function () {
  this.timeout(30_000);
  const coordinators: Coordinator[] = [];
  const clients: FederationClient[] = [];
  const raws: RawClient[] = [];
  const dirs: string[] = [];

  async function coordinator(runDir: string, o: Opts = {}): Promise<{ c: Coordinator; address: string; port: number }> {
    const config = classicConfig({
      overrides: {
        server: { port: o.port ?? 0 },
        run: { dir: runDir, seed: SEED },
        rounds: { total: 1, minClients: 2, minUpdates: 2, clientsPerRound: 100, deadlineMs: 10_000, maxAttempts: 3, ...o.rounds },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
      },
    });
    const c = new Coordinator({
      config,
      strategy: o.strategy,
      evaluator: o.evaluator,
      initialAdapter: () => {
        if (o.initialCalls) o.initialCalls.n++;
        return smallAdapter(0);
      },
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 'test', sha256: '0'.repeat(64) },
      logger: pino({ level: 'silent' }),
    });
    coordinators.push(c);
    const { address, port } = await c.start();
    return { c, address, port };
  }
  const dir = async (): Promise<string> => {
    const d = await tempDir('rounds');
    dirs.push(d);
    return d;
  };
  const site = (address: string, name: string, trainer: Trainer): FederationClient => {
    const c = new FederationClient({ address, name, identity: testIdentity(name), trainer, backoff: fast });
    clients.push(c);
    return c;
  };
  const raw = (address: string): RawClient => {
    const r = rawClient(address);
    raws.push(r);
    return r;
  };
  const versions = async (runDir: string): Promise<string[]> => (await fs.readdir(`${runDir}/versions`)).sort();

  afterEach(async () => {
    for (const c of clients.splice(0)) await c.stop().catch(() => undefined);
    for (const r of raws.splice(0)) r.close();
    for (const c of coordinators.splice(0)) await c.stop(200);
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });

  it('walks WAITING_FOR_CLIENTS → SELECTING → TRAINING → AGGREGATING → COMMITTING → FINISHED and records the round in the manifest', async () => {
    const runDir = await dir();
    const evaluated: number[] = [];
    const evaluator = async (a: TensorList, v: number): Promise<Record<string, number>> => {
      evaluated.push(v);
      return { eval_loss: 10 - a[0].data[0] };
    };
    const { c, address } = await coordinator(runDir, { evaluator });
    const phases: RoundPhase[] = [];
    const selected: { clientId: string; seed: number; taskId: string }[] = [];
    c.on('phase', (p) => phases.push(p));
    c.on('clientSelected', (e) => selected.push(e));
    const finished = new Promise<number>((r) => c.once('runFinished', (e) => r(e.version)));

    const runA = site(address, 'a', new ConstantTrainer(0.2, 10)).run();
    // One site is not enough (minClients 2): the engine reaches WAITING_FOR_CLIENTS once v0 is committed (how long
    // that takes depends on the box's load), then stays there, having selected no one, for as long as b is away.
    const deadline = Date.now() + 20_000;
    while (c.engine.phase !== 'WAITING_FOR_CLIENTS' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    expect(c.engine.phase).to.equal('WAITING_FOR_CLIENTS');
    expect(selected).to.deep.equal([]);
    const runB = site(address, 'b', new ConstantTrainer(0.8, 30)).run();
    const final = await c.done;
    await Promise.all([runA, runB]);
    expect(await finished).to.equal(1);
    expect(phases.filter((p, i) => p !== phases[i - 1])).to.deep.equal([
      'COMMITTING',
      'WAITING_FOR_CLIENTS',
      'SELECTING',
      'TRAINING',
      'AGGREGATING',
      'COMMITTING',
      'FINISHED',
    ]);

    const m = final.manifest;
    const ids = selected.map((s) => s.clientId).sort();
    expect(m).to.include({ version: 1, round: 1, attempt: 1, strategy: 'fedavg', protocolVersion: PROTOCOL_VERSION });
    expect(m.seeds).to.include({ run: SEED, selection: deriveSeed(SEED, 'select', 1, 1), loraInit: deriveSeed(SEED, 'lora-init') });
    for (const s of selected) {
      expect(s.seed).to.equal(deriveSeed(SEED, 'train', 1, 1, s.clientId));
      expect((m.seeds.clients as Record<string, number>)[s.clientId]).to.equal(s.seed);
    }
    expect(m.participants.map((p) => p.clientId)).to.deep.equal(ids);
    const byName = Object.fromEntries(m.participants.map((p) => [p.clientName, p]));
    expect(byName.a).to.include({ numExamples: 10, weight: 0.25, backend: 'test' });
    expect(byName.b).to.include({ numExamples: 30, weight: 0.75 });
    expect(byName.a.metrics.train_loss).to.be.closeTo(0.2, 1e-6);
    // Example-weighted: (0.2·10 + 0.8·30) / 40.
    expect(m.metrics['clients.train_loss']).to.be.closeTo(0.65, 1e-6);
    expect(evaluated).to.deep.equal([0, 1]);
    expect(m.metrics['heldout.eval_loss']).to.be.closeTo(10 - 0.65, 1e-6);
    expect((m.config as { rounds: { minClients: number } }).rounds.minClients).to.equal(2);
    expect(m.baseModel).to.deep.equal({ name: 'test', sha256: '0'.repeat(64) });
  });

  it('selects from the seed and the set of connected clients, not from the order they joined in', async () => {
    const names = ['n1', 'n2', 'n3', 'n4', 'n5'];
    const picks: string[][] = [];
    let ids: string[] = [];
    for (const order of [names, [...names].reverse()]) {
      const { c, address } = await coordinator(await dir(), { rounds: { minClients: 5, clientsPerRound: 0.4, minUpdates: 1 } });
      const r = raw(address);
      const started = new Promise<string[]>((res) => c.once('roundStarted', (e) => res(e.selected)));
      const streams: grpc.ClientReadableStream<unknown>[] = [];
      const joined: string[] = [];
      for (const n of order) {
        const s = await join(r, n);
        joined.push(s.client_id);
        streams.push(nextTask(r, s.session_token).stream);
      }
      picks.push(await started);
      ids = joined;
      for (const s of streams) s.cancel();
    }
    expect(picks[0]).to.have.length(2); // ceil(0.4 · 5)
    expect(picks[1]).to.deep.equal(picks[0]);
    expect(picks[0]).to.deep.equal(selectClients(ids, 0.4, 1, deriveSeed(SEED, 'select', 1, 1)));
  });

  it('leaves out a client that leaves mid-round without waiting for the deadline, and refuses its late upload', async () => {
    const runDir = await dir();
    const { c, address } = await coordinator(runDir, { rounds: { minUpdates: 1, deadlineMs: 20_000 } });
    const r = raw(address);
    const quitter = await join(r, 'quitter');
    const { task, stream } = nextTask(r, quitter.session_token);
    const run = site(address, 'stayer', new ConstantTrainer(0.5)).run();
    const t = await task;
    await new Promise<void>((res, rej) => r.Leave({ session_token: quitter.session_token, reason: 'test' }, (e) => (e ? rej(e) : res())));
    const t0 = Date.now();
    const final = await c.done;
    await run;
    stream.cancel();
    expect(Date.now() - t0).to.be.below(5000);
    expect(final.manifest.participants.map((p) => p.clientName)).to.deep.equal(['stayer']);
    // Rejoined under the same name (same client id): its old task is closed and stays refused.
    const back = await join(r, 'quitter');
    const { err } = await sendUpload(r, uploadFrames({ who: back, task: t }, smallAdapter(0.1)));
    expect(status[err!.code]).to.equal('FAILED_PRECONDITION');
    expect(err!.details).to.contain(`task ${t.task_id} is for round 1 attempt 1, which is closed`);
    expect(await versions(runDir)).to.deep.equal(['v000000', 'v000001']);
  });

  it('refuses an upload after the deadline with DEADLINE_EXCEEDED once the round committed without it', async () => {
    const runDir = await dir();
    const { c, address } = await coordinator(runDir, { rounds: { minUpdates: 1, deadlineMs: 3000 } });
    const r = raw(address);
    const silent = await join(r, 'silent');
    const { task, stream } = nextTask(r, silent.session_token);
    const run = site(address, 'prompt', new ConstantTrainer(0.5)).run();
    const t = await task;
    const final = await c.done;
    await run;
    expect(final.manifest.participants.map((p) => p.clientName)).to.deep.equal(['prompt']);
    const { err } = await sendUpload(r, uploadFrames({ who: silent, task: t }, smallAdapter(0.1)));
    expect(status[err!.code]).to.equal('DEADLINE_EXCEEDED');
    expect(err!.details).to.contain('deadline of round 1 attempt 1 passed');
    const metricsErr = await new Promise<grpc.ServiceError | null>((res) =>
      r.ReportMetrics({ session_token: silent.session_token, task_id: t.task_id, round: 1, num_examples: 1, backend: 'x', metrics: {} }, (e) => res(e)),
    );
    expect(metricsErr?.code).to.equal(status.DEADLINE_EXCEEDED);
    stream.cancel();
    expect(await versions(runDir)).to.deep.equal(['v000000', 'v000001']);
  });

  it('re-sends the open task to a client that reconnects mid-round, which can then complete it', async () => {
    const { c, address } = await coordinator(await dir(), { rounds: { minClients: 2, minUpdates: 1 } });
    const r = raw(address);
    // A bystander keeps the round open while 'flaky' is away (a round with nobody left closes at once).
    const bystander = await join(r, 'bystander');
    const by = nextTask(r, bystander.session_token);
    const first = await join(r, 'flaky');
    const one = nextTask(r, first.session_token);
    const t1 = await one.task;
    one.stream.cancel();
    const again = await join(r, 'flaky');
    expect(again.client_id).to.equal(first.client_id);
    expect(again.session_token).to.not.equal(first.session_token);
    const two = nextTask(r, again.session_token);
    const t2 = await two.task;
    expect(t2.task_id).to.equal(t1.task_id);
    // The old session is gone.
    const stale = await sendUpload(r, uploadFrames({ who: first, task: t2 }, smallAdapter(0.25)));
    expect(stale.err?.code).to.equal(status.UNAUTHENTICATED);
    const ok = await sendUpload(r, uploadFrames({ who: again, task: t2 }, smallAdapter(0.25)));
    expect(ok.err).to.equal(undefined);
    await new Promise<void>((res, rej) =>
      r.ReportMetrics(
        { session_token: again.session_token, task_id: t2.task_id, round: 1, num_examples: 10, backend: 'raw', metrics: { train_loss: 2 } },
        (e) => (e ? rej(e) : res()),
      ),
    );
    await new Promise<void>((res, rej) => r.Leave({ session_token: bystander.session_token, reason: 'done watching' }, (e) => (e ? rej(e) : res())));
    const final = await c.done;
    two.stream.cancel();
    by.stream.cancel();
    expect(Array.from(final.adapter[0].data)).to.deep.equal(new Array(6).fill(0.25));
    expect(final.manifest.participants[0]).to.include({ clientName: 'flaky', backend: 'raw' });
  });

  it('stops with an error after rounds.maxAttempts failed attempts, commits nothing and tells the clients', async () => {
    const runDir = await dir();
    const { c, address } = await coordinator(runDir, { rounds: { minUpdates: 2, deadlineMs: 400, maxAttempts: 2 } });
    const failed: { attempt: number; final: boolean }[] = [];
    c.on('roundFailed', (e) => failed.push({ attempt: e.attempt, final: e.final }));
    const r = raw(address);
    const silent = await join(r, 'silent');
    const { stream } = nextTask(r, silent.session_token); // takes tasks, never uploads
    const run = site(address, 'willing', new ConstantTrainer(0.5)).run();
    const err = await c.done.then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).to.equal('round 1 failed 2 attempts');
    expect(failed).to.deep.equal([
      { attempt: 1, final: false },
      { attempt: 2, final: true },
    ]);
    expect(c.engine.phase).to.equal('FAILED');
    const summary = await run;
    expect(summary).to.include({ finalVersion: 0, reason: 'round 1 failed 2 attempts' });
    stream.cancel();
    expect(await versions(runDir)).to.deep.equal(['v000000']);
    expect((await fs.readFile(`${runDir}/latest`, 'utf8')).trim()).to.equal('v000000');
  });

  it('fails the attempt cleanly when aggregation throws, and retries', async () => {
    const runDir = await dir();
    let calls = 0;
    // Admits every update (the upload-time check) but throws on the first real aggregation of a sum.
    class Fussy extends FedAvg {
      override readonly name = 'fussy';
      override aggregate(global: TensorList, sum: WeightedSum): NamedTensor[] {
        if (calls++ === 0) throw new Error('disk of the aggregator on fire');
        return super.aggregate(global, sum);
      }
    }
    const fussy: Strategy = new Fussy();
    const { c, address } = await coordinator(runDir, { strategy: fussy });
    const reasons: string[] = [];
    c.on('roundFailed', (e) => reasons.push(e.reason));
    const runs = [site(address, 'a', new ConstantTrainer(0.5)).run(), site(address, 'b', new ConstantTrainer(0.5)).run()];
    const final = await c.done;
    await Promise.all(runs);
    expect(reasons).to.deep.equal(['round 1 attempt 1: aggregation failed: disk of the aggregator on fire']);
    expect(final.manifest).to.include({ version: 1, attempt: 2, strategy: 'fussy' });
  });

  it('resumes from the latest version after a restart: no new v0, the next round builds on it', async () => {
    const runDir = await dir();
    const initialCalls = { n: 0 };
    const first = await coordinator(runDir, { rounds: { minClients: 1, minUpdates: 1, total: 1 }, initialCalls });
    const run1 = site(first.address, 'solo', new ConstantTrainer(0.5)).run();
    const v1: Checkpoint = await first.c.done;
    await run1;
    await first.c.stop(200);
    expect(initialCalls.n).to.equal(1);

    const second = await coordinator(runDir, { rounds: { minClients: 1, minUpdates: 1, total: 3 }, initialCalls });
    const started: { round: number; baseVersion: number }[] = [];
    second.c.on('roundStarted', (e) => started.push({ round: e.round, baseVersion: e.baseVersion }));
    const run2 = site(second.address, 'solo', new ConstantTrainer(0.25)).run();
    const final = await second.c.done;
    expect((await run2).finalVersion).to.equal(3);
    expect(initialCalls.n).to.equal(1);
    expect(started).to.deep.equal([
      { round: 2, baseVersion: 1 },
      { round: 3, baseVersion: 2 },
    ]);
    expect(await versions(runDir)).to.deep.equal(['v000000', 'v000001', 'v000002', 'v000003']);
    const v2 = await second.c.store.read(2);
    expect(v2.manifest.parent).to.deep.equal({ version: 1, manifestSha256: v1.manifestSha256 });
    expect(Array.from(final.adapter[1].data)).to.deep.equal(new Array(8).fill(1)); // 0.5 + 0.25 + 0.25
  });
});
