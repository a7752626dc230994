// A damaged latest pointer (deleted, moved back, garbled) and `fedtune recover`: the coordinator refuses to
// start and changes nothing; recover rebuilds the pointer from the signed chain (checkpoints/recover.ts),
// refuses a broken chain unless told which version, and the coordinator then resumes. Also the run lock.
import { execFile, spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { FsCheckpointStore, RecoveryNeededError, versionDirName } from '../coordinator/checkpoints/fs-store';
import { MANIFEST_SIG_FILE, manifestSigner, signManifest } from '../coordinator/checkpoints/signature';
import { loadOrCreateCoordinatorKeys } from '../coordinator/keys';
import { verifyRun } from '../coordinator/checkpoints/verify';
import { LOCK_FILE, RunLockedError } from '../coordinator/run-lock';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Coordinator } from '../coordinator/coordinator';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { smallAdapter, startCoordinator, tempDir } from './harness';
import type { VersionInput } from '../coordinator/checkpoints/types';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const fedtune = (...args: string[]): Promise<{ code: number; out: string; err: string }> =>
  promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 30_000 }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );

function input(round: number): VersionInput {
  return {
    adapter: smallAdapter(round),
    adapterConfig: { peft_type: 'LORA' },
    manifest: {
      runId: 'run', // the run directory's name: the coordinator that resumes it derives its run.id from it
      round,
      attempt: 1,
      strategy: 'fedavg',
      participants: [],
      metrics: {},
      config: {},
      seeds: { run: 5 },
      baseModel: { name: 'test', sha256: '0'.repeat(64) },
      protocolVersion: 1,
    },
  };
}

describe('recovery of the latest pointer: the coordinator refuses, fedtune recover rebuilds', function () {
  this.timeout(60_000);
  let root: string;
  let run: string;
  const latestFile = (): string => path.join(run, 'latest');
  const vdir = (v: number): string => path.join(run, 'versions', versionDirName(v));

  beforeEach(async () => {
    root = await tempDir('recover');
    run = path.join(root, 'run');
    // Laid out as a coordinator lays it out: its key file, and v000000…v000004 signed with that key.
    const keys = await loadOrCreateCoordinatorKeys(path.join(run, 'keys', 'coordinator.json'));
    const store = new FsCheckpointStore(run, { signer: manifestSigner(keys.sign) });
    for (let v = 0; v <= 4; v++) await store.commit(input(v));
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  /** Every path under the run with its bytes' hash. */
  async function snapshot(): Promise<string[]> {
    const out: string[] = [];
    for (const e of await fs.readdir(run, { recursive: true, withFileTypes: true })) {
      const p = path.join(e.parentPath, e.name);
      out.push(
        `${path.relative(run, p)} ${
          e.isFile()
            ? createHash('sha256')
                .update(await fs.readFile(p))
                .digest('hex')
            : 'dir'
        }`,
      );
    }
    return out.sort();
  }

  async function refusedStart(expected: string): Promise<void> {
    const before = await snapshot();
    const err = await startCoordinator(run, { total: 4 }).then(
      async (h) => (await h.coordinator.stop(200), null),
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(RecoveryNeededError);
    expect((err as Error).message)
      .to.contain(expected)
      .and.contain(`Run \`fedtune recover ${run}\``);
    // Nothing moved, nothing started anew (no orphans/, no new v000000), and the lock was given back.
    expect(await snapshot()).to.deep.equal(before);
  }

  async function resumes(version: number): Promise<void> {
    const h = await startCoordinator(run, { total: version });
    const final = await h.coordinator.done;
    await h.coordinator.stop(200);
    expect(final.manifest.version).to.equal(version);
    expect((await verifyRun(run)).ok).to.equal(true);
  }

  it('latest deleted: the coordinator refuses; recover points it at v000004 after verifying the chain; the run resumes', async () => {
    await fs.rm(latestFile());
    await refusedStart(`run ${run}: the latest pointer is missing, but versions v000000…v000004 exist.`);
    const dry = await fedtune('recover', run, '--dry-run');
    expect(dry.code, dry.err).to.equal(0);
    expect(dry.out).to.contain('latest was missing; it would name v000004');
    expect(await fs.stat(latestFile()).catch(() => null)).to.equal(null);
    const r = await fedtune('recover', run);
    expect(r.code, r.err).to.equal(0);
    const keys = await loadOrCreateCoordinatorKeys(path.join(run, 'keys', 'coordinator.json'));
    expect(r.out).to.contain(
      `verified v000000…v000004: signatures by key ${manifestSigner(keys.sign).keyId} (from keys/coordinator.json), every file hash and parent link\n`,
    );
    expect(r.out).to.contain('latest was missing; it now names v000004');
    expect(await fs.readFile(latestFile(), 'utf8')).to.equal('v000004\n');
    const again = await fedtune('recover', run);
    expect(again.out).to.contain('latest already names v000004: nothing to do');
    await resumes(4);
  });

  it('latest moved back (v000001 of v000004): refused, never moved to orphans/; recover moves it forward', async () => {
    await fs.writeFile(latestFile(), 'v000001\n');
    await refusedStart(
      `run ${run}: latest names v000001, but versions v000002…v000004 exist beyond it. The pointer only ever moves forward one version at a time, so this is damage`,
    );
    const r = await fedtune('recover', run);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.contain('latest named "v000001"; it now names v000004');
    await resumes(4);
  });

  it('a broken chain is refused, naming the break and the newest intact version; --to moves the rest to orphans/', async () => {
    await fs.rm(latestFile());
    const p = path.join(vdir(3), 'adapter_model.safetensors');
    const bad = await fs.readFile(p);
    bad[bad.length - 1] ^= 1;
    await fs.writeFile(p, bad);
    const before = await snapshot();
    const r = await fedtune('recover', run);
    expect(r.code).to.equal(1);
    expect(r.err).to.contain('fedtune recover: the chain is broken at v000003: v000003/adapter_model.safetensors: sha256');
    expect(r.err).to.contain(
      `Nothing was changed. The newest version whose chain is intact is v000002: \`fedtune recover ${run} --to 2\` makes it latest and moves v000003…v000004 to orphans/.`,
    );
    expect(await snapshot()).to.deep.equal(before);
    const past = await fedtune('recover', run, '--to', '3');
    expect(past.code).to.equal(1);
    expect(past.err).to.contain('--to 3: its chain does not verify: v000003/adapter_model.safetensors');

    const ok = await fedtune('recover', run, '--to', '2');
    expect(ok.code, ok.err).to.equal(0);
    const moved = ok.out.split('\n').filter((l) => l.startsWith('moved '));
    expect(moved).to.have.length(2);
    expect(moved[0]).to.match(/^moved v000003 to orphans\/[0-9TZ-]+\/v000003$/);
    expect(await fs.readdir(path.join(run, 'versions'))).to.deep.equal(['v000000', 'v000001', 'v000002']);
    const orphanDir = path.join(run, moved[1].split(' to ')[1]);
    expect(await fs.readdir(orphanDir)).to.include('manifest.sig');
    expect(await fs.readFile(latestFile(), 'utf8')).to.equal('v000002\n');
    await resumes(2);
  });

  it("refuses versions signed with another key than the run's, and usage errors exit 2 without touching anything", async () => {
    // v000004 re-signed with another key: every hash intact, the signature valid but not the run's.
    const other = await loadOrCreateCoordinatorKeys(path.join(root, 'other.json'));
    const manifest = await fs.readFile(path.join(vdir(4), 'manifest.json'));
    await fs.writeFile(path.join(vdir(4), MANIFEST_SIG_FILE), signManifest(manifest, manifestSigner(other.sign)));
    await fs.rm(latestFile());
    const r = await fedtune('recover', run);
    expect(r.code).to.equal(1);
    expect(r.err).to.contain(`the chain is broken at v000004: v000004/manifest.sig: signed by key ${manifestSigner(other.sign).keyId}, not by the trusted key`);
    expect(r.err).to.contain('The newest version whose chain is intact is v000003');
    for (const args of [[path.join(root, 'typo')], [run, '--to', 'x'], [run, '--key', 'not-a-key']]) {
      const u = await fedtune('recover', ...args);
      expect(u.code, `${args.join(' ')}: ${u.err}`).to.equal(2);
    }
    expect(await fs.stat(path.join(root, 'typo')).catch(() => null)).to.equal(null);
  });
});

describe('the run lock', function () {
  this.timeout(60_000);
  let run: string;
  beforeEach(async () => {
    run = await tempDir('lock');
  });
  afterEach(() => fs.rm(run, { recursive: true, force: true }));

  it('a second coordinator on the same run directory (another port) is refused naming the holder; free again after stop()', async () => {
    const first = await startCoordinator(run);
    const err = await startCoordinator(run).then(
      async (h) => (await h.coordinator.stop(200), null),
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(RunLockedError);
    expect((err as Error).message).to.equal(
      `run directory ${run} is in use by coordinator (pid ${process.pid} on ${os.hostname()}, started ${JSON.parse(await fs.readFile(path.join(run, LOCK_FILE), 'utf8')).startedAt}); stop it first (two writers would corrupt the run)`,
    );
    const busy = await fedtune('recover', run);
    expect(busy.code).to.equal(1);
    expect(busy.err).to.contain(`is in use by coordinator (pid ${process.pid}`);
    await first.coordinator.stop(200);
    expect(await fs.readdir(run)).to.not.include(LOCK_FILE);
    const second = await startCoordinator(run);
    await second.coordinator.stop(200);
  });

  it('a lock left by a process killed with SIGKILL is stale: the next coordinator takes it, saying so', async () => {
    // A real holder: a child process takes the lock, reports, and is killed -9.
    const script = `require(${JSON.stringify(path.join(__dirname, '..', 'coordinator', 'run-lock.js'))}).RunLock.acquire(${JSON.stringify(run)}, 'coordinator').then(() => { console.log('held'); setInterval(() => {}, 1000); });`;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    const held = JSON.parse(await fs.readFile(path.join(run, LOCK_FILE), 'utf8')) as { pid: number };
    expect(held.pid).to.equal(child.pid);
    // While it lives, it holds the run.
    const live = await startCoordinator(run).then(
      async (h) => (await h.coordinator.stop(200), null),
      (e: unknown) => e,
    );
    expect((live as Error).message).to.contain(`in use by coordinator (pid ${child.pid} on ${os.hostname()}`);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const warnings: string[] = [];
    const sink = new Writable({ write: (c: Buffer, _e, cb) => (warnings.push(String(JSON.parse(c.toString()).msg)), cb()) });
    const c = new Coordinator({
      config: classicConfig({ overrides: { server: { port: 0 }, run: { dir: run }, rounds: { total: 1 }, auth: { mode: 'tofu' } } }),
      initialAdapter: () => smallAdapter(0),
      adapterConfig: {},
      baseModel: { name: 't', sha256: '0'.repeat(64) },
      logger: pino({ level: 'warn' }, sink),
    });
    await c.start();
    const mine = JSON.parse(await fs.readFile(path.join(run, LOCK_FILE), 'utf8')) as { pid: number };
    await c.stop(200);
    expect(mine.pid).to.equal(process.pid);
    expect(warnings.find((w) => w.startsWith('removed a stale lock left by coordinator (pid '))).to.contain(`pid ${child.pid} on ${os.hostname()}`);
  });

  it('a lock from another host is refused: it cannot be checked from here', async () => {
    await fs.writeFile(
      path.join(run, LOCK_FILE),
      JSON.stringify({ pid: 1, hostname: 'elsewhere.example', startedAt: 'then', command: 'coordinator', processStart: null, token: 'x' }),
    );
    const err = await startCoordinator(run).then(
      async (h) => (await h.coordinator.stop(200), null),
      (e: unknown) => e,
    );
    expect((err as Error).message).to.equal(
      `run directory ${run} is in use by coordinator (pid 1 on elsewhere.example, started then); that host cannot be checked from here: if that process is gone, delete ${path.join(run, LOCK_FILE)}`,
    );
  });
});
