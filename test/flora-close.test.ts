// A 'flora' round's close off the coordinator's event loop (coordinator/flora-close.ts): the worker thread gives the
// very bytes FloraStacking.aggregate gives on the calling thread, below and past the dense rank K, whatever the order
// the updates arrived in; a thread that fails rejects the close naming the cause. Over real gRPC (a real
// coordinator, raw sealed uploads): while a close past K runs, the coordinator answers a gRPC health check before
// the close ends (the order of events, no clock), and the version it commits is the calling thread's stack bit for
// bit; a close whose thread dies fails the round cleanly, nothing committed and nothing half-written.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FloraStacking, declareFloraRank } from '../coordinator/flora-stack';
import type { ServerState, WeightedSum } from '../coordinator/strategy/strategy';
import { nextVersionOffThread } from '../coordinator/flora-close';
import { healthClient } from '../coordinator/ops/health-probe';
import type { RoundFailed, RoundPhase } from '../coordinator/round-events';
import { zeroAdapter } from '../proto/model/lora-stack';
import { Prng } from '../proto/prng';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { reportMetrics, startCoordinator, tempDir, upload, uploadFrames } from './harness';
import { rawRound } from './sites-kit';
import { MOD, bits, twoModules } from './flora-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** The modules' width and the dense rank K: a close past K costs ~2·D³ multiply-adds (a few hundred ms here). */
const D = 512;
const DIES = path.join(__dirname, 'fixtures', 'flora-thread-dies.js');
const hex = (ts: TensorList): string[] => ts.map((t) => `${t.name} [${t.shape.join()}] ${bits(t.data).toString('hex')}`);
const copy = (ts: TensorList): NamedTensor[] => ts.map((t) => ({ ...t, shape: [...t.shape], data: t.data.slice() }));

interface Site {
  readonly id: string;
  readonly n: number;
  readonly rank: number;
  readonly delta: NamedTensor[];
}

/** A 'flora' sum over `layout` of `sites` added in the given order, each with its declared rank. */
function sumOf(s: FloraStacking, layout: TensorList, sites: readonly Site[]) {
  const agg = s.begin(layout);
  for (const x of sites) {
    const u = { clientId: x.id, numExamples: x.n, delta: copy(x.delta) };
    agg.admit(u);
    agg.add(u);
    declareFloraRank(agg, x.id, x.rank);
  }
  return agg.sum();
}

/** A base of rank `r` over two modules [out, in], every factor dense (no identity: a compaction costs out·in·r). */
function denseBase(r: number, din: number, dout: number, rng: Prng): NamedTensor[] {
  const v = (n: number, s: number): Float32Array => Float32Array.from({ length: n }, () => (2 * rng.nextFloat() - 1) * s);
  return [0, 1].flatMap((m) => [
    { name: `${MOD(m)}.lora_A.weight`, dtype: 'float32' as const, shape: [r, din], data: v(r * din, 0.05) },
    { name: `${MOD(m)}.lora_B.weight`, dtype: 'float32' as const, shape: [dout, r], data: v(dout * r, 0.05) },
  ]);
}

describe('FLoRA close in a worker thread', function () {
  this.timeout(120_000);

  it('gives the bytes aggregate() gives on the calling thread, below and past the dense rank, in either arrival order; the factors move, the base stays', async function () {
    const rng = new Prng(11);
    const sites: Site[] = [
      { id: 'site-b', n: 7, rank: 3, delta: twoModules(4, 3, rng) },
      { id: 'site-a', n: 3, rank: 2, delta: twoModules(4, 2, rng) },
      { id: 'site-c', n: 5, rank: 4, delta: twoModules(4, 4, rng) },
    ];
    const layout = zeroAdapter(sites[0].delta, 4);
    // Version 0 (product zero: the round alone, rank 9), a rank-6 stack (15 > K = 14: compacted), a version at K.
    const v0 = twoModules(4, 4, rng).map((t) => (t.name.includes('lora_B') ? { ...t, data: new Float32Array(t.data.length) } : t));
    for (const [what, base, rank] of [
      ['version 0', v0, 9],
      ['a rank-6 base, past K', twoModules(6, 6, rng), 14],
      ['a base at K', twoModules(14, 14, rng), 14],
    ] as const) {
      const s = new FloraStacking();
      const want = s.aggregate(base, sumOf(s, layout, sites));
      expect(want[0].shape[0], what).to.equal(rank);
      for (const order of [sites, [...sites].reverse()]) {
        const sum = sumOf(s, layout, order);
        const before = hex(base);
        const got = await s.aggregateOffThread(base, sum);
        expect(hex(got), what).to.deep.equal(hex(want));
        expect(hex(base), `${what}: the base is left as it was`).to.deep.equal(before);
        // Moved, not copied: the round's own factors are gone from this thread.
        for (const site of sum.flora.sites) expect(site.values.byteLength, what).to.equal(0);
      }
    }
  });

  it('a thread that throws or exits before its answer, or whose stacking fails, rejects the close naming the cause', async function () {
    const rng = new Prng(12);
    const site: Site = { id: 'site-a', n: 3, rank: 2, delta: twoModules(4, 2, rng) };
    const layout = zeroAdapter(site.delta, 4);
    const base = twoModules(4, 4, rng);
    const run = (file: string | undefined) => {
      const s = file ? new FloraStacking(file) : new FloraStacking();
      return s.aggregateOffThread(base, sumOf(s, layout, [site]));
    };
    const failure = (p: Promise<unknown>): Promise<Error> =>
      p.then(
        () => expect.fail('the close should have failed'),
        (e: Error) => e,
      );
    try {
      process.env.FLORA_DIE = 'throw';
      expect((await failure(run(DIES))).message).to.equal(
        "the FLoRA close's worker thread failed: simulated failure in the close thread; nothing of this round was committed",
      );
    } finally {
      delete process.env.FLORA_DIE;
    }
    expect((await failure(run(DIES))).message).to.equal(
      "the FLoRA close's worker thread exited (code 3) before its result; nothing of this round was committed",
    );
    // The real thread's own error, as aggregate() throws it: a base over other modules.
    const other = base.map((t) => ({ ...t, name: t.name.replace('h.0.', 'h.7.') }));
    const s = new FloraStacking();
    expect(() => s.aggregate(other, sumOf(s, layout, [site]))).to.throw('concatComponents: the two adapters target different modules');
    expect((await failure(nextVersionOffThread(other, { ...sumOf(s, layout, [site]).flora, totalWeight: 3 }))).message).to.equal(
      "the FLoRA close's worker thread failed: concatComponents: the two adapters target different modules; nothing of this round was committed",
    );
  });

  /** A 'flora' coordinator over a dense base of rank K = D (two D×D modules), lora.r 2, one round, two raw sites. */
  async function pastK(prefix: string, strategy?: FloraStacking, rounds: Record<string, unknown> = {}) {
    const base = denseBase(D, D, D, new Prng(21));
    const h = await startCoordinator(
      await tempDir(prefix),
      { total: 1, ...rounds },
      { lora: { r: 2, dropout: 0, aggregation: 'flora' } },
      { initialAdapter: () => copy(base), ...(strategy ? { strategy } : {}) },
    );
    const s = await rawRound(h, ['site-a', 'site-b']);
    const [a, b] = s.joined;
    const rng = new Prng(22);
    const factors = [denseBase(2, D, D, rng), denseBase(2, D, D, rng)];
    /** Both sites upload and report (rank 2, 3 and 5 examples): the round's close follows at once. */
    const finish = async (): Promise<void> => {
      const [taskA, taskB] = await Promise.all(s.tasks);
      for (const [who, task, f, n] of [[a, taskA, factors[0], 3] as const, [b, taskB, factors[1], 5] as const]) {
        await upload(s.c, uploadFrames({ who, task, numExamples: n }, f));
      }
      await reportMetrics(s.c, a.session_token, taskA.task_id, 1);
      await reportMetrics(s.c, b.session_token, taskB.task_id, 1);
    };
    return { h, base, factors, finish, done: () => s.close() };
  }

  it('over gRPC: while a close past K runs, a health check is answered before the close ends; the version is the calling-thread stack, bit for bit', async function () {
    const { h, base, factors, finish, done } = await pastK('flora-close-live');
    const health = healthClient(h.address);
    try {
      const check = (): Promise<string> =>
        new Promise((res, rej) => health.Check({ service: '' }, { deadline: Date.now() + 60_000 }, (e, r) => (e ? rej(e) : res(r!.status))));
      await check(); // the channel is up before the close
      const events: string[] = [];
      let answered: Promise<void> | undefined;
      h.coordinator.on('phase', (p: RoundPhase) => {
        if (p === 'AGGREGATING') {
          events.push('close started');
          answered = check().then((s) => void events.push(`health ${s}`));
        } else if (p === 'COMMITTING') events.push('close ended');
      });
      await finish();
      const ck = await h.coordinator.done;
      await answered;
      expect(events).to.deep.equal(['close started', 'health SERVING', 'close ended']);
      // D + 2 + 2 components > K = D: the version is the compacted cumulative delta, as aggregate() makes it here.
      const s = new FloraStacking();
      const sites: Site[] = [
        { id: ck.manifest.participants.find((p) => p.clientName === 'site-a')!.clientId, n: 3, rank: 2, delta: factors[0] },
        { id: ck.manifest.participants.find((p) => p.clientName === 'site-b')!.clientId, n: 5, rank: 2, delta: factors[1] },
      ];
      const want = s.aggregate(base, sumOf(s, zeroAdapter(base, 2), sites));
      expect(want[0].shape).to.deep.equal([D, D]);
      expect(hex(ck.adapter)).to.deep.equal(hex(want));
    } finally {
      health.close();
      await done();
    }
  });

  it('over gRPC: a coordinator stopped during a close past K ends the close at once (its thread stopped, not waited for): nothing committed, the updates stay spooled, a restart commits that version', async function () {
    const events: string[] = [];
    let stopped: Promise<void> | undefined;
    /** FloraStacking that says when its close starts and settles, and stops the coordinator once it has started. */
    class Watched extends FloraStacking {
      override aggregateOffThread(global: TensorList, sum: WeightedSum, state?: ServerState, signal?: AbortSignal): Promise<NamedTensor[]> {
        events.push('close started');
        setTimeout(() => (stopped = h.coordinator.stop(500).then(() => void events.push('stop resolved'))), 0);
        return super.aggregateOffThread(global, sum, state, signal).then(
          (v) => (events.push('close answered'), v),
          (e: Error) => {
            events.push(`close rejected: ${e.message}`);
            throw e;
          },
        );
      }
    }
    const { h, base, factors, finish, done } = await pastK('flora-close-stop', new Watched());
    try {
      await finish();
      await h.coordinator.done.catch(() => undefined);
      while (!stopped) await new Promise((r) => setTimeout(r, 10));
      await stopped;
      expect(events).to.deep.equal([
        'close started',
        "close rejected: the FLoRA close's worker thread was stopped: the coordinator is stopping; nothing of this round was committed",
        'stop resolved',
      ]);
      expect((await h.coordinator.store.latest())!.manifest.version).to.equal(0);
      const spool = await fs.readdir(path.join(h.runDir, 'spool', 'round-1'));
      expect(spool.filter((f) => f.endsWith('.sealed'))).to.have.length(2);
      // A restart carries both spooled updates and commits at once: the version the stopped close would have made.
      const again = await startCoordinator(h.runDir, { total: 1 }, { lora: { r: 2, dropout: 0, aggregation: 'flora' } }, { initialAdapter: () => copy(base) });
      try {
        const ck = await again.coordinator.done;
        const id = (name: string): string => ck.manifest.participants.find((p) => p.clientName === name)!.clientId;
        const s = new FloraStacking();
        const want = s.aggregate(
          base,
          sumOf(s, zeroAdapter(base, 2), [
            { id: id('site-a'), n: 3, rank: 2, delta: factors[0] },
            { id: id('site-b'), n: 5, rank: 2, delta: factors[1] },
          ]),
        );
        expect(hex(ck.adapter)).to.deep.equal(hex(want));
      } finally {
        await again.coordinator.stop(500);
      }
    } finally {
      await done();
    }
  });

  it('over gRPC: a close whose thread dies fails the round cleanly: the reason names it, nothing committed, no temporary left', async function () {
    const { h, finish, done } = await pastK('flora-close-dies', new FloraStacking(DIES), { maxAttempts: 1 });
    try {
      const failed: RoundFailed[] = [];
      h.coordinator.on('roundFailed', (f: RoundFailed) => failed.push(f));
      await finish();
      const err = await h.coordinator.done.then(
        () => expect.fail('the run should fail'),
        (e: Error) => e,
      );
      expect(err.message).to.equal('round 1 failed 1 attempts');
      expect(failed.map((f) => f.reason)).to.deep.equal([
        "round 1 attempt 1: aggregation failed: the FLoRA close's worker thread exited (code 3) before its result; nothing of this round was committed",
      ]);
      expect((await h.coordinator.store.latest())!.manifest.version).to.equal(0);
      const files: string[] = [];
      const walk = async (d: string): Promise<void> => {
        for (const e of await fs.readdir(d, { withFileTypes: true })) {
          if (e.isDirectory()) await walk(path.join(d, e.name));
          else files.push(path.relative(h.runDir, path.join(d, e.name)));
        }
      };
      await walk(h.runDir);
      // Version 0 only; the failed attempt's updates are gone from the spool (the next attempt trains again).
      expect(files.filter((f) => f.includes('v000001'))).to.deep.equal([]);
      expect(files.filter((f) => path.basename(f).startsWith('.'))).to.deep.equal([]);
      expect(files.filter((f) => f.endsWith('.sealed') || f.endsWith('.metrics.json'))).to.deep.equal([]);
    } finally {
      await done();
    }
  });
});
