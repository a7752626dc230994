// Version retention end to end (real coordinators, real gRPC, real SDK clients, real signatures): a FedAdam run with
// its average under checkpoints.keepServerState 1, keepAdapters 2, keepEvery 3, stopped after version 4 and
// restarted, keeps exactly the files the policy names, byte for byte as an uninterrupted keep-everything twin wrote
// them, and `fedtune verify` accepts it, naming each pruned version; damage among pruned versions is still damage;
// `fedtune checkpoints list` marks what each version lost; export, rollback and recover refuse what was pruned with a message that names no path; `fedtune checkpoints
// prune` brings the twin to the same files (a dry run first, which changes nothing).
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { FsCheckpointStore, versionDirName } from '../coordinator/checkpoints/fs-store';
import { verifyRun, verifyVersionDir } from '../coordinator/checkpoints/verify';
import { formatVerifyReport } from '../coordinator/checkpoints/verify-report';
import { PRUNED_FILE, VersionPrunedError } from '../coordinator/checkpoints/pruned-record';
import { runKey } from '../coordinator/checkpoints/recover';
import { loadCoordinatorKeys } from '../coordinator/keys';
import { snapshot, startCoordinator, tempDir, type Harness } from './harness';
import { RoundTrainer, restartSuite, startRestartSites, versionFiles } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const cli = (args: string[]): Promise<{ code: number; out: string }> =>
  promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 60_000 }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );

const POLICY = { keepServerState: 1, keepAdapters: 2, keepEvery: 3 };
const KEEP_ALL = { keepServerState: 0, keepAdapters: 0, keepEvery: 0 };
const WEIGHTS = ['adapter_model.safetensors', 'ema/adapter_config.json', 'ema/adapter_model.safetensors', 'server-state.safetensors'];
/**
 * What the policy removes from each of v000000…v000007 once v000007 is latest (newest 2: 6, 7; every 3rd: 0, 3, 6);
 * v000000, the initial adapter, has no server state or average.
 */
const GONE = [[], WEIGHTS, WEIGHTS, ['server-state.safetensors'], WEIGHTS, WEIGHTS, ['server-state.safetensors'], []];

describe('version retention (checkpoints.*) over real gRPC', function () {
  this.timeout(120_000);
  const { dirs, clients, coordinators } = restartSuite();
  let full: string; // the keep-everything twin
  let pruned: string; // the same run under POLICY, stopped after v000004 and restarted

  async function coordinator(runDir: string, checkpoints: typeof POLICY): Promise<Harness> {
    const h = await startCoordinator(runDir, { total: 7 }, { strategy: { name: 'fedadam', serverLearningRate: 0.05, ema: 0.5 }, checkpoints });
    coordinators.push(h.coordinator);
    return h;
  }
  const sites = (h: Harness) => startRestartSites(h.address, [new RoundTrainer(0.3), new RoundTrainer(-0.1)], clients);

  before(async () => {
    full = await tempDir('retain-full');
    pruned = await tempDir('retain-pruned');
    dirs.push(full, pruned);
    const a = await coordinator(full, KEEP_ALL);
    const sa = sites(a);
    await a.coordinator.done;
    await Promise.all(sa.runs);
    await a.coordinator.stop(200);
    const b1 = await coordinator(pruned, POLICY);
    const at4 = new Promise<void>((r) => b1.coordinator.on('roundCommitted', (e) => e.version === 4 && r()));
    const sb1 = sites(b1);
    await at4;
    await b1.coordinator.stop(200);
    await sb1.stop();
    const b2 = await coordinator(pruned, POLICY);
    const sb2 = sites(b2);
    expect((await b2.coordinator.done).manifest.version).to.equal(7);
    await Promise.all(sb2.runs);
    await b2.coordinator.stop(200);
  });

  it('keeps exactly what the policy names, byte for byte as the uninterrupted twin; verify accepts it and names each pruned version', async () => {
    const want: string[] = [];
    for (let v = 0; v <= 7; v++) {
      const listed = Object.keys((await new FsCheckpointStore(full, { readOnly: true }).list())[v].files);
      if (v > 0) expect(listed, versionDirName(v)).to.include.members(WEIGHTS);
      const dir = versionDirName(v);
      want.push(
        `${dir}/adapter_config.json`,
        `${dir}/manifest.json`,
        `${dir}/manifest.sig`,
        ...listed.filter((f) => !GONE[v].includes(f)).map((f) => `${dir}/${f}`),
      );
      if (GONE[v].length) want.push(`${dir}/${PRUNED_FILE}`);
      const rec = GONE[v].length
        ? (JSON.parse(await fs.readFile(path.join(pruned, 'versions', dir, PRUNED_FILE), 'utf8')) as { files: string[]; signature?: unknown })
        : null;
      if (rec) expect(rec.files, dir).to.deep.equal(GONE[v]);
      if (rec) expect(rec.signature, dir).to.be.an('object');
    }
    expect(await versionFiles(pruned)).to.deep.equal([...new Set(want)].sort());
    // The weights kept are the twin's bytes (manifests differ only in their checkpoints.* config).
    for (const f of await versionFiles(pruned))
      if (/safetensors|adapter_config/.test(f))
        expect((await fs.readFile(path.join(pruned, 'versions', f))).equals(await fs.readFile(path.join(full, 'versions', f))), f).to.equal(true);
    const key = await runKey(pruned);
    const r = await verifyRun(pruned, { publicKey: key!.publicKey });
    expect(r.problems).to.deep.equal([]);
    expect(r.results.map((x) => x.pruned ?? [])).to.deep.equal(GONE);
    const report = formatVerifyReport(r);
    expect(report).to.contain(
      'v000001 ok (pruned by retention: adapter_model.safetensors, ema/adapter_config.json, ema/adapter_model.safetensors, server-state.safetensors',
    );
    expect(report).to.match(/OK: 8 versions \(v000000…v000007\), latest v000007: chain, file hashes and signatures verified; 6 pruned by retention/);
    // `fedtune checkpoints list` marks them too (its pruned column: the adapter with its average, the server state).
    const list = await cli(['checkpoints', 'list', pruned]);
    expect(list.code, list.out).to.equal(0);
    const lines = list.out.trimEnd().split('\n');
    const col = lines[0].split(/\s+/).indexOf('pruned');
    expect(lines.slice(1).map((l) => l.split(/\s+/)[col])).to.deep.equal([
      '-',
      'adapter+state',
      'adapter+state',
      'state',
      'adapter+state',
      'adapter+state',
      'state',
      '-',
    ]);
    const twin = (await cli(['checkpoints', 'list', full])).out.trimEnd().split('\n');
    expect(twin.slice(1).map((l) => l.split(/\s+/)[col])).to.deep.equal(Array(8).fill('-'));
  });

  it('tells damage from pruning: a kept file deleted, a record removed, moved, unsigned or altered', async () => {
    const d = await tempDir('retain-damage');
    dirs.push(d);
    await fs.cp(pruned, d, { recursive: true });
    const v = (n: number, f: string): string => path.join(d, 'versions', versionDirName(n), f);
    await fs.rm(v(6, 'adapter_model.safetensors')); // kept by policy: damage
    await fs.rm(v(1, PRUNED_FILE)); // the record gone: its files are missing
    await fs.copyFile(v(4, PRUNED_FILE), v(2, PRUNED_FILE)); // another version's record
    const rec5 = JSON.parse(await fs.readFile(v(5, PRUNED_FILE), 'utf8')) as Record<string, unknown>;
    await fs.writeFile(v(5, PRUNED_FILE), JSON.stringify({ ...rec5, signature: undefined })); // unsigned in a signed run
    const rec4 = JSON.parse(await fs.readFile(v(4, PRUNED_FILE), 'utf8')) as Record<string, unknown>;
    await fs.writeFile(v(4, PRUNED_FILE), JSON.stringify({ ...rec4, reason: 'edited' })); // altered after signing
    const r = await verifyRun(d);
    const got = r.problems.map((p) => `${p.version} ${p.file} ${p.kind}`);
    const missing = (n: number): string[] => WEIGHTS.map((f) => `${n} ${f} missing-file`);
    expect(got).to.deep.equal([
      ...missing(1),
      `2 ${PRUNED_FILE} pruned-record`,
      ...missing(2),
      `4 ${PRUNED_FILE} pruned-record`,
      ...missing(4),
      `5 ${PRUNED_FILE} pruned-record`,
      ...missing(5),
      '6 adapter_model.safetensors missing-file',
    ]);
    expect(r.problems.find((p) => p.version === 2 && p.kind === 'pruned-record')!.message).to.equal(`v000002/${PRUNED_FILE}: names version 4, not this one`);
    expect(r.problems.find((p) => p.version === 5 && p.kind === 'pruned-record')!.message).to.contain('is not signed, but the run is');
    expect(r.problems.find((p) => p.version === 4 && p.kind === 'pruned-record')!.message).to.contain('ed25519 signature does not verify');
  });

  it('export, rollback and recover refuse a version whose needed files were pruned, naming no path; a version that lost only its state exports', async () => {
    const store = new FsCheckpointStore(pruned, { readOnly: true });
    const out = await tempDir('retain-export');
    dirs.push(out);
    const err = await store.export(1, path.join(out, 'v1')).then(
      () => null,
      (e: Error) => e,
    );
    expect(err, String(err)).to.be.instanceOf(VersionPrunedError);
    expect(err!.message).to.equal(
      "v000001: its adapter and its averaged adapter were removed by the run's retention policy (checkpoints.keepAdapters, keepEvery, keepServerState; recorded in its pruned.json, its manifest and signature kept), so it cannot be used here; `fedtune verify` names the versions retention pruned",
    );
    expect(err!.message).to.not.contain(pruned);
    expect(err!.message).to.not.contain('/tmp');
    await store.export(6, path.join(out, 'v6'));
    expect((await fs.readdir(path.join(out, 'v6'))).sort()).to.deep.equal([
      'adapter_config.json',
      'adapter_model.safetensors',
      'ema',
      'manifest.json',
      'manifest.sig',
      PRUNED_FILE,
    ]);
    expect((await verifyVersionDir(path.join(out, 'v6'))).problems).to.deep.equal([]);
    const before = await snapshot(pruned);
    const rollback = await cli(['checkpoints', 'rollback', pruned, '2']);
    expect(rollback.code).to.equal(1);
    expect(rollback.out.trim()).to.match(
      /^fedtune: refused: v000002: its adapter and its averaged adapter were removed by the run.s retention policy .* the release pointer was not changed$/,
    );
    const recover = await cli(['recover', pruned, '--to', '6', '--dry-run']);
    expect(recover.code).to.equal(1);
    expect(recover.out.trim()).to.match(
      /^fedtune recover: --to 6: v000006: its server optimiser state was removed by the run's retention policy .* Nothing was changed\.$/,
    );
    const exp = await cli(['checkpoints', 'export', pruned, '4', path.join(out, 'v4')]);
    expect(exp.code).to.equal(1);
    expect(exp.out).to.not.contain(pruned);
    expect(await snapshot(pruned)).to.deep.equal(before);
    expect((await cli(['checkpoints', 'rollback', pruned, '3'])).code).to.equal(0); // kept by keepEvery
  });

  it('`prune --apply` on a signed run whose key file is gone is refused, and no key file is ever created (the key is read, never made)', async () => {
    const d = await tempDir('retain-nokey');
    const away = await tempDir('retain-key-away');
    dirs.push(d, away);
    await fs.cp(pruned, d, { recursive: true });
    const keyFile = path.join(d, 'keys', 'coordinator.json');
    const moved = path.join(away, 'coordinator.json');
    await fs.rename(keyFile, moved);
    const before = await snapshot(d);
    const flags = ['--keep-server-state', '1', '--keep-adapters', '2', '--keep-every', '3'];
    // The key file absent when --apply reads it (as when it vanishes after a look): refused, nothing new in the run.
    const refused = await cli(['checkpoints', 'prune', d, '--apply', ...flags]);
    expect(refused.code, refused.out).to.equal(1);
    expect(refused.out).to.match(/refused: the run is signed \(key [0-9a-f]+\), so its pruning records must be too: pass --key-file\. Nothing was removed/);
    expect(await snapshot(d)).to.deep.equal(before);
    const absent = path.join(away, 'none.json');
    const named = await cli(['checkpoints', 'prune', d, '--apply', '--key-file', absent, ...flags]);
    expect(named.code, named.out).to.equal(1);
    expect(named.out).to.contain(`--key-file ${absent}: no such file`);
    expect(await fs.readdir(away)).to.deep.equal(['coordinator.json']);
    expect(await snapshot(d)).to.deep.equal(before);
    // What the prune reads the key with: null for no file, never a new one; the run's key when it is there.
    expect(await loadCoordinatorKeys(keyFile)).to.equal(null);
    await fs.access(keyFile).then(
      () => expect.fail('a key file was created'),
      (e: NodeJS.ErrnoException) => expect(e.code).to.equal('ENOENT'),
    );
    expect(Buffer.from((await loadCoordinatorKeys(moved))!.sign.publicKey).equals(Buffer.from((await runKey(pruned))!.publicKey))).to.equal(true);
    const applied = await cli(['checkpoints', 'prune', d, '--apply', '--key-file', moved, ...flags]);
    expect(applied.code, applied.out).to.equal(0);
    expect(applied.out).to.contain('removed 0 files from 0 versions');
  });

  it('`fedtune checkpoints prune` on the keep-everything twin: a dry run changes nothing and says what it frees; --apply leaves the same files', async () => {
    const before = await snapshot(full);
    let bytes = 0;
    for (let v = 0; v <= 7; v++) for (const f of GONE[v]) bytes += (await fs.stat(path.join(full, 'versions', versionDirName(v), f))).size;
    const flags = ['--keep-server-state', '1', '--keep-adapters', '2', '--keep-every', '3'];
    const dry = await cli(['checkpoints', 'prune', full, ...flags]);
    expect(dry.code).to.equal(0);
    expect(dry.out).to.contain(
      `dry run: would remove 18 files from 6 versions, freeing ${(bytes / 2 ** 20).toFixed(1)} MiB (${bytes} bytes); nothing was changed`,
    );
    expect(await snapshot(full)).to.deep.equal(before);
    const applied = await cli(['checkpoints', 'prune', full, '--apply', ...flags]);
    expect(applied.code, applied.out).to.equal(0);
    expect(applied.out).to.contain(`removed 18 files from 6 versions, freed ${(bytes / 2 ** 20).toFixed(1)} MiB (${bytes} bytes)`);
    expect(await versionFiles(full)).to.deep.equal(await versionFiles(pruned));
    const r = await verifyRun(full, { publicKey: (await runKey(full))!.publicKey });
    expect(r.problems).to.deep.equal([]);
    expect((await cli(['checkpoints', 'prune', full, '--apply', ...flags])).out).to.contain('removed 0 files from 0 versions');
  });
});
