// A 'flora' site's declared rank survives what rebuilds a round's stack: a coordinator killed with SIGKILL after it
// acknowledged a site's report and upload (the report sent first, so it is spooled with the upload) stacks that site's
// declared components only after its restart, and a sum rebuilt without a site revoked mid-round keeps the others'
// declared ranks. Either way the version is byte for byte the version of a round that was never interrupted (an
// uninterrupted coordinator's, and FloraStacking.aggregate's over the same factors), not a wider stack of every
// lora.r component. Real coordinator processes and real gRPC with raw sealed uploads (and, for the window between an
// upload's last byte and its spool commit, the aggregation alone).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { revokeClient } from '../coordinator/auth/enrolment';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { FloraStacking, declareFloraRank } from '../coordinator/flora-stack';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { freePort, join, nextTask, rawClient, smallAdapter, startCoordinator, tempDir, upload, uploadFrames, PREFIX } from './harness';
import { bits } from './flora-kit';
import { processSuite, startCoordinatorProcess } from './sites-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const FLORA = ['--lora.aggregation', 'flora', '--lora.r', '2', '--lora.dropout', '0'];
const LORA = { lora: { r: 2, dropout: 0, aggregation: 'flora' } };
const hex = (ts: TensorList): string[] => ts.map((t) => `${t.name} [${t.shape.join()}] ${bits(t.data).toString('hex')}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function logSink(): { lines: string[]; logger: pino.Logger } {
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString()), cb()) });
  return { lines, logger: pino({ level: 'warn' }, sink) };
}

/** Rank-1 factors at lora.r = 2 over smallAdapter's module (A [2,3], B [4,2]): component 1 is zero padding. */
function rankOne(a: number[], b: number[]): NamedTensor[] {
  return [
    { name: `${PREFIX}.lora_A.weight`, dtype: 'float32', shape: [2, 3], data: Float32Array.from([...a, 0, 0, 0]) },
    { name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [4, 2], data: Float32Array.from(b.flatMap((x) => [x, 0])) },
  ];
}
const SITES = {
  'site-a': { n: 3, f: rankOne([0.5, -0.25, 0.125], [0.01, -0.02, 0.03, 0.04]) },
  'site-b': { n: 7, f: rankOne([-0.75, 0.375, 0.0625], [0.05, 0.06, -0.07, 0.08]) },
  'site-c': { n: 5, f: rankOne([0.3, 0.2, 0.1], [0.09, 0.1, 0.11, -0.12]) },
};
type Name = keyof typeof SITES;

function report(c: RawClient, token: string, taskId: string, numExamples: number, loraRank: number): Promise<void> {
  return new Promise((res, rej) =>
    c.ReportMetrics(
      { session_token: token, task_id: taskId, round: 1, num_examples: numExamples, backend: 'test', metrics: {}, lora_rank: loraRank },
      (e: grpc.ServiceError | null) => (e ? rej(e) : res()),
    ),
  );
}

/** FloraStacking.aggregate over version 0 (smallAdapter, product zero) of `names`' factors, each declared at rank 1. */
function directStack(ids: Record<string, string>, names: Name[]): NamedTensor[] {
  const s = new FloraStacking();
  const agg = s.begin(smallAdapter(0));
  for (const name of names) {
    const u = { clientId: ids[name], numExamples: SITES[name].n, delta: SITES[name].f };
    agg.admit(u);
    agg.add(u);
    declareFloraRank(agg, ids[name], 1);
  }
  return s.aggregate(smallAdapter(0), agg.sum());
}

/** A site joined with its task stream open (what makes it connected). */
async function connect(c: RawClient, name: string) {
  const j = await join(c, name);
  const { task, stream } = nextTask(c, j.session_token);
  task.catch(() => undefined); // a carried site is sent no task
  return { j, task, stream };
}

/** One round of `names` on a coordinator at `address`: each reports rank 1, then uploads (or the other way round). */
async function round(c: RawClient, names: Name[], reportFirst: boolean): Promise<{ ids: Record<string, string>; cancel: () => void }> {
  const joined = await Promise.all(names.map((n) => join(c, n)));
  const streams = joined.map((j) => nextTask(c, j.session_token));
  const tasks = await Promise.all(streams.map((s) => s.task));
  for (const [i, name] of names.entries()) {
    const { n, f } = SITES[name];
    const send = () => upload(c, uploadFrames({ who: joined[i], task: tasks[i], numExamples: n }, f));
    const rep = () => report(c, joined[i].session_token, tasks[i].task_id, n, 1);
    if (reportFirst) await rep().then(send);
    else await send().then(rep);
  }
  return { ids: Object.fromEntries(joined.map((j) => [j.name, j.client_id])), cancel: () => streams.forEach((s) => s.stream.cancel()) };
}

describe("FLoRA: a site's declared rank across a restart and a revocation", function () {
  this.timeout(120_000);
  const { children, dirs } = processSuite();

  /** The uninterrupted round of site-a and site-b, in process: its version 1. */
  async function uninterrupted(): Promise<{ adapter: NamedTensor[]; ids: Record<string, string> }> {
    const h = await startCoordinator(await tempDir('flora-rank-ref'), { total: 1 }, LORA);
    dirs.push(h.runDir);
    const c = rawClient(h.address);
    try {
      const r = await round(c, ['site-a', 'site-b'], false);
      const ck = await h.coordinator.done;
      r.cancel();
      return { adapter: ck.adapter, ids: r.ids };
    } finally {
      c.close();
      await h.coordinator.stop(500);
    }
  }

  it('kill -9 after site-a reported rank 1 (before its upload) and uploaded: the restarted coordinator stacks 1 of its 2 components, as an uninterrupted round', async function () {
    const runDir = path.join(await tempDir('flora-rank-kill'), 'run');
    dirs.push(path.dirname(runDir));
    const port = await freePort();
    const args = ['--server.port', String(port), '--run.dir', runDir, '--run.seed', '5', '--rounds.total', '1', '--rounds.minClients', '2'];
    args.push('--rounds.minUpdates', '2', '--rounds.deadlineMs', '30000', '--log.level', 'warn', '--auth.mode', 'tofu', ...FLORA);
    const start = async () => {
      const p = await startCoordinatorProcess(args);
      children.push(p.child);
      return p;
    };

    const first = await start();
    let c = rawClient(`127.0.0.1:${port}`);
    const [a, b] = await Promise.all([connect(c, 'site-a'), connect(c, 'site-b')]);
    const taskA = await a.task;
    // The report first: it is spooled with the upload when the upload is accepted (before the site hears back).
    await report(c, a.j.session_token, taskA.task_id, SITES['site-a'].n, 1);
    await upload(c, uploadFrames({ who: a.j, task: taskA, numExamples: SITES['site-a'].n }, SITES['site-a'].f));
    a.stream.cancel();
    b.stream.cancel();
    c.close();
    first.child.kill('SIGKILL');
    await first.exited();
    expect(first.child.signalCode).to.equal('SIGKILL');

    const second = await start();
    c = rawClient(`127.0.0.1:${port}`);
    try {
      const held = await connect(c, 'site-a'); // connected; its update is carried, it is not asked to train again
      const r = await round(c, ['site-b'], false);
      await second.exited(); // the run's one round committed: the process ends
      held.stream.cancel();
      r.cancel();
      expect(second.child.exitCode, second.out.join('')).to.equal(0);
    } finally {
      c.close();
    }
    const v1 = await new FsCheckpointStore(runDir).read(1);
    const ref = await uninterrupted();
    // 1 + 1 declared components: rank 2 (a's padding stacked too would make 3 = K, and the bytes differ).
    expect(v1.adapter.find((t) => t.name.includes('lora_A'))!.shape).to.deep.equal([2, 3]);
    expect(hex(v1.adapter)).to.deep.equal(hex(ref.adapter));
    expect(hex(v1.adapter)).to.deep.equal(hex(directStack(ref.ids, ['site-a', 'site-b'])));
    expect(v1.manifest.participants.map((p) => [p.clientName, p.loraRank]).sort()).to.deep.equal([
      ['site-a', 1],
      ['site-b', 1],
    ]);
  });

  it('a site revoked mid-round: the sum rebuilt without it stacks the others at their declared ranks, as a round it never joined', async function () {
    const h = await startCoordinator(await tempDir('flora-rank-revoke'), { total: 1, minClients: 3, minUpdates: 2 }, LORA);
    dirs.push(h.runDir);
    const c = rawClient(h.address);
    try {
      const names: Name[] = ['site-a', 'site-b', 'site-c'];
      const joined = await Promise.all(names.map((n) => join(c, n)));
      const streams = joined.map((j) => nextTask(c, j.session_token));
      const tasks = await Promise.all(streams.map((s) => s.task));
      for (const [i, name] of names.entries()) await upload(c, uploadFrames({ who: joined[i], task: tasks[i], numExamples: SITES[name].n }, SITES[name].f));
      for (const i of [1, 2]) await report(c, joined[i].session_token, tasks[i].task_id, SITES[names[i]].n, 1);
      await sleep(20); // past the mtime tick of the coordinator's last clients.json write
      revokeClient(h.runDir, 'site-c', 'key leaked');
      await report(c, joined[0].session_token, tasks[0].task_id, SITES['site-a'].n, 1); // the round can close now
      const ck = await h.coordinator.done;
      for (const s of streams) s.stream.cancel();
      const ids = Object.fromEntries(joined.map((j) => [j.name, j.client_id]));
      expect(ck.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
      expect(ck.adapter.find((t) => t.name.includes('lora_A'))!.shape).to.deep.equal([2, 3]);
      expect(hex(ck.adapter)).to.deep.equal(hex(directStack(ids, ['site-a', 'site-b'])));
      expect(hex(ck.adapter)).to.deep.equal(hex((await uninterrupted()).adapter));
    } finally {
      c.close();
      await h.coordinator.stop(500);
    }
  });

  it('a report that lands while an upload is being spooled (every byte in, not yet counted) is checked against it: refused if it leaves components out', function () {
    const s = new FloraStacking();
    const agg = s.begin(smallAdapter(0));
    const full = SITES['site-a'].f.map((t) => ({ ...t, data: t.data.map((x, i) => x || (i + 1) / 64) })); // both components non-zero
    const f = agg.open('site-a', 3);
    for (const t of full) f.push(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    f.finish();
    expect(() => declareFloraRank(agg, 'site-a', 1)).to.throw('lora_rank 1: the uploaded factors have non-zero components beyond it');
    declareFloraRank(agg, 'site-a', 2);
    f.commit();
    expect(agg.count).to.equal(1);
  });

  it('a damaged spooled rank: one the factors contradict is not declared (stacked whole, a warning), one not a positive integer drops the record', async function () {
    const runDir = await tempDir('flora-rank-damaged');
    dirs.push(runDir);
    const rounds = { total: 1, minClients: 3, minUpdates: 3 };
    const first = await startCoordinator(runDir, rounds, LORA);
    let c = rawClient(first.address);
    const full = SITES['site-a'].f.map((t) => ({ ...t, data: t.data.map((x, i) => x || (i + 1) / 64) })); // both components non-zero
    const [sa, sc, sb] = await Promise.all((['site-a', 'site-c', 'site-b'] as const).map((n) => connect(c, n)));
    const joined = [sa.j, sc.j];
    const streams = [sa, sc, sb];
    const tasks = await Promise.all([sa.task, sc.task]);
    for (const [i, [f, rank]] of [[full, 2] as const, [SITES['site-c'].f, 1] as const].entries()) {
      await upload(c, uploadFrames({ who: joined[i], task: tasks[i], numExamples: 5 }, f));
      await report(c, joined[i].session_token, tasks[i].task_id, 5, rank);
    }
    streams.forEach((s) => s.stream.cancel());
    c.close();
    await first.coordinator.stop(500); // the round is open: its spool stays, as after a crash
    const spool = path.join(runDir, 'spool', 'round-1');
    const damage = async (clientId: string, loraRank: unknown): Promise<void> => {
      const file = path.join(spool, `${clientId}.metrics.json`);
      await fs.writeFile(file, JSON.stringify({ ...JSON.parse(await fs.readFile(file, 'utf8')), loraRank }));
    };
    await damage(joined[0].client_id, 1);
    await damage(joined[1].client_id, 1.5);
    const { lines, logger } = logSink();
    const second = await startCoordinator(runDir, rounds, LORA, { logger });
    c = rawClient(second.address);
    try {
      const held = await Promise.all((['site-a', 'site-c'] as const).map((n) => connect(c, n)));
      const r = await round(c, ['site-b'], true);
      const ck = await second.coordinator.done;
      r.cancel();
      held.forEach((x) => x.stream.cancel());
      const ids = { 'site-a': joined[0].client_id, 'site-b': r.ids['site-b'], 'site-c': joined[1].client_id };
      // site-a whole (2), site-c whole (2: no rank read back), site-b 1: 5 > K = 3, compacted; as the direct stack.
      const s = new FloraStacking();
      const agg = s.begin(smallAdapter(0));
      for (const [name, f, n] of [['site-a', full, 5] as const, ['site-b', SITES['site-b'].f, 7] as const, ['site-c', SITES['site-c'].f, 5] as const]) {
        agg.admit({ clientId: ids[name], numExamples: n, delta: f });
        agg.add({ clientId: ids[name], numExamples: n, delta: f });
      }
      declareFloraRank(agg, ids['site-b'], 1);
      expect(hex(ck.adapter)).to.deep.equal(hex(s.aggregate(smallAdapter(0), agg.sum())));
      const warned = lines.filter((l) => l.includes('a spooled lora_rank leaves non-zero components out'));
      expect(warned.map((l) => (JSON.parse(l) as { clientId: string }).clientId)).to.deep.equal([ids['site-a']]);
      // Neither damaged rank reaches the manifest: site-a's is not its stack's, site-c's record is not read back.
      expect(ck.manifest.participants.map((p) => [p.clientName, p.loraRank ?? null]).sort()).to.deep.equal([
        ['site-a', null],
        ['site-b', 1],
        ['site-c', null],
      ]);
    } finally {
      c.close();
      await second.coordinator.stop(500);
    }
  });
});
