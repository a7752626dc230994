// Liveness across coordinator restarts, with real processes and kill -9: the coordinator is killed between
// accepting the round's uploads and committing it, twice in the same round with rounds.maxAttempts 2. The
// updates it acknowledged were spooled (sealed) and count after the restart, without the sites training
// again; the resumed round commits within seconds, the very bytes one FedAvg of those updates gives; task ids never repeat across processes, so sites take
// every new task; the spool is gone once the round committed.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FederationClient } from '../client-sdk/client';
import type { Manifest } from '../coordinator/checkpoints/types';
import { Writable } from 'node:stream';
import pino from 'pino';
import { ConstantTrainer, freePort, smallAdapter, startCoordinator as startInProcess, testIdentity } from './harness';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { FedAvg, aggregateUpdates } from '../coordinator/strategy/fedavg';
import { sortByName, type NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

function startCoordinator(port: number, runDir: string, holdMs: number, total = 2): { child: ChildProcess; out: string[] } {
  const script = path.join(__dirname, 'fixtures', 'tiny-coordinator.js');
  const args = [
    '--server.port',
    String(port),
    '--run.dir',
    runDir,
    '--run.seed',
    '5',
    '--rounds.total',
    String(total),
    '--rounds.minClients',
    '2',
    '--rounds.minUpdates',
    '2',
  ];
  args.push('--rounds.deadlineMs', '30000', '--rounds.maxAttempts', '2', '--log.level', 'warn', '--auth.mode', 'tofu');
  const child = spawn(process.execPath, [script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FEDTUNE_TEST_HOLD_COMMIT_MS: String(holdMs) },
  });
  const out: string[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => out.push(d.toString()));
  return { child, out };
}

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const kill9 = async (c: ChildProcess): Promise<void> => {
  c.kill('SIGKILL');
  if (c.exitCode === null && c.signalCode === null) await new Promise((r) => c.once('exit', r));
};

describe('liveness across coordinator restarts (kill -9)', function () {
  this.timeout(120_000);
  const children: ChildProcess[] = [];
  const sites: FederationClient[] = [];
  let tmp: string;
  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-liveness-'));
  });
  after(async () => {
    for (const s of sites) await s.stop().catch(() => undefined);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('counts the updates accepted before two crashes in round 1 (maxAttempts 2), commits within seconds of the restart, and finishes the run', async () => {
    const port = await freePort();
    const runDir = path.join(tmp, 'run');
    const spoolDir = path.join(runDir, 'spool', 'round-1');
    const latest = async (): Promise<string> => (await fs.readFile(path.join(runDir, 'latest'), 'utf8').catch(() => '')).trim();
    const spooled = async (): Promise<string[]> => (await fs.readdir(spoolDir).catch(() => [] as string[])).filter((f) => f.endsWith('.sealed')).sort();
    const attemptState = async (): Promise<{ attempt: number; failed: number } | null> =>
      JSON.parse(await fs.readFile(path.join(spoolDir, 'attempt.json'), 'utf8').catch(() => 'null')) as { attempt: number; failed: number } | null;

    const first = startCoordinator(port, runDir, 60_000);
    children.push(first.child);
    const tasks: { site: string; round: number; taskId: string }[] = [];
    for (const [name, value] of [
      ['a', 0.3],
      ['b', 0.7],
    ] as const) {
      const c = new FederationClient({
        address: `127.0.0.1:${port}`,
        name,
        identity: testIdentity(name),
        trainer: new ConstantTrainer(value, name === 'a' ? 10 : 30),
        backoff: { initialMs: 50, maxMs: 300, factor: 2 },
      });
      c.on('task', (t) => tasks.push({ site: name, round: t.round, taskId: t.taskId }));
      sites.push(c);
    }
    const runs = sites.map((s) => s.run());

    // Both updates accepted (spooled before the sites were answered) and the process sits before its commit.
    await waitFor(
      async () => (await spooled()).length === 2 && first.out.join('').includes('holding before commit'),
      60_000,
      'round 1 uploads in the first process',
    );
    await kill9(first.child);
    expect(await latest()).to.equal('v000000');

    // Second process: resumes round 1 as attempt 2 with both updates carried, and is killed before its commit too.
    const second = startCoordinator(port, runDir, 60_000);
    children.push(second.child);
    await waitFor(() => second.out.join('').includes('holding before commit'), 30_000, 'the second process to reach its commit');
    expect(await attemptState()).to.deep.include({ attempt: 2, failed: 0 });
    await kill9(second.child);
    expect(await latest()).to.equal('v000000');

    // Third process: no hold. Round 1 commits from the spool within seconds of the start.
    const t0 = Date.now();
    const third = startCoordinator(port, runDir, 0);
    children.push(third.child);
    await waitFor(async () => (await latest()) === 'v000001', 15_000, 'round 1 to commit after the restart');
    const resumeMs = Date.now() - t0;
    expect(resumeMs).to.be.below(10_000);

    const summaries = await Promise.all(runs);
    await new Promise((r) => (third.child.exitCode === null ? third.child.once('exit', r) : r(null)));
    expect(third.child.exitCode, third.out.join('')).to.equal(0);
    expect(summaries.map((s) => s.finalVersion)).to.deep.equal([2, 2]);

    const v1 = JSON.parse(await fs.readFile(path.join(runDir, 'versions', 'v000001', 'manifest.json'), 'utf8')) as Manifest;
    expect(v1).to.include({ round: 1, attempt: 3 });
    const byName = [...v1.participants].sort((x, y) => (x.clientName < y.clientName ? -1 : 1));
    expect(byName.map((p) => [p.clientName, p.numExamples, p.weight, p.metrics.train_loss])).to.deep.equal([
      ['a', 10, 0.25, 0.3],
      ['b', 30, 0.75, 0.7],
    ]);
    // The sum rebuilt from the spool after two kills commits the very bytes of one FedAvg of the two updates (the
    // base is 0, so each delta is its constant exactly): the running sum held nothing the spool does not.
    const v1Adapter = (await new FsCheckpointStore(runDir, { readOnly: true }).read(1)).adapter;
    const delta = (v: number): NamedTensor[] => smallAdapter(0).map((t) => ({ ...t, data: t.data.map(() => v) }));
    const once = aggregateUpdates(new FedAvg(), smallAdapter(0), [
      { clientId: 'a', numExamples: 10, delta: delta(0.3) },
      { clientId: 'b', numExamples: 30, delta: delta(0.7) },
    ]).adapter;
    const bytes = (ts: readonly NamedTensor[]): string[] =>
      sortByName([...ts]).map((t) => `${t.name}:${Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex')}`);
    expect(bytes(v1Adapter)).to.deep.equal(bytes(once));
    // Each site trained round 1 once: the carried updates were not re-trained.
    expect(
      tasks
        .filter((t) => t.round === 1)
        .map((t) => t.site)
        .sort(),
    ).to.deep.equal(['a', 'b']);
    // Every task id issued was unique.
    expect(new Set(tasks.map((t) => t.taskId)).size).to.equal(tasks.length);
    const v2 = JSON.parse(await fs.readFile(path.join(runDir, 'versions', 'v000002', 'manifest.json'), 'utf8')) as Manifest;
    expect(v2).to.include({ round: 2, attempt: 1 });
    expect(await fs.readdir(path.join(runDir, 'spool')).catch(() => [])).to.deep.equal([]);
  });

  it('a site whose upload was not accepted before the crash takes the re-issued task (new id) and the round commits', async () => {
    const port = await freePort();
    const runDir = path.join(tmp, 'run2');
    const spoolDir = path.join(runDir, 'spool', 'round-1');
    const latest = async (): Promise<string> => (await fs.readFile(path.join(runDir, 'latest'), 'utf8').catch(() => '')).trim();
    const first = startCoordinator(port, runDir, 0, 1);
    children.push(first.child);
    const tasks: { site: string; taskId: string }[] = [];
    const mk = (name: string, delayMs: number): FederationClient => {
      const c = new FederationClient({
        address: `127.0.0.1:${port}`,
        name,
        identity: testIdentity(name),
        trainer: new ConstantTrainer(0.5, 10, delayMs),
        backoff: { initialMs: 50, maxMs: 300, factor: 2 },
      });
      c.on('task', (t) => tasks.push({ site: name, taskId: t.taskId }));
      sites.push(c);
      return c;
    };
    // 'slow' trains for 4 s the first time only (its task is aborted when the stream breaks).
    const runs = [mk('fast', 0).run(), mk('slow', 4000).run()];
    await waitFor(async () => (await fs.readdir(spoolDir).catch(() => [] as string[])).some((f) => f.endsWith('.sealed')), 30_000, "the fast site's upload");
    await kill9(first.child);
    const second = startCoordinator(port, runDir, 0, 1);
    children.push(second.child);
    await waitFor(async () => (await latest()) === 'v000001', 30_000, 'round 1 to commit');
    const summaries = await Promise.all(runs);
    expect(summaries.map((s) => s.finalVersion)).to.deep.equal([1, 1]);
    const m = JSON.parse(await fs.readFile(path.join(runDir, 'versions', 'v000001', 'manifest.json'), 'utf8')) as Manifest;
    expect(m.participants.map((p) => p.clientName).sort()).to.deep.equal(['fast', 'slow']);
    expect(m.attempt).to.equal(2);
    // The fast site trained once; the slow one got a second, different task id and trained again.
    const slowTasks = tasks.filter((t) => t.site === 'slow').map((t) => t.taskId);
    expect(tasks.filter((t) => t.site === 'fast')).to.have.length(1);
    expect(slowTasks).to.have.length(2);
    expect(slowTasks[0]).to.not.equal(slowTasks[1]);
  });

  it('never counts a spooled update for another round, nor a tampered one: the sites train again', async () => {
    const runDir = path.join(tmp, 'run3');
    const kept = path.join(tmp, 'kept');
    await fs.mkdir(kept, { recursive: true });
    const first = await startInProcess(runDir, { total: 1 });
    // Keep round 1's spooled (sealed, signed) updates before the commit removes them.
    const copies: Promise<void>[] = [];
    first.coordinator.on('updateAccepted', (e) =>
      copies.push(fs.copyFile(path.join(runDir, 'spool', 'round-1', `${e.clientId}.sealed`), path.join(kept, `${e.clientId}.sealed`))),
    );
    const mk = (name: string): FederationClient => {
      const c = new FederationClient({
        address: first.address,
        name,
        identity: testIdentity(name),
        trainer: new ConstantTrainer(0.5),
        backoff: { initialMs: 50, maxMs: 300, factor: 2 },
      });
      sites.push(c);
      return c;
    };
    await Promise.all([mk('p').run(), mk('q').run()]);
    await Promise.all(copies);
    await first.coordinator.stop(200);
    const v1 = await first.coordinator.store.latest();
    const ids = (await fs.readdir(kept)).map((f) => f.replace('.sealed', '')).sort();
    expect(ids).to.have.length(2);

    // Plant them as round 2's spool, one as is (a replay across rounds) and one with a flipped ciphertext byte.
    const dir2 = path.join(runDir, 'spool', 'round-2');
    await fs.mkdir(dir2, { recursive: true });
    await fs.writeFile(
      path.join(dir2, 'attempt.json'),
      JSON.stringify({ round: 2, baseManifestSha256: v1!.manifestSha256, attempt: 1, failed: 0, selected: ids, selectionSeed: 1 }),
    );
    await fs.copyFile(path.join(kept, `${ids[0]}.sealed`), path.join(dir2, `${ids[0]}.sealed`));
    const tampered = await fs.readFile(path.join(kept, `${ids[1]}.sealed`));
    tampered[tampered.length - 1] ^= 1; // in the last chunk's authentication tag
    await fs.writeFile(path.join(dir2, `${ids[1]}.sealed`), tampered);

    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString()), cb()) });
    const second = await startInProcess(runDir, { total: 2 }, {}, { logger: pino({ level: 'warn' }, sink) });
    const trained: string[] = [];
    const failed: string[] = [];
    second.coordinator.on('roundFailed', (e) => failed.push(e.reason));
    const again = ['p', 'q'].map((name) => {
      const c = new FederationClient({
        address: second.address,
        name,
        identity: testIdentity(name),
        trainer: new ConstantTrainer(0.25),
        backoff: { initialMs: 50, maxMs: 300, factor: 2 },
      });
      c.on('task', (t) => trained.push(`${name}:${t.round}`));
      sites.push(c);
      return c.run();
    });
    const final = await second.coordinator.done;
    await Promise.all(again);
    await second.coordinator.stop(200);
    expect(final.manifest).to.include({ version: 2, round: 2 });
    expect(trained.sort()).to.deep.equal(['p:2', 'q:2']);
    expect(failed).to.deep.equal([]); // the dropped records made the round wait for its sites, not fail an attempt
    // 0.5 from round 1, then 0.25 from the fresh round-2 updates only.
    expect(Array.from(final.adapter[0].data)).to.deep.equal(new Array(6).fill(0.75));
    const dropped = lines.filter((l) => l.includes('spooled update dropped')).map((l) => JSON.parse(l) as { clientId: string; error: string });
    expect(dropped.map((d) => d.clientId).sort()).to.deep.equal(ids);
    expect(dropped.find((d) => d.clientId === ids[0])!.error).to.match(/bound to run .* round 1 /);
    expect(dropped.find((d) => d.clientId === ids[1])!.error).to.match(/sealed chunk \d+ fails authentication|ciphertext SHA-256/);
  });
});
