// The `fedtune` commands that take a run directory never fail silently and never create what they should
// not: a typo is an error with a non-zero exit, not a new empty run (once `/etc/versions`).
import { execFile } from 'node:child_process';
import { promises as fs, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { loadOrCreateCoordinatorKeys } from '../coordinator/keys';
import { smallAdapter, startCoordinator, tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const fedtune = (...args: string[]): Promise<{ code: number; out: string; err: string }> =>
  promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 30_000 }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );

describe('fedtune commands on a run directory', function () {
  this.timeout(60_000);
  let root: string;
  beforeEach(async () => {
    root = await tempDir('cli-run');
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  it('checkpoints list and export on a directory that is not a run: an error, exit 1, nothing created', async () => {
    const typo = path.join(root, 'typo');
    const plain = path.join(root, 'plain');
    await fs.mkdir(plain);
    for (const dir of [typo, plain]) {
      const list = await fedtune('checkpoints', 'list', dir);
      expect(list.code, list.out).to.equal(1);
      expect(list.err).to.equal(`fedtune: ${dir} is not a fedtune run directory (it has no versions/)\n`);
      const exp = await fedtune('checkpoints', 'export', dir, '0', path.join(root, 'out'));
      expect(exp.code).to.equal(1);
      expect(exp.err).to.contain('is not a fedtune run directory');
    }
    expect((await fs.readdir(root)).sort()).to.deep.equal(['plain']);
    expect(await fs.readdir(plain)).to.deep.equal([]);
  });

  it('checkpoints list on a run with a damaged pointer names fedtune recover and changes nothing', async () => {
    const run = path.join(root, 'run');
    const s = new FsCheckpointStore(run);
    for (const round of [0, 1, 2]) {
      await s.commit({
        adapter: smallAdapter(round),
        adapterConfig: {},
        manifest: {
          runId: 'r',
          round,
          attempt: 1,
          strategy: 'fedavg',
          participants: [],
          metrics: {},
          config: {},
          seeds: {},
          baseModel: { name: 'b', sha256: '0'.repeat(64) },
          protocolVersion: 1,
        },
      });
    }
    await fs.writeFile(path.join(run, 'latest'), 'v000000\n');
    await fs.mkdir(path.join(run, 'versions', '.tmp-v000003-abc'));
    const r = await fedtune('checkpoints', 'list', run);
    expect(r.code).to.equal(1);
    expect(r.err).to.contain(`latest names v000000, but versions v000001…v000002 exist beyond it`).and.contain(`fedtune recover ${run}`);
    // Read-only: the stray temporary is the coordinator's to remove, not list's.
    expect((await fs.readdir(path.join(run, 'versions'))).sort()).to.deep.equal(['.tmp-v000003-abc', 'v000000', 'v000001', 'v000002']);
  });

  it('verify: a directory with no run is a usage error (exit 2); a run with no version fails (exit 1), never "OK: 0 versions"', async () => {
    const none = await fedtune('verify', root);
    expect(none.code).to.equal(2);
    expect(none.err).to.equal(`fedtune verify: ${root} is not a fedtune run directory (it has no versions/)\n`);
    await fs.mkdir(path.join(root, 'versions'));
    const empty = await fedtune('verify', root);
    expect(empty.code).to.equal(1);
    expect(empty.out).to.contain('versions: holds no version directories: nothing was committed').and.not.contain('OK');
  });

  it('enroll refuses a run directory that does not exist or is not a run, unless told --create', async () => {
    const typo = path.join(root, 'typo');
    for (const args of [
      ['token', 'site-a', '--run', typo],
      ['add', 'site-a', Buffer.alloc(32, 1).toString('base64'), '--run', typo],
      ['list', '--run', typo],
      ['revoke', 'site-a', '--run', typo],
    ]) {
      const r = await fedtune('enroll', ...args);
      expect(r.code, args.join(' ')).to.equal(1);
      expect(r.out).to.equal('');
      expect(r.err).to.equal(
        `fedtune: run directory ${typo} does not exist: give the coordinator's run.dir, or pass --create to enrol sites before its first start\n`,
      );
    }
    const notRun = await fedtune('enroll', 'token', 'site-a', '--run', root);
    expect(notRun.code).to.equal(1);
    expect(notRun.err).to.contain(`${root} is not a fedtune run directory (no versions/, keys/ or clients.json)`);
    expect(await fs.readdir(root)).to.deep.equal([]);

    const made = await fedtune('enroll', 'token', 'site-a', '--run', typo, '--create');
    expect(made.code, made.err).to.equal(0);
    expect(made.out).to.match(/^ftj_[A-Za-z0-9_-]{32}\n$/);
    expect(await fs.readdir(typo)).to.deep.equal(['clients.json']);
    // Now a run (it has clients.json): no --create needed.
    expect((await fedtune('enroll', 'list', '--run', typo)).out).to.contain('token for site-a');
  });

  it('fedtune coordinator refuses a run whose pointer was deleted, and a run directory another coordinator holds', async () => {
    const run = path.join(root, 'run');
    const s = new FsCheckpointStore(run);
    for (const round of [0, 1, 2]) {
      await s.commit({
        adapter: smallAdapter(round),
        adapterConfig: {},
        manifest: {
          runId: 'r',
          round,
          attempt: 1,
          strategy: 'fedavg',
          participants: [],
          metrics: {},
          config: {},
          seeds: {},
          baseModel: { name: 'b', sha256: '0'.repeat(64) },
          protocolVersion: 1,
        },
      });
    }
    // Versions but no key file: a new key could not continue them, so none is made.
    const keyless = await fedtune('coordinator', '--run.dir', run, '--server.port', '0', '--auth.mode', 'tofu', '--log.level', 'silent');
    expect(keyless.code).to.equal(1);
    expect(keyless.err).to.equal(
      `fedtune: ${path.join(run, 'keys', 'coordinator.json')} is missing, but ${run} holds versions signed with it: restore it from a backup (a new key cannot continue this run)\n`,
    );
    expect((await fs.readdir(run)).sort()).to.deep.equal(['latest', 'versions']);
    await loadOrCreateCoordinatorKeys(path.join(run, 'keys', 'coordinator.json'));
    await fs.rm(path.join(run, 'latest'));
    const refused = await fedtune('coordinator', '--run.dir', run, '--server.port', '0', '--auth.mode', 'tofu', '--log.level', 'silent');
    expect(refused.code).to.equal(1);
    expect(refused.err)
      .to.contain(`fedtune: run ${run}: the latest pointer is missing, but versions v000000…v000002 exist.`)
      .and.contain(`Run \`fedtune recover ${run}\``);
    expect((await fs.readdir(run)).sort()).to.deep.equal(['keys', 'versions']);
    expect((await fs.readdir(path.join(run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001', 'v000002']);

    const held = await startCoordinator(path.join(root, 'held'));
    try {
      const second = await fedtune('coordinator', '--run.dir', held.runDir, '--server.port', '0', '--auth.mode', 'tofu', '--log.level', 'silent');
      expect(second.code).to.equal(1);
      expect(second.err).to.contain(`fedtune: run directory ${held.runDir} is in use by coordinator (pid ${process.pid} on ${os.hostname()}`);
    } finally {
      await held.coordinator.stop(200);
    }
  });

  it('fedtune --version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await fedtune(flag);
      expect(r.code).to.equal(0);
      expect(r.out).to.equal(`${version}\n`);
    }
  });
});
