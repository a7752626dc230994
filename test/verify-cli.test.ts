// `fedtune verify` end to end: the built CLI's exit codes (0 clean, 1 naming the damaged file, 2 on usage errors),
// and a real Coordinator round whose versions verify under the coordinator's own key.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ADAPTER_FILE, MANIFEST_FILE } from '../coordinator/checkpoints/fs-store';
import { verifyRun, type VerifyResult } from '../coordinator/checkpoints/verify';
import type { Manifest } from '../coordinator/checkpoints/types';
import { FederationClient } from '../client-sdk/client';
import { ConstantTrainer, startCoordinator } from './harness';
import { KEY_A, KEY_B, b64, signingRun } from './verify-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('signed checkpoints and fedtune verify', function () {
  this.timeout(60_000);
  const d = signingRun();
  const { file, commit } = d;

  describe('fedtune verify (the built CLI)', () => {
    const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
    const cli = (args: string[]): Promise<{ code: number; out: string }> =>
      promisify(execFile)(process.execPath, [CLI, 'verify', ...args], { timeout: 30_000 }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );

    it('exits 0 on a clean run, 1 naming the damaged file, 2 on usage errors', async () => {
      await commit(3);
      const ok = await cli([d.run]);
      expect(ok.code, ok.out).to.equal(0);
      expect(ok.out).to.contain('v000002 ok').and.contain('OK: 3 versions');
      const keyFile = path.join(path.dirname(d.run), 'pub.txt');
      await fs.writeFile(keyFile, b64(KEY_A.publicKey) + '\n');
      expect((await cli([d.run, '--key', b64(KEY_A.publicKey)])).code).to.equal(0);
      expect((await cli([d.run, '--key', keyFile])).code).to.equal(0);
      const wrongKey = await cli([d.run, '--key', b64(KEY_B.publicKey)]);
      expect(wrongKey.code).to.equal(1);
      expect(wrongKey.out).to.contain(`v000001/manifest.sig: signed by key ${KEY_A.keyId}`);

      const p = file(1, ADAPTER_FILE);
      const bad = await fs.readFile(p);
      bad[bad.length - 3] ^= 0x40;
      await fs.writeFile(p, bad);
      const damaged = await cli([d.run]);
      expect(damaged.code, damaged.out).to.equal(1);
      expect(damaged.out)
        .to.contain('v000001 FAILED (1 problem)')
        .and.contain(`v000001/${ADAPTER_FILE}: sha256`)
        .and.contain('FAILED: 1 problem in 3 versions');
      const json = await cli([d.run, '--json']);
      expect(json.code).to.equal(1);
      const parsed = JSON.parse(json.out) as VerifyResult;
      expect(parsed.problems.map((x) => [x.version, x.file, x.kind])).to.deep.equal([[1, ADAPTER_FILE, 'file-hash']]);

      for (const args of [
        [],
        [path.join(d.run, 'nope')],
        [d.run, '--key', 'not-a-key'],
        [d.run, '--key', path.join(d.run, 'latest')],
        [d.run, '--no-such-flag'],
      ]) {
        const r = await cli(args);
        expect(r.code, `${args.join(' ')}: ${r.out}`).to.equal(2);
      }
    });
  });

  describe('a Coordinator run', () => {
    it('signs every version with the key it created at start (0600), which verify accepts pinned', async () => {
      const h = await startCoordinator(path.dirname(d.run), { total: 1 });
      const keyFile = path.join(h.runDir, 'keys', 'coordinator.json');
      const clients = ['a', 'b'].map(
        (name, i) =>
          new FederationClient({ address: h.address, name, trainer: new ConstantTrainer(0.1 * (i + 1)), backoff: { initialMs: 20, maxMs: 200, factor: 2 } }),
      );
      try {
        const runs = clients.map((c) => c.run());
        const final = await h.coordinator.done;
        await Promise.all(runs);
        expect(final.manifest.version).to.equal(1);
      } finally {
        for (const c of clients) await c.stop().catch(() => undefined);
        await h.coordinator.stop(200);
      }
      expect((await fs.stat(keyFile)).mode & 0o777).to.equal(0o600);
      expect((await fs.stat(path.dirname(keyFile))).mode & 0o777).to.equal(0o700);
      const keys = h.coordinator.keys;
      const stored = JSON.parse(await fs.readFile(keyFile, 'utf8')) as Record<string, string>;
      expect(stored.signPublicKey).to.equal(b64(keys.sign.publicKey));
      const r = await verifyRun(h.runDir, { publicKey: keys.sign.publicKey });
      expect(r.problems).to.deep.equal([]);
      expect(r).to.include({ ok: true, versions: 2, latest: 1 });
      const manifest = JSON.parse(await fs.readFile(path.join(h.runDir, 'versions', 'v000001', MANIFEST_FILE), 'utf8')) as Manifest;
      expect(Object.keys(manifest.config)).to.not.include('security');
    });

    it('refuses a key file inside versions/', async () => {
      const dir = path.dirname(d.run);
      const err = await startCoordinator(dir, {}, { security: { keyFile: path.join(dir, 'versions', 'k.json') } }).catch((e: unknown) => e);
      expect((err as Error).message).to.equal(`security.keyFile ${path.join(dir, 'versions', 'k.json')} must not be inside ${path.join(dir, 'versions')}`);
    });
  });
});
