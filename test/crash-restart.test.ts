// kill -9 of the real coordinator process (examples/coordinator.js) at every named step of its first start
// and of a commit, then a restart on the same run directory, with two real sites that reconnect on their own.
// FEDTUNE_TEST_KILL_AT makes the child SIGKILL itself right after that step (proto/durable-file.ts stepsFor):
//   key file:  temporary written, temporary synced, linked into place (temporary still there);
//   commit:    first tmp file written, tmp directory synced, renamed (at v000000, before any site is needed),
//              versions/ synced, pointer temporary synced, pointer renamed, pointer synced (at rounds 1-4);
//   upload:    a site's ciphertext streaming into the round spool: temporary opened, first chunk written,
//              temporary synced, renamed to <client>.sealed (round 1), spool directory synced (round 2).
// After each kill: a key file is absent or complete and never changes once written; a version the pointer
// had reached is never lost or changed; a version renamed into place is kept as written (finished, not
// committed again). At the end: v000000…v000005 each once, the chain verifies with the run's key, no
// temporary or lock is left, and the sites saw the run through. test/crash-points.test.ts stops every
// finer step in process.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { FederationClient } from '../client-sdk/client';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { prepareSpamTask, DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import { verifyRun } from '../coordinator/checkpoints/verify';
import { decodeBase64 } from '../coordinator/checkpoints/signature';
import type { Manifest } from '../coordinator/checkpoints/types';
import { KILL_AT_ENV } from '../proto/durable-file';
import { freePort } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const TOTAL = 5;

/** Where each successive coordinator process kills itself; the last one runs to the end. */
const KILLS = [
  'key-file:write',
  'key-file:fsync',
  'key-file:link',
  'commit:tmp:write',
  'commit:tmp:fsync-dir',
  'commit:renamed',
  'spool:upload:open',
  'spool:upload:write',
  'spool:upload:fsync',
  // Both sites' records may be renamed by now (the renames run in parallel): each upload kill is followed by a
  // process that commits, so the run always has a round left for the next one.
  'spool:upload:rename',
  'commit:versions:fsync-dir',
  'spool:upload:fsync-dir',
  'commit:pointer:fsync',
  'commit:pointer:rename',
  'commit:pointer:fsync-dir',
];

function startCoordinator(port: number, runDir: string, killAt: string | undefined, stderr: string[]): ChildProcess {
  const script = path.join(__dirname, '..', 'examples', 'coordinator.js');
  const args = ['--server.port', String(port), '--run.dir', runDir, '--rounds.total', String(TOTAL), '--rounds.minClients', '2', '--rounds.minUpdates', '2'];
  args.push('--training.localSteps', '1', '--training.batchSize', '4', '--rounds.deadlineMs', '60000', '--log.level', 'warn', '--auth.mode', 'tofu');
  const env = { ...process.env };
  delete env[KILL_AT_ENV];
  if (killAt) env[KILL_AT_ENV] = killAt;
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env });
  child.stderr!.on('data', (b: Buffer) => stderr.push(b.toString()));
  return child;
}

const exited = (c: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve({ code: c.exitCode, signal: c.signalCode })
    : new Promise((r) => c.once('exit', (code, signal) => r({ code, signal })));

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

describe('crash and restart of the coordinator process', function () {
  this.timeout(240_000);
  let tmp: string;
  const children: ChildProcess[] = [];

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-crash-'));
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('SIGKILL at every step of the first start and of a commit: no version lost or committed twice, the chain verifies, the run completes', async () => {
    await selectBackend();
    const port = await freePort();
    const runDir = path.join(tmp, 'run');
    const keyFile = path.join(runDir, 'keys', 'coordinator.json');
    const versionsDir = path.join(runDir, 'versions');
    const readLatest = async (): Promise<number | null> => {
      const t = await fs.readFile(path.join(runDir, 'latest'), 'utf8').catch(() => null);
      return t === null ? null : Number(t.trim().slice(1));
    };
    const manifestHash = async (v: number): Promise<string | null> =>
      fs.readFile(path.join(versionsDir, `v${String(v).padStart(6, '0')}`, 'manifest.json')).then(sha, () => null);

    const base = await loadGpt2Dir(DEFAULT_MODEL_DIR);
    const task = prepareSpamTask({ numClients: 2, splitSeed: 3, maxSeqLen: 96, clientEvalLimit: 8 });
    const lora = { r: 8, alpha: 16, dropout: 0.05, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
    let reconnects = 0;
    const sites = task.clients.map((d, i) => {
      const c = new FederationClient({
        address: `127.0.0.1:${port}`,
        name: `site-${i}`,
        trainer: new LoraSftTrainer({ model: base.model, lora, ...d }),
        backoff: { initialMs: 100, maxMs: 300, factor: 2 },
      });
      c.on('reconnecting', () => reconnects++);
      return c;
    });
    const runs = sites.map((s) => s.run());

    let keyText: string | null = null;
    /** Versions that must survive unchanged: manifest sha256 by version. */
    const kept = new Map<number, string>();
    const stderr: string[] = [];
    for (const point of KILLS) {
      const child = startCoordinator(port, runDir, point, stderr);
      children.push(child);
      const { signal, code } = await exited(child);
      expect(signal, `${point}: exit ${code}, latest ${await readLatest()}: ${stderr.join('')}`).to.equal('SIGKILL');
      // The key file: absent, or complete and the same from the moment it was first written.
      const text = await fs.readFile(keyFile, 'utf8').catch(() => null);
      if (keyText !== null) expect(text, point).to.equal(keyText);
      if (text !== null) {
        expect(JSON.parse(text).format, point).to.equal('fedtune.coordinator-key/1');
        keyText = text;
      }
      expect(keyText === null, point).to.equal(point === 'key-file:write' || point === 'key-file:fsync');
      if (point.startsWith('spool:upload:')) {
        // Killed with an upload streaming in: its temporary (or, once renamed, its record) is in the round spool.
        const spooled = (await fs.readdir(path.join(runDir, 'spool'), { recursive: true })).map(String);
        const want = point === 'spool:upload:rename' || point === 'spool:upload:fsync-dir' ? /\.sealed$/ : /\/\.c-[0-9a-f]+\.sealed\.[0-9a-f]{12}\.tmp$/;
        expect(
          spooled.some((f) => want.test(f)),
          `${point}: ${spooled.join(', ')}`,
        ).to.equal(true);
      }
      // Everything up to the pointer is committed; one version beyond it was renamed whole and is kept too.
      const latest = await readLatest();
      for (let v = 0; v <= (latest ?? -1) + 1; v++) {
        const h = await manifestHash(v);
        if (h === null) continue;
        if (kept.has(v)) expect(h, `${point}: v${v} changed`).to.equal(kept.get(v));
        kept.set(v, h);
      }
    }
    const last = startCoordinator(port, runDir, undefined, stderr);
    children.push(last);
    const summaries = await Promise.all(runs);
    const end = await exited(last);
    expect(end.code, stderr.join('')).to.equal(0);

    expect(reconnects).to.be.greaterThan(0);
    expect(summaries.map((s) => s.finalVersion)).to.deep.equal([TOTAL, TOTAL]);
    expect(await readLatest()).to.equal(TOTAL);
    // Each version once, each round once, nothing lost and nothing re-made.
    const versions = (await fs.readdir(versionsDir)).sort();
    expect(versions).to.deep.equal(Array.from({ length: TOTAL + 1 }, (_, v) => `v${String(v).padStart(6, '0')}`));
    for (let v = 0; v <= TOTAL; v++) {
      const m = JSON.parse(await fs.readFile(path.join(versionsDir, versions[v], 'manifest.json'), 'utf8')) as Manifest;
      expect([m.version, m.round]).to.deep.equal([v, v]);
      if (kept.has(v)) expect(await manifestHash(v), `v${v}`).to.equal(kept.get(v));
    }
    expect([...kept.keys()].sort()).to.deep.equal([0, 1, 2, 3, 4]);
    // Signed by the key written at the first start, end to end.
    const publicKey = decodeBase64((JSON.parse(keyText!) as { signPublicKey: string }).signPublicKey, 32)!;
    const report = await verifyRun(runDir, { publicKey });
    expect(report.problems).to.deep.equal([]);
    expect(await fs.readFile(keyFile, 'utf8')).to.equal(keyText);
    const left = (await fs.readdir(runDir, { recursive: true })).filter((p) => /(^|\/)\.tmp-|\.tmp$|coordinator\.lock|orphans/.test(p));
    expect(left).to.deep.equal([]);
  });
});
