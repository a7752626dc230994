// The round state machine with real FederationClients over gRPC (a constant-delta Trainer stands in for
// the model: these tests are about scheduling, not learning).
import { promises as fs } from 'node:fs';
import { FederationClient } from '../client-sdk/client';
import { backoffDelay } from '../client-sdk/backoff';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import type { TensorList } from '../proto/tensors';
import { ConstantTrainer, join, nextTask, rawClient, startCoordinator, tempDir, testIdentity, type Harness } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const fast = { initialMs: 20, maxMs: 200, factor: 2 };

describe('round engine', function () {
  this.timeout(60_000);
  const harnesses: Harness[] = [];
  const clients: FederationClient[] = [];
  const start = async (rounds: Record<string, unknown>): Promise<Harness> => {
    const h = await startCoordinator(await tempDir('rounds'), rounds);
    harnesses.push(h);
    return h;
  };
  const site = (h: Harness, name: string, trainer: Trainer): FederationClient => {
    const c = new FederationClient({ address: h.address, name, identity: testIdentity(name), trainer, backoff: fast });
    clients.push(c);
    return c;
  };
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.stop().catch(() => undefined);
    for (const h of harnesses.splice(0)) {
      await h.coordinator.stop(200);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });

  it('waits for rounds.minClients before round 1, then commits every round', async () => {
    const h = await start({ total: 2, minClients: 3, minUpdates: 3 });
    const started: number[] = [];
    h.coordinator.engine.on('roundStarted', (e: { round: number }) => started.push(e.round));
    const runs = [site(h, 'a', new ConstantTrainer(0.5)).run(), site(h, 'b', new ConstantTrainer(0.5)).run()];
    await new Promise((r) => setTimeout(r, 400));
    expect(started).to.deep.equal([]);
    runs.push(site(h, 'c', new ConstantTrainer(0.5)).run());
    const final = await h.coordinator.done;
    await Promise.all(runs);
    expect(started).to.deep.equal([1, 2]);
    expect(final.manifest.version).to.equal(2);
    expect(Array.from(final.adapter[0].data)).to.deep.equal(new Array(6).fill(1));
  });

  it('leaves out a client that never uploads, at the deadline', async () => {
    const h = await start({ total: 1, minClients: 3, minUpdates: 2, deadlineMs: 4000 });
    const c = rawClient(h.address);
    const silent = await join(c, 'silent');
    const { stream } = nextTask(c, silent.session_token); // takes a task, never answers
    const runs = [site(h, 'a', new ConstantTrainer(0.25)).run(), site(h, 'b', new ConstantTrainer(0.75)).run()];
    const final = await h.coordinator.done;
    await Promise.all(runs);
    stream.cancel();
    c.close();
    expect(final.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['a', 'b']);
    expect(Array.from(final.adapter[0].data)).to.deep.equal(new Array(6).fill(0.5));
  });

  it('fails an attempt with too few updates without writing anything, then retries and commits', async () => {
    const h = await start({ total: 1, minClients: 2, minUpdates: 2, deadlineMs: 3000 });
    const failures: { round: number; attempt: number; reason: string }[] = [];
    h.coordinator.engine.on('roundFailed', (e: { round: number; attempt: number; reason: string }) => failures.push(e));
    let attempts = 0;
    // Fails its first task (throws), so attempt 1 has one update; succeeds on attempt 2.
    const flaky: Trainer = {
      backend: 'test',
      async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
        attempts++;
        if (attempts === 1) throw new Error('site crashed');
        return new ConstantTrainer(1).train(global, plan);
      },
    };
    const runs = [site(h, 'a', new ConstantTrainer(1)).run(), site(h, 'flaky', flaky).run()];
    await new Promise<void>((r) => h.coordinator.engine.once('roundFailed', () => r()));
    expect((await fs.readdir(`${h.runDir}/versions`)).sort()).to.deep.equal(['v000000']);
    expect((await fs.readFile(`${h.runDir}/latest`, 'utf8')).trim()).to.equal('v000000');
    const final = await h.coordinator.done;
    await Promise.all(runs);
    expect(failures).to.have.length(1);
    expect(failures[0]).to.include({ round: 1, attempt: 1 });
    expect(failures[0].reason).to.contain('1 of 2 updates arrived; 2 needed');
    expect(final.manifest).to.include({ version: 1, round: 1, attempt: 2 });
  });

  it('commits the same bytes whatever order the uploads arrive in', async () => {
    const adapters: string[] = [];
    for (const delays of [
      [0, 300, 600],
      [600, 300, 0],
    ]) {
      const h = await start({ total: 1, minClients: 3, minUpdates: 3 });
      const values = [0.1, 0.2, 0.7];
      const runs = values.map((v, i) => site(h, `s${i}`, new ConstantTrainer(v, 10 + i, delays[i])).run());
      const final = await h.coordinator.done;
      await Promise.all(runs);
      adapters.push(Buffer.concat(final.adapter.map((t) => Buffer.from(t.data.buffer))).toString('hex'));
    }
    expect(adapters[1]).to.equal(adapters[0]);
  });

  it('selects the same clients for the same seed when clientsPerRound < connected', async () => {
    const picks: string[][] = [];
    for (let run = 0; run < 2; run++) {
      const h = await start({ total: 1, minClients: 4, minUpdates: 2, clientsPerRound: 2 });
      const selected = new Promise<string[]>((r) => h.coordinator.engine.once('roundStarted', (e: { selected: string[] }) => r(e.selected)));
      const runs = ['w', 'x', 'y', 'z'].map((n) => site(h, n, new ConstantTrainer(0.5)).run());
      picks.push(await selected);
      await h.coordinator.done;
      await Promise.all(runs);
    }
    expect(picks[0]).to.have.length(2);
    expect(picks[1]).to.deep.equal(picks[0]);
  });

  it('aborts a running training when the coordinator cancels its task, and the client keeps serving', async () => {
    // The deadline must comfortably cover the fast site on a loaded 2-core CI box; the slow one never finishes.
    const h = await start({ total: 1, minClients: 2, minUpdates: 1, deadlineMs: 8000, maxAttempts: 3 });
    let aborted = 0;
    const slow: Trainer = {
      backend: 'test',
      async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
        try {
          return await new ConstantTrainer(1, 10, 60_000).train(global, plan, signal);
        } catch (e) {
          aborted++;
          throw e;
        }
      },
    };
    const trace: string[] = [];
    const t0 = Date.now();
    const note =
      (what: string) =>
      (e: unknown): void =>
        void trace.push(`${Date.now() - t0}ms ${what} ${JSON.stringify(e)}`);
    for (const ev of ['roundStarted', 'roundFailed', 'roundCommitted', 'runFinished', 'updateAccepted'] as const) h.coordinator.on(ev, note(ev));
    const sites = [site(h, 'fast', new ConstantTrainer(1)), site(h, 'slow', slow)];
    for (const [i, c] of sites.entries())
      for (const ev of ['joined', 'task', 'taskDone', 'taskFailed', 'reconnecting', 'finished'] as const) c.on(ev, note(`${i ? 'slow' : 'fast'}.${ev}`));
    // Diagnostics for a hang seen once on a loaded CI box: the sequence of events, printed if the test runs long.
    const watchdog = setTimeout(() => console.error(`round-engine cancel test, events so far:\n${trace.join('\n')}`), 45_000);
    const runs = sites.map((c) => c.run());
    const final = await h.coordinator.done;
    await Promise.all(runs);
    clearTimeout(watchdog);
    expect(aborted).to.be.at.least(1); // one per attempt the slow site was part of
    expect(final.manifest.participants.map((p) => p.clientName)).to.deep.equal(['fast']);
  });

  it("puts the round's deadline in the TrainingPlan and stops a training that would overrun it before the deadline", async () => {
    const h = await start({ total: 1, minClients: 2, minUpdates: 1, deadlineMs: 3000, maxAttempts: 1 });
    const deadline = new Promise<number>((r) => h.coordinator.engine.once('roundStarted', (e: { deadline: number }) => r(e.deadline)));
    const seen: { planDeadline?: number; abortedAt?: number; reason?: string } = {};
    const overrun: Trainer = {
      backend: 'test',
      async train(_global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
        seen.planDeadline = plan.deadlineUnixMs;
        // Trains "forever" unless told to stop.
        await new Promise<void>((_, reject) => signal!.addEventListener('abort', () => reject(signal!.reason as Error)));
        throw new Error('unreachable');
      },
    };
    const stopped = site(h, 'overrun', overrun);
    stopped.on('taskFailed', (e) => {
      seen.abortedAt = Date.now();
      seen.reason = e.error;
    });
    const runs = [site(h, 'ok', new ConstantTrainer(0.5)).run(), stopped.run()];
    const final = await h.coordinator.done;
    await Promise.all(runs);
    expect(seen.planDeadline).to.equal(await deadline);
    expect(seen.reason).to.match(/^training stopped: the round deadline \(.*\) is near$/);
    expect(seen.abortedAt!).to.be.below(seen.planDeadline!);
    expect(final.manifest.participants.map((p) => p.clientName)).to.deep.equal(['ok']);
  });

  it('backs off exponentially with full jitter', () => {
    const o = { initialMs: 100, maxMs: 1000, factor: 2 };
    expect(backoffDelay(0, o, () => 1)).to.equal(100);
    expect(backoffDelay(3, o, () => 1)).to.equal(800);
    expect(backoffDelay(10, o, () => 1)).to.equal(1000);
    expect(backoffDelay(10, o, () => 0)).to.equal(0);
  });
});
