// coordinator/checkpoints/fs-store.ts's crash recovery: an interrupted commit finished by a new store, a crash before
// the first pointer, and every state it refuses to open, changing nothing.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { ADAPTER_FILE, FsCheckpointStore, RecoveryNeededError, MANIFEST_FILE } from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import type { Manifest, VersionInput } from '../coordinator/checkpoints/types';
import { storeInput, storeRun } from './checkpoint-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

describe('checkpoints: FsCheckpointStore', () => {
  const d = storeRun();
  const { vdir, commitThree } = d;

  describe('crash recovery', () => {
    it('a new store finishes an interrupted commit: removes temporaries, makes the complete version one beyond latest latest, numbers on', async () => {
      const s = new FsCheckpointStore(d.run);
      await s.commit(storeInput(0));
      await s.commit(storeInput(1));
      // Crash A: v2 renamed into place but `latest` not yet moved. Made by committing v2 for real and then
      // putting the old pointer back, so v2 is a complete, valid version directory.
      const v2 = await s.commit(storeInput(2));
      await fs.writeFile(path.join(d.run, 'latest'), 'v000001\n');
      // Crash B: a later attempt died while writing its temporary directory; crash C: while writing the pointer.
      const tmp = path.join(d.run, 'versions', '.tmp-v000003-deadbeef0001');
      await fs.mkdir(tmp);
      await fs.writeFile(path.join(tmp, ADAPTER_FILE), 'partial');
      await fs.mkdir(path.join(d.run, 'versions', '.tmp-v000004-empty'));
      await fs.writeFile(path.join(d.run, '.latest.0123456789ab.tmp'), 'v0000');

      const warnings: string[] = [];
      const reopened = new FsCheckpointStore(d.run, { warn: (m) => warnings.push(m) });
      const latest = (await reopened.latest())!;
      expect(latest.manifest.version).to.equal(2);
      expect(latest.manifestSha256).to.equal(v2.manifestSha256);
      expect(await fs.readFile(path.join(d.run, 'latest'), 'utf8')).to.equal('v000002\n');
      expect((await fs.readdir(path.join(d.run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001', 'v000002']);
      expect((await fs.readdir(d.run)).sort()).to.deep.equal(['latest', 'versions']);
      expect(warnings.filter((w) => w.startsWith('removing incomplete version directory .tmp-'))).to.have.length(2);
      expect(warnings).to.include('removed .latest.0123456789ab.tmp, left by an interrupted move of the latest pointer');
      expect(warnings).to.include('finished the interrupted commit of v000002: it was complete on disk but the latest pointer had not moved');
      expect((await reopened.list()).map((m) => m.version)).to.deep.equal([0, 1, 2]);

      const next = await reopened.commit(storeInput(5));
      expect(next.manifest.version).to.equal(3);
      expect(next.manifest.round).to.equal(5);
      expect(next.manifest.parent).to.deep.equal({ version: 2, manifestSha256: v2.manifestSha256 });
      // Recovery happens once per store; a third store finds nothing left to do.
      const quiet: string[] = [];
      expect((await new FsCheckpointStore(d.run, { warn: (m) => quiet.push(m) }).list()).map((m) => m.version)).to.deep.equal([0, 1, 2, 3]);
      expect(quiet).to.deep.equal([]);
    });

    it('a crash before the first pointer: the complete v000000 becomes latest; no new run is started', async () => {
      const v0 = await new FsCheckpointStore(d.run).commit(storeInput(0));
      await fs.rm(path.join(d.run, 'latest'));
      const s = new FsCheckpointStore(d.run, { warn: () => undefined });
      expect((await s.latest())!.manifestSha256).to.equal(v0.manifestSha256);
      const ck = await s.commit(storeInput(1));
      expect(ck.manifest.version).to.equal(1);
      expect(ck.manifest.parent).to.deep.equal({ version: 0, manifestSha256: v0.manifestSha256 });
    });

    /** Every path under the run with its bytes' hash: what "nothing was changed" is checked against. */
    async function snapshot(): Promise<string[]> {
      const out: string[] = [];
      for (const e of await fs.readdir(d.run, { recursive: true, withFileTypes: true })) {
        const p = path.join(e.parentPath, e.name);
        out.push(`${path.relative(d.run, p)} ${e.isFile() ? sha(await fs.readFile(p)) : 'dir'}`);
      }
      return out.sort();
    }

    it('refuses to open, changing nothing, when the pointer is missing, behind by more than one, names no version or is garbled', async () => {
      await commitThree();
      await fs.writeFile(path.join(d.run, 'versions', 'README'), 'not a version');
      // Even temporaries stay: the refusal changes nothing at all.
      await fs.mkdir(path.join(d.run, 'versions', '.tmp-v000003-abcdef'));
      await fs.writeFile(path.join(d.run, '.latest.0123456789ab.tmp'), 'v00');
      const cases: [string | null, string][] = [
        [
          null,
          `run ${d.run}: the latest pointer is missing, but versions v000000…v000002 exist. The pointer only ever moves forward one version at a time, so this is damage`,
        ],
        ['v000000\n', `run ${d.run}: latest names v000000, but versions v000001…v000002 exist beyond it.`],
        ['v000007\n', `run ${d.run}: latest names v000007, which does not exist (versions run up to v000002).`],
        ['v0000\n', `${path.join(d.run, 'latest')} does not name a version: "v0000\\n".`],
      ];
      for (const [pointer, message] of cases) {
        if (pointer === null) await fs.rm(path.join(d.run, 'latest'));
        else await fs.writeFile(path.join(d.run, 'latest'), pointer);
        const before = await snapshot();
        for (const readOnly of [false, true]) {
          const err = await new FsCheckpointStore(d.run, { readOnly }).latest().catch((e: unknown) => e);
          expect(err, String(pointer)).to.be.instanceOf(RecoveryNeededError);
          expect((err as Error).message)
            .to.contain(message)
            .and.contain(`Nothing was changed. Run \`fedtune recover ${d.run}\``);
          const commit = await new FsCheckpointStore(d.run).commit(storeInput(9)).catch((e: unknown) => e);
          expect(commit).to.be.instanceOf(RecoveryNeededError);
          expect(await snapshot(), String(pointer)).to.deep.equal(before);
        }
      }
    });

    it('refuses a version one beyond latest that does not read back intact or does not link to latest', async () => {
      await commitThree();
      await fs.writeFile(path.join(d.run, 'latest'), 'v000001\n');
      const p = path.join(vdir(2), ADAPTER_FILE);
      const orig = await fs.readFile(p);
      const bad = Buffer.from(orig);
      bad[bad.length - 1] ^= 1;
      await fs.writeFile(p, bad);
      const before = await snapshot();
      const err = await new FsCheckpointStore(d.run).latest().catch((e: unknown) => e);
      expect(err).to.be.instanceOf(RecoveryNeededError);
      expect((err as Error).message).to.contain(
        `run ${d.run}: v000002 is beyond the latest pointer; it cannot be taken as an interrupted commit: v000002/${ADAPTER_FILE}: sha256`,
      );
      expect(await snapshot()).to.deep.equal(before);
      // Intact, but its parent is not v000001 as written.
      await fs.writeFile(p, orig);
      const m1 = JSON.parse(await fs.readFile(path.join(vdir(1), MANIFEST_FILE), 'utf8')) as Manifest;
      await fs.writeFile(path.join(vdir(1), MANIFEST_FILE), stableJson({ ...m1, metrics: { edited: 1 } }));
      const err2 = await new FsCheckpointStore(d.run).latest().catch((e: unknown) => e);
      expect(err2).to.be.instanceOf(RecoveryNeededError);
      expect((err2 as Error).message).to.contain(`v000002/${MANIFEST_FILE}: its parent link does not match v000001/${MANIFEST_FILE}`);
    });

    it('a failed commit (bad input) leaves no version and does not block the next commit', async () => {
      const s = new FsCheckpointStore(d.run);
      await s.commit(storeInput(0));
      const broken: VersionInput = { ...storeInput(1), adapter: [{ name: 'x', dtype: 'float32', shape: [3], data: new Float32Array(2) }] };
      const results = await Promise.allSettled([s.commit(broken), s.commit(storeInput(1))]);
      expect(results[0].status).to.equal('rejected');
      expect(results[1].status).to.equal('fulfilled');
      expect((results[1] as PromiseFulfilledResult<{ manifest: Manifest }>).value.manifest.version).to.equal(1);
      expect((await fs.readdir(path.join(d.run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001']);
    });
  });
});
