// Crash safety of version retention (prune.ts): pruning starts only once a commit is durable, writes its signed
// record before removing anything, and every pass finishes what earlier records name. In process, a prune pass
// stopped at each of its steps in turn leaves a run that verifies, that a signing store resumes from, and that the
// next pass brings to exactly the files an uninterrupted pass leaves. Out of process, the real coordinator
// (test/fixtures/tiny-coordinator.ts) is killed with SIGKILL at each named step of a prune (FEDTUNE_TEST_KILL_AT, as
// test/crash-restart.test.ts does for commits) and restarted on the same run with two real sites: after every kill
// the run verifies, and at the end every version is there once, pruned exactly by the policy, with no temporary left.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import { FederationClient } from '../client-sdk/client';
import { FsCheckpointStore, versionDirName } from '../coordinator/checkpoints/fs-store';
import { manifestSigner } from '../coordinator/checkpoints/signature';
import { verifyRun } from '../coordinator/checkpoints/verify';
import { pruneRun } from '../coordinator/checkpoints/prune';
import { runKey } from '../coordinator/checkpoints/recover';
import { KILL_AT_ENV } from '../proto/durable-file';
import { commitInput } from './checkpoint-kit';
import { ConstantTrainer, freePort, tempDir, testIdentity } from './harness';
import { versionFiles } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const POLICY = { keepServerState: 1, keepAdapters: 2, keepEvery: 0 };
/** Each named step of a prune pass (proto/durable-file.ts stepsFor), in the order a pass reaches them. */
const KILLS = ['prune:record:open', 'prune:record:write', 'prune:record:fsync', 'prune:record:rename', 'prune:record:fsync-dir', 'prune:unlink', 'prune:rmdir'];

describe('version retention: crash safety of a prune', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  const children: ChildProcess[] = [];
  const sites: FederationClient[] = [];
  after(async () => {
    for (const s of sites) await s.stop().catch(() => undefined);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it('a prune pass stopped at each step: the run verifies, resumes, and the next pass leaves what an uninterrupted one does', async () => {
    const signer = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(7)));
    const pristine = await tempDir('retain-points');
    dirs.push(pristine);
    const store = new FsCheckpointStore(pristine, { signer, runId: 'r' });
    const value = (round: number) => ({ dtype: 'float32' as const, shape: [2], data: Float32Array.from([round / 2, -round / 2]) });
    for (let round = 0; round <= 5; round++) {
      const state =
        round === 0
          ? undefined
          : [
              { name: 'ema/m.lora_A.weight', ...value(round) },
              { name: 'm/m.lora_A.weight', ...value(round + 1) },
            ];
      await store.commit(commitInput(round, 'r', state));
    }
    const opts = { policy: POLICY, latest: 5, keep: [], signer };
    const copy = async (name: string): Promise<string> => {
      const d = path.join(pristine, '..', `${path.basename(pristine)}-${name}`);
      await fs.cp(pristine, d, { recursive: true });
      dirs.push(d);
      return d;
    };
    const whole = await copy('whole');
    const steps: string[] = [];
    const done = await pruneRun(whole, { ...opts, crashHook: (p) => void steps.push(p) });
    expect(done.versions.map((v) => v.version)).to.deep.equal([0, 1, 2, 3, 4]);
    const want = await versionFiles(whole);
    expect(want.filter((f) => f.startsWith('v000001/'))).to.deep.equal([
      'v000001/adapter_config.json',
      'v000001/manifest.json',
      'v000001/manifest.sig',
      'v000001/pruned.json',
    ]);
    expect(want.filter((f) => f.startsWith('v000004/'))).to.not.include('v000004/server-state.safetensors');
    expect(new Set(steps)).to.deep.equal(
      new Set([
        'prune:record:open',
        'prune:record:write',
        'prune:record:fsync',
        'prune:record:rename',
        'prune:record:fsync-dir',
        'prune:unlink',
        'prune:rmdir',
      ]),
    );
    for (let k = 0; k < steps.length; k++) {
      const d = await copy(`k${k}`);
      let n = 0;
      const stopped = await pruneRun(d, {
        ...opts,
        crashHook: () => {
          if (n++ === k) throw new Error('crash');
        },
      }).then(
        () => false,
        () => true,
      );
      expect(stopped, `step ${k} ${steps[k]}`).to.equal(true);
      expect((await verifyRun(d, { publicKey: signer.publicKey })).problems, `step ${k} ${steps[k]}`).to.deep.equal([]);
      const resumed = await new FsCheckpointStore(d, { signer, runId: 'r' }).latest();
      expect(resumed!.manifest.version).to.equal(5);
      expect(resumed!.serverState!.map((t) => t.name)).to.deep.equal(['ema/m.lora_A.weight', 'm/m.lora_A.weight']);
      await pruneRun(d, opts);
      expect(await versionFiles(d), `step ${k} ${steps[k]}`).to.deep.equal(want);
      expect((await verifyRun(d, { publicKey: signer.publicKey })).problems).to.deep.equal([]);
    }
  });

  it('SIGKILL of the coordinator at each step of a prune, then a restart: the run verifies after every kill and ends pruned exactly by the policy', async () => {
    const port = await freePort();
    const base = await tempDir('retain-kill');
    dirs.push(base);
    const runDir = path.join(base, 'run');
    const out: string[] = [];
    const start = (killAt: string | undefined): ChildProcess => {
      const args = ['--server.port', String(port), '--run.dir', runDir, '--run.seed', '5', '--rounds.total', '10', '--rounds.minClients', '2'];
      args.push('--rounds.minUpdates', '2', '--rounds.deadlineMs', '30000', '--log.level', 'warn', '--auth.mode', 'tofu', '--lora.aggregation', 'fedit');
      args.push('--strategy.name', 'fedadam', '--strategy.ema', '0.5');
      for (const [k, v] of Object.entries(POLICY)) args.push(`--checkpoints.${k}`, String(v));
      const env = { ...process.env };
      delete env[KILL_AT_ENV];
      if (killAt) env[KILL_AT_ENV] = killAt;
      const child = spawn(process.execPath, [path.join(__dirname, 'fixtures', 'tiny-coordinator.js'), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
      child.stdout.on('data', (b: Buffer) => out.push(b.toString()));
      child.stderr.on('data', (b: Buffer) => out.push(b.toString()));
      children.push(child);
      return child;
    };
    const exited = (c: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
      c.exitCode !== null || c.signalCode !== null
        ? Promise.resolve({ code: c.exitCode, signal: c.signalCode })
        : new Promise((r) => c.once('exit', (code, signal) => r({ code, signal })));
    for (const [i, value] of [0.25, -0.5].entries()) {
      const name = `site-${i}`;
      sites.push(
        new FederationClient({
          address: `127.0.0.1:${port}`,
          name,
          identity: testIdentity(name),
          trainer: new ConstantTrainer(value),
          backoff: { initialMs: 50, maxMs: 300, factor: 2 },
        }),
      );
    }
    const runs = sites.map((s) => s.run());
    // Ten rounds for seven kills (one a commit, from v000002): the last process still has rounds to run, so the sites
    // hear the run end from it.
    for (const point of KILLS) {
      const { signal, code } = await exited(start(point));
      expect(signal, `${point}: exit ${code}: ${out.join('')}`).to.equal('SIGKILL');
      const r = await verifyRun(runDir, { publicKey: (await runKey(runDir))!.publicKey });
      expect(r.problems, point).to.deep.equal([]);
    }
    const last = start(undefined);
    await Promise.all(runs);
    expect((await exited(last)).code, out.join('')).to.equal(0);
    const r = await verifyRun(runDir, { publicKey: (await runKey(runDir))!.publicKey });
    expect(r.problems).to.deep.equal([]);
    expect(r.latest).to.equal(10);
    // Newest 2 (9, 10) keep their adapters, the newest 1 its state; v000000 (no state, no average) loses its adapter.
    const weights = ['adapter_model.safetensors', 'ema/adapter_config.json', 'ema/adapter_model.safetensors', 'server-state.safetensors'];
    expect(r.results.map((x) => x.pruned ?? [])).to.deep.equal([
      ['adapter_model.safetensors'],
      weights,
      weights,
      weights,
      weights,
      weights,
      weights,
      weights,
      weights,
      ['server-state.safetensors'],
      [],
    ]);
    const left = await versionFiles(runDir);
    expect(left.filter((f) => f.includes('.tmp'))).to.deep.equal([]);
    for (let v = 0; v <= 10; v++) expect(left, versionDirName(v)).to.include(`${versionDirName(v)}/manifest.sig`);
  });
});
