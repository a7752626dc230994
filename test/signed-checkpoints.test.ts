// Signed checkpoints (checkpoints/signature.ts, the signing FsCheckpointStore): manifest.sig's format, what the
// signing store refuses, its signer taken once, manifest.sig exported with the version.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import { CheckpointIntegrityError, FsCheckpointStore, MANIFEST_FILE } from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import { MANIFEST_SIG_FILE } from '../coordinator/checkpoints/signature';
import { verifyRun } from '../coordinator/checkpoints/verify';
import { KEY_A, KEY_B, SIGNED_FILES, b64, sha, signingRun, verifyInput } from './verify-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('signed checkpoints and fedtune verify', function () {
  this.timeout(60_000);
  const d = signingRun();
  const { vdir, file, commit } = d;

  describe('the signing store', () => {
    it('writes manifest.sig: Ed25519 over "fedtune/manifest/v1\\0" || manifest.json, with key id, public key and manifest hash', async () => {
      await commit(2);
      for (const v of [0, 1]) {
        expect((await fs.readdir(vdir(v))).sort()).to.deep.equal([...SIGNED_FILES].sort());
        const manifest = await fs.readFile(file(v, MANIFEST_FILE));
        const text = await fs.readFile(file(v, MANIFEST_SIG_FILE), 'utf8');
        const sig = JSON.parse(text) as Record<string, string>;
        expect(text).to.equal(stableJson(sig));
        expect(sig).to.deep.equal({
          format: 'fedtune.manifest-sig/1',
          algorithm: 'ed25519',
          keyId: sha(KEY_A.publicKey).slice(0, 16),
          publicKey: b64(KEY_A.publicKey),
          manifestSha256: sha(manifest),
          signature: sig.signature,
        });
        const signature = Buffer.from(sig.signature, 'base64');
        const message = Buffer.concat([Buffer.from('fedtune/manifest/v1\0', 'utf8'), manifest]);
        expect(nacl.sign.detached.verify(message, signature, KEY_A.publicKey)).to.equal(true);
        // Domain separation: the same signature is not one over the bare manifest.
        expect(nacl.sign.detached.verify(manifest, signature, KEY_A.publicKey)).to.equal(false);
      }
    });

    it('refuses a latest manifest changed in a free-text field (the gap no parent link covered), with or without the key', async () => {
      await commit(3);
      const p = file(2, MANIFEST_FILE);
      const text = await fs.readFile(p, 'utf8');
      await fs.writeFile(p, text.replace('hospital-site-2', 'hospital-site-3'));
      for (const s of [new FsCheckpointStore(d.run, { signer: KEY_A }), new FsCheckpointStore(d.run)]) {
        for (const err of [await s.read(2).catch((e: unknown) => e), await s.latest().catch((e: unknown) => e)]) {
          expect(err).to.be.instanceOf(CheckpointIntegrityError);
          expect((err as Error).message).to.match(/^v000002\/manifest\.json: sha256 [0-9a-f]{64} does not match the signed [0-9a-f]{64} in manifest\.sig$/);
        }
      }
    });

    it('refuses, when it signs, a version that is unsigned or signed by another key; without a key it reads an unsigned run', async () => {
      await commit(2);
      const other = await new FsCheckpointStore(d.run, { signer: KEY_B }).latest().catch((e: unknown) => e);
      expect(other).to.be.instanceOf(CheckpointIntegrityError);
      expect((other as Error).message).to.equal(`v000001/manifest.sig: signed by key ${KEY_A.keyId}, not by this coordinator's key ${KEY_B.keyId}`);
      // A commit on top is refused too, and writes nothing.
      expect(await new FsCheckpointStore(d.run, { signer: KEY_B }).commit(verifyInput(2)).catch((e: unknown) => e)).to.be.instanceOf(CheckpointIntegrityError);
      expect((await fs.readdir(path.join(d.run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001']);
      await fs.rm(file(0, MANIFEST_SIG_FILE));
      const missing = await new FsCheckpointStore(d.run, { signer: KEY_A }).read(0).catch((e: unknown) => e);
      expect((missing as Error).message).to.equal('v000000/manifest.sig: missing; this store signs every version and refuses an unsigned one');
      expect((await new FsCheckpointStore(d.run).read(0)).manifest.version).to.equal(0);
      const sigText = await fs.readFile(file(1, MANIFEST_SIG_FILE), 'utf8');
      await fs.writeFile(file(1, MANIFEST_SIG_FILE), sigText.replace('"ed25519"', '"ed25519x"'));
      expect(((await new FsCheckpointStore(d.run).read(1).catch((e: unknown) => e)) as Error).message).to.contain(
        'v000001/manifest.sig: not a fedtune.manifest-sig/1 signature: algorithm',
      );
    });

    it('takes its signer before first use only, and exports manifest.sig with the version', async () => {
      const s = await commit(2);
      expect(() => s.setSigner(KEY_B)).to.throw('before the store is first used');
      expect(() => new FsCheckpointStore(d.run, { signer: { ...KEY_A, keyId: KEY_B.keyId } })).to.throw('is not the id of its public key');
      const out = path.join(path.dirname(d.run), 'export');
      await s.export(1, out);
      expect((await fs.readdir(out)).sort()).to.deep.equal([...SIGNED_FILES].sort());
      expect((await verifyRun(d.run)).ok).to.equal(true);
    });
  });
});
