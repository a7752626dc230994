// Crash points, in process: a commit, a coordinator key file's first write and a site identity's first write
// are stopped at EVERY step that changes the disk (the stores' crash hook, proto/durable-file.ts), then the
// directory is opened again as a restarted process would. After each: nothing committed is lost, at most the
// interrupted version is added (never twice), the chain verifies, no temporary is left, a key file is either
// absent or complete, and the next commit works. A thrown exception leaves the disk exactly as SIGKILL at that
// step would (no step is undone on the way out); test/crash-restart.test.ts kills a real process.
//
// These fail if the commit moves `latest` before the rename, writes `latest` in place, or writes the version
// without its .tmp directory (each tried by hand when this file was written).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { FsCheckpointStore, versionDirName } from '../coordinator/checkpoints/fs-store';
import { manifestSigner } from '../coordinator/checkpoints/signature';
import { verifyRun } from '../coordinator/checkpoints/verify';
import { loadOrCreateCoordinatorKeys } from '../coordinator/keys';
import { loadOrCreateIdentity } from '../client-sdk/identity';
import type { CrashHook } from '../proto/durable-file';
import type { VersionInput } from '../coordinator/checkpoints/types';
import { smallAdapter, tempDir } from './harness';
import { Coordinator } from '../coordinator/coordinator';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import pino from 'pino';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

class Crash extends Error {}

/** A hook that records every step and throws at the `n`-th (1-based); n = Infinity never throws. */
function crashAt(n: number): { hook: CrashHook; points: string[] } {
  const points: string[] = [];
  return {
    points,
    hook: (point) => {
      points.push(point);
      if (points.length === n) throw new Crash(point);
    },
  };
}

function input(round: number): VersionInput {
  return {
    adapter: smallAdapter(round),
    adapterConfig: { peft_type: 'LORA' },
    manifest: {
      runId: 'crash',
      round,
      attempt: 1,
      strategy: 'fedavg',
      participants: [],
      metrics: {},
      config: {},
      seeds: {},
      baseModel: { name: 't', sha256: '0'.repeat(64) },
      protocolVersion: 1,
    },
  };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Every file below `dir` whose name marks it as a temporary of a durable write or a commit. */
async function temporaries(dir: string): Promise<string[]> {
  const all = await fs.readdir(dir, { recursive: true });
  return all.filter((p) => /(^|\/)\.tmp-|\.[0-9a-f]{12}\.tmp$/.test(p));
}

describe('crash points: every step of a commit and of a key file first write', function () {
  this.timeout(120_000);
  let root: string;
  before(async () => {
    root = await tempDir('crash-points');
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  for (const committed of [2, 0]) {
    const target = versionDirName(committed);
    const title =
      committed === 0
        ? 'the first commit (v000000) stopped at each step: the restarted store has nothing or the complete v000000'
        : 'a commit stopped at each step: the restarted store has v000001 or the complete v000002';
    it(`${title}, a verified chain, no temporaries`, async () => {
      const keys = await loadOrCreateCoordinatorKeys(path.join(root, 'k.json'));
      const signer = manifestSigner(keys.sign);
      const base = path.join(root, `base-${committed}`);
      const s = new FsCheckpointStore(base, { signer });
      for (let r = 0; r < committed; r++) await s.commit(input(r));
      await s.open(); // an empty run still has versions/
      const before = await Promise.all(
        Array.from({ length: committed }, (_, v) => fs.readFile(path.join(base, 'versions', versionDirName(v), 'manifest.json'))),
      );

      const steps = crashAt(Infinity);
      await new FsCheckpointStore(await copy(base, `all-${committed}`), { signer, crashHook: steps.hook }).commit(input(committed));
      const outcomes: string[] = [];
      for (let n = 1; n <= steps.points.length; n++) {
        const dir = await copy(base, `n${n}-${committed}`);
        const crash = crashAt(n);
        const err = await new FsCheckpointStore(dir, { signer, crashHook: crash.hook }).commit(input(committed)).catch((e: unknown) => e);
        expect(err, `step ${n}`).to.be.instanceOf(Crash);
        const point = crash.points[n - 1];
        // What was written before the crash, for the "not committed twice, not changed" check.
        const written = await fs.readFile(path.join(dir, 'versions', target, 'manifest.json')).catch(() => null);

        // The restart: a new store on the same directory, as a new coordinator process opens it.
        const again = new FsCheckpointStore(dir, { signer, warn: () => undefined });
        const latest = await again.latest();
        const v = latest === null ? -1 : latest.manifest.version;
        outcomes.push(`${point}->v${v}`);
        expect(await temporaries(dir), point).to.deep.equal([]);
        expect((await fs.readdir(path.join(dir, 'versions'))).sort(), point).to.deep.equal(Array.from({ length: v + 1 }, (_, i) => versionDirName(i)));
        for (const [i, m] of before.entries())
          expect(sha(await fs.readFile(path.join(dir, 'versions', versionDirName(i), 'manifest.json'))), point).to.equal(sha(m));
        if (v === committed) expect(sha(await fs.readFile(path.join(dir, 'versions', target, 'manifest.json'))), point).to.equal(sha(written!));
        if (v >= 0) expect((await verifyRun(dir, { publicKey: keys.sign.publicKey })).problems, point).to.deep.equal([]);
        // The run continues: the next commit is the next version, chained to whatever survived.
        const next = await again.commit(input(9));
        expect(next.manifest.version, point).to.equal(v + 1);
        expect(next.manifest.parent?.manifestSha256 ?? null, point).to.equal(latest?.manifestSha256 ?? null);
        expect((await verifyRun(dir, { publicKey: keys.sign.publicKey })).ok, point).to.equal(true);
        await fs.rm(dir, { recursive: true });
      }
      // The order the commit keeps (checked last: the crash loop above is what shows the order is safe).
      expect(steps.points).to.deep.equal([
        'commit:tmp:mkdir',
        ...['adapter_model.safetensors', 'adapter_config.json', 'manifest.json', 'manifest.sig'].flatMap(() => [
          'commit:tmp:open',
          'commit:tmp:write',
          'commit:tmp:fsync',
        ]),
        'commit:tmp:fsync-dir',
        'commit:renamed',
        'commit:versions:fsync-dir',
        'commit:pointer:open',
        'commit:pointer:write',
        'commit:pointer:fsync',
        'commit:pointer:rename',
        'commit:pointer:fsync-dir',
      ]);
      // Before the rename the interrupted version is dropped; from the rename on it is complete and kept.
      const renamed = steps.points.indexOf('commit:renamed');
      expect(outcomes).to.deep.equal(steps.points.map((p, i) => `${p}->v${i < renamed ? committed - 1 : committed}`));
    });
  }

  it('the latest pointer is replaced by a rename, never rewritten in place (a reader holding it open sees the old version)', async () => {
    const dir = path.join(root, 'inode');
    const s = new FsCheckpointStore(dir);
    await s.commit(input(0));
    await s.commit(input(1));
    const fh = await fs.open(path.join(dir, 'latest'), 'r');
    try {
      const ino = (await fh.stat()).ino;
      await s.commit(input(2));
      expect(await fh.readFile('utf8'), 'the old file is unchanged').to.equal('v000001\n');
      expect((await fs.stat(path.join(dir, 'latest'))).ino).to.not.equal(ino);
      expect(await fs.readFile(path.join(dir, 'latest'), 'utf8')).to.equal('v000002\n');
    } finally {
      await fh.close();
    }
  });

  for (const kind of ['coordinator key', 'site identity'] as const) {
    it(`a ${kind} file's first write stopped at each step: a restart finds no file or the complete one, never an empty one`, async () => {
      const load = (file: string, hook?: CrashHook): Promise<string> =>
        kind === 'coordinator key' ? loadOrCreateCoordinatorKeys(file, hook).then((k) => k.keyId) : loadOrCreateIdentity(file, hook).then((k) => k.keyId);
      const all = crashAt(Infinity);
      await load(path.join(root, `${kind}-all`, 'key.json'), all.hook);
      for (let n = 1; n <= all.points.length; n++) {
        const dir = path.join(root, `${kind}-${n}`);
        const file = path.join(dir, 'key.json');
        const crash = crashAt(n);
        expect(await load(file, crash.hook).catch((e: unknown) => e)).to.be.instanceOf(Crash);
        const point = crash.points[n - 1];
        const left = await fs.readFile(file, 'utf8').catch(() => null);
        // A complete key file from the link on; before it, none.
        expect(left === null, point).to.equal(n <= 3); // open, write, fsync of the temporary
        const id = await load(file);
        expect(await fs.readdir(dir), point).to.deep.equal(['key.json']);
        expect((await fs.stat(file)).mode & 0o777, point).to.equal(0o600);
        if (left !== null) {
          expect(await fs.readFile(file, 'utf8'), `${point}: the key survived as written`).to.equal(left);
          expect(JSON.parse(left).keyId, point).to.equal(id);
        }
        expect(await load(file), point).to.equal(id);
      }
      // The steps a first write takes (checked last: the loop above is what shows each is safe to die at).
      expect(all.points).to.deep.equal(['key-file:open', 'key-file:write', 'key-file:fsync', 'key-file:link', 'key-file:unlink', 'key-file:fsync-dir']);
    });
  }

  it('an empty or damaged coordinator key file stops the coordinator with what to do, and is left as it is', async () => {
    const cases: [string, string][] = [
      ['', 'is empty (0 bytes): a write of it was interrupted and it holds no key'],
      ['{"format": "fedtune.coordin', 'is damaged: not valid JSON'],
    ];
    for (const [text, says] of cases) {
      const run = await fs.mkdtemp(path.join(root, 'badkey-'));
      const file = path.join(run, 'keys', 'coordinator.json');
      await fs.mkdir(path.dirname(file), { mode: 0o700 });
      await fs.writeFile(file, text, { mode: 0o600 });
      const c = new Coordinator({
        config: classicConfig({ overrides: { server: { port: 0 }, run: { dir: run }, auth: { mode: 'tofu' } } }),
        initialAdapter: () => smallAdapter(0),
        adapterConfig: {},
        baseModel: { name: 't', sha256: '0'.repeat(64) },
        logger: pino({ level: 'silent' }),
      });
      const err = await c.start().then(
        async () => (await c.stop(100), null),
        (e: unknown) => e,
      );
      expect((err as Error).message).to.equal(
        `${file} ${says}${text === '' ? '' : ' (' + jsonError(text) + ')'}. To recover, restore it from a backup if any version of this run was committed (every version is signed with this key, and a coordinator with another key refuses to continue them); if none was, move it aside and start again to create a new key`,
      );
      expect(await fs.readFile(file, 'utf8')).to.equal(text);
      expect(await fs.readdir(run)).to.deep.equal(['keys']);
    }
  });
});

function jsonError(text: string): string {
  try {
    JSON.parse(text);
  } catch (e) {
    return (e as Error).message;
  }
  return '';
}

async function copy(from: string, name: string): Promise<string> {
  const to = path.join(path.dirname(from), name);
  await fs.cp(from, to, { recursive: true });
  return to;
}
