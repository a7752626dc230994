// coordinator/checkpoints/fs-store.ts's integrity checks: a flipped byte, a damaged manifest or a missing file makes
// a read fail naming the file, and a commit on top of a damaged latest version changes nothing.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_FILE,
  CheckpointIntegrityError,
  type FsCheckpointStore,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  versionDirName,
} from '../coordinator/checkpoints/fs-store';
import { storeInput, storeRun } from './checkpoint-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

describe('checkpoints: FsCheckpointStore', () => {
  const d = storeRun();
  const { vdir, commitThree } = d;

  describe('integrity', () => {
    async function flipAndRead(store: FsCheckpointStore, v: number, file: string, at: number): Promise<unknown> {
      const p = path.join(vdir(v), file);
      const orig = await fs.readFile(p);
      const bad = Buffer.from(orig);
      bad[at] ^= 0x01;
      await fs.writeFile(p, bad);
      try {
        return await store.read(v).then(
          () => null,
          (e: unknown) => e,
        );
      } finally {
        await fs.writeFile(p, orig);
      }
    }

    it('a flipped byte anywhere in the adapter or its config makes read() throw naming the file', async () => {
      const s = await commitThree();
      for (let v = 0; v < 3; v++) {
        for (const file of [ADAPTER_FILE, ADAPTER_CONFIG_FILE]) {
          const size = (await fs.stat(path.join(vdir(v), file))).size;
          const positions = [0, 1, 7, 8, Math.floor(size / 2), size - 5, size - 1];
          for (const at of positions) {
            const err = await flipAndRead(s, v, file, at);
            expect(err, `${file}@${at}`).to.be.instanceOf(CheckpointIntegrityError);
            expect((err as Error).message).to.match(
              new RegExp(`^${versionDirName(v)}/${file.replace('.', '\\.')}: sha256 [0-9a-f]{64} does not match the manifest's [0-9a-f]{64}$`),
            );
          }
        }
      }
      // Restored bytes read again, and latest() was never disturbed.
      expect((await s.latest())!.manifest.version).to.equal(2);
      for (let v = 0; v < 3; v++) await s.read(v);
    });

    it("a flipped byte anywhere in an earlier version's manifest breaks its child's parent link and names manifest.json", async () => {
      const s = await commitThree();
      for (const v of [0, 1]) {
        const size = (await fs.stat(path.join(vdir(v), MANIFEST_FILE))).size;
        // Every 7th byte (covering keys, values, hashes, punctuation and whitespace) plus the last one.
        for (const at of [...Array.from({ length: Math.ceil(size / 7) }, (_, i) => i * 7), size - 1]) {
          const err = await flipAndRead(s, v, MANIFEST_FILE, at);
          expect(err, `v${v} manifest byte ${at}`).to.be.instanceOf(CheckpointIntegrityError);
          expect((err as Error).message, `v${v} manifest byte ${at}`).to.contain(`${versionDirName(v)}/${MANIFEST_FILE}:`);
        }
      }
      const err = await flipAndRead(s, 0, MANIFEST_FILE, 40);
      expect((err as Error).message).to.match(
        /^v000000\/manifest\.json: sha256 [0-9a-f]{64} does not match the parent link [0-9a-f]{64} in v000001\/manifest\.json$/,
      );
    });

    it("damage to the latest manifest's structure or identity names manifest.json", async () => {
      const s = await commitThree();
      const p = path.join(vdir(2), MANIFEST_FILE);
      const orig = await fs.readFile(p, 'utf8');
      const cases: [string, string][] = [
        [orig.slice(0, -3), 'v000002/manifest.json: not valid JSON'],
        [orig.replace('{', '['), 'v000002/manifest.json: not valid JSON'],
        [orig.replace('"version": 2', '"version": 3'), `v000002/manifest.json: not a ${MANIFEST_FORMAT} manifest of version 2`],
        [orig.replace(MANIFEST_FORMAT, 'fedtune.checkpoint/2'), 'v000002/manifest.json: not a'],
        [orig.replace('"files": {', '"filez": {'), 'v000002/manifest.json: not a'],
        ['null\n', 'v000002/manifest.json: not a'],
      ];
      for (const [text, msg] of cases) {
        await fs.writeFile(p, text);
        const err = await s.read(2).catch((e: unknown) => e);
        expect(err, msg).to.be.instanceOf(CheckpointIntegrityError);
        expect((err as Error).message).to.contain(msg);
        expect(await s.latest().catch((e: unknown) => e)).to.be.instanceOf(CheckpointIntegrityError);
      }
      // A changed file hash in the manifest surfaces as that file not matching.
      const h = sha(await fs.readFile(path.join(vdir(2), ADAPTER_FILE)));
      await fs.writeFile(p, orig.replace(h, h.slice(0, -1) + (h.endsWith('0') ? '1' : '0')));
      expect(((await s.read(2).catch((e: unknown) => e)) as Error).message).to.contain(`v000002/${ADAPTER_FILE}: sha256 ${h} does not match`);
      await fs.writeFile(p, orig);
      expect((await s.read(2)).manifest.version).to.equal(2);
    });

    it('a missing file listed in the manifest makes read() fail naming it', async () => {
      const s = await commitThree();
      await fs.rm(path.join(vdir(1), ADAPTER_CONFIG_FILE));
      const err = (await s.read(1).catch((e: unknown) => e)) as Error;
      expect(err).to.be.instanceOf(Error);
      expect(err.message).to.contain(ADAPTER_CONFIG_FILE);
    });

    it('a commit on top of a damaged latest version fails and leaves the run as it was', async () => {
      const s = await commitThree();
      const p = path.join(vdir(2), ADAPTER_FILE);
      const orig = await fs.readFile(p);
      const bad = Buffer.from(orig);
      bad[bad.length - 1] ^= 0x80;
      await fs.writeFile(p, bad);
      const err = await s.commit(storeInput(3)).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CheckpointIntegrityError);
      expect(await fs.readFile(path.join(d.run, 'latest'), 'utf8')).to.equal('v000002\n');
      expect((await fs.readdir(path.join(d.run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001', 'v000002']);
      await fs.writeFile(p, orig);
      expect((await s.commit(storeInput(3))).manifest.version).to.equal(3);
    });
  });
});
