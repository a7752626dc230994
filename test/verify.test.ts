// `fedtune verify`'s verifyRun (checkpoints/verify.ts) on signed runs: every flipped byte in any file of any version
// is reported against exactly that version and file, as are broken parent links, gaps, a wrong key and a damaged
// latest pointer. The signing store: signed-checkpoints.test.ts; the CLI and a real coordinator's run:
// verify-cli.test.ts. Shared set-up: test/verify-kit.ts.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ADAPTER_CONFIG_FILE, ADAPTER_FILE, MANIFEST_FILE, versionDirName } from '../coordinator/checkpoints/fs-store';
import { MANIFEST_SIG_FILE } from '../coordinator/checkpoints/signature';
import { verifyRun } from '../coordinator/checkpoints/verify';
import { formatVerifyReport } from '../coordinator/checkpoints/verify-report';
import { KEY_A, KEY_B, SIGNED_FILES, b64, sha, signingRun, where } from './verify-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('signed checkpoints and fedtune verify', function () {
  this.timeout(60_000);
  const d = signingRun();
  const { vdir, file, commit, resign } = d;

  describe('verifyRun', () => {
    it('passes a clean signed run, trusting the key of v000000 or a pinned one', async () => {
      await commit(3);
      const r = await verifyRun(d.run);
      expect(r.problems).to.deep.equal([]);
      expect(r).to.include({ ok: true, versions: 3, latest: 2 });
      expect(r.key).to.deep.equal({ keyId: KEY_A.keyId, publicKey: b64(KEY_A.publicKey), source: 'v000000/manifest.sig', pinned: false });
      expect(r.results).to.deep.equal([0, 1, 2].map((v) => ({ version: v, present: true, ok: true })));
      const text = formatVerifyReport(r).split('\n');
      expect(text[0]).to.equal(
        `key ${KEY_A.keyId} (ed25519 ${b64(KEY_A.publicKey)}) trusted from v000000/manifest.sig; every version must be signed by it (pin it with --key)`,
      );
      expect(text.slice(1)).to.deep.equal([
        'v000000 ok',
        'v000001 ok',
        'v000002 ok',
        'OK: 3 versions (v000000…v000002), latest v000002: chain, file hashes and signatures verified',
      ]);
      const pinned = await verifyRun(d.run, { publicKey: KEY_A.publicKey });
      expect(pinned.ok).to.equal(true);
      expect(pinned.key!.pinned).to.equal(true);
    });

    it('reports a flipped byte in any file of any version against exactly that version and file', async () => {
      await commit(3);
      const latestManifest = await fs.readFile(file(2, MANIFEST_FILE), 'utf8');
      const freeText = latestManifest.indexOf('hospital-site-2') + 3;
      let flips = 0;
      for (let v = 0; v < 3; v++) {
        for (const f of SIGNED_FILES) {
          const p = file(v, f);
          const orig = await fs.readFile(p);
          // Spread over each file (keys, values, hashes, punctuation, whitespace), densest in the latest
          // signature; tweetnacl verifies at ~6 ms a version, so not every byte of every file.
          const step = f === ADAPTER_FILE ? Math.floor(orig.length / 9) : f === MANIFEST_SIG_FILE ? (v === 2 ? 5 : 19) : f === MANIFEST_FILE ? 29 : 7;
          const offsets = new Set([0, orig.length - 1, ...Array.from({ length: Math.ceil(orig.length / step) }, (_, i) => i * step)]);
          if (v === 2 && f === MANIFEST_FILE) offsets.add(freeText);
          for (const at of offsets) {
            const bad = Buffer.from(orig);
            bad[at] ^= 0x01;
            await fs.writeFile(p, bad);
            const r = await verifyRun(d.run);
            const label = `${versionDirName(v)}/${f} byte ${at}`;
            expect(r.ok, label).to.equal(false);
            expect(r.problems.length, label).to.be.greaterThan(0);
            expect(
              where(r).filter((w) => !w.startsWith(`${v}:${f}:`)),
              `${label}: ${r.problems.map((x) => x.message).join(' | ')}`,
            ).to.deep.equal([]);
            expect(
              r.results.filter((x) => !x.ok).map((x) => x.version),
              label,
            ).to.deep.equal([v]);
            flips++;
          }
          await fs.writeFile(p, orig);
        }
      }
      expect(flips).to.be.greaterThan(200);
      expect((await verifyRun(d.run)).ok).to.equal(true);
    });

    it('names the free-text change in the latest manifest as a manifest changed after signing', async () => {
      await commit(3);
      const text = await fs.readFile(file(2, MANIFEST_FILE), 'utf8');
      await fs.writeFile(file(2, MANIFEST_FILE), text.replace('nothing but the signature', 'nothing but the signaturE'));
      const r = await verifyRun(d.run);
      expect(where(r)).to.deep.equal(['2:manifest.json:manifest-hash']);
      expect(r.problems[0].message).to.match(
        /^v000002\/manifest\.json: sha256 [0-9a-f]{12}… does not match the signed [0-9a-f]{12}… in manifest\.sig: the manifest changed after it was signed/,
      );
      expect(r.problems[0].actual).to.equal(sha(await fs.readFile(file(2, MANIFEST_FILE))));
    });

    it('reports a file hash mismatch with expected and actual digests', async () => {
      await commit(2);
      await fs.appendFile(file(1, ADAPTER_CONFIG_FILE), ' ');
      const r = await verifyRun(d.run);
      expect(where(r)).to.deep.equal([`1:${ADAPTER_CONFIG_FILE}:file-hash`]);
      const p = r.problems[0];
      expect(p.actual).to.equal(sha(await fs.readFile(file(1, ADAPTER_CONFIG_FILE))));
      expect(p.message).to.equal(
        `v000001/${ADAPTER_CONFIG_FILE}: sha256 ${p.actual!.slice(0, 12)}… does not match the manifest's ${p.expected!.slice(0, 12)}…`,
      );
    });

    it("checks the manifest's piece hashes (parallel downloads) against the adapter file, even when re-signed", async () => {
      await commit(2);
      expect(where(await verifyRun(d.run))).to.deep.equal([]);
      await resign(1, (m) => ((m.pieces as { sha256: string[] }).sha256[0] = 'e'.repeat(64)), KEY_A);
      let r = await verifyRun(d.run);
      expect(where(r)).to.deep.equal([`1:${ADAPTER_FILE}:file-hash`]);
      expect(r.problems[0].message).to.match(
        /^v000001\/adapter_model\.safetensors: piece 0: sha256 [0-9a-f]{12}… does not match the manifest's pieces \(eeeeeeeeeeee…; 1 listed, 1 in the file\)$/,
      );
      await resign(1, (m) => (m.pieces = { bytes: -1, sha256: [] }), KEY_A);
      r = await verifyRun(d.run);
      expect(where(r)).to.deep.equal(['1:manifest.json:manifest']);
    });

    it('detects a broken parent link even when the manifest is re-signed with the right key', async () => {
      await commit(3);
      const wrong = 'f'.repeat(64);
      await resign(2, (m) => ((m.parent as Record<string, unknown>).manifestSha256 = wrong), KEY_A);
      let r = await verifyRun(d.run);
      expect(where(r)).to.deep.equal(['2:manifest.json:parent-link']);
      expect(r.problems[0].message).to.equal(
        `v000002/manifest.json: parent.manifestSha256 ${wrong.slice(0, 12)}… does not match the sha256 ${sha(await fs.readFile(file(1, MANIFEST_FILE))).slice(0, 12)}… of v000001/manifest.json`,
      );
      // Signed by another key instead: the link and the signature are both reported.
      await resign(2, () => undefined, KEY_B);
      r = await verifyRun(d.run);
      expect(where(r)).to.deep.equal(['2:manifest.sig:signature-key', '2:manifest.json:parent-link']);
      expect(r.problems[0].message).to.equal(
        `v000002/manifest.sig: signed by key ${KEY_B.keyId}, not by the trusted key ${KEY_A.keyId} (from v000000/manifest.sig)`,
      );
      // A parent link naming another version (with the right hash).
      const v1 = sha(await fs.readFile(file(1, MANIFEST_FILE)));
      await resign(2, (m) => (m.parent = { version: 0, manifestSha256: v1 }), KEY_A);
      expect(where(await verifyRun(d.run))).to.deep.equal(['2:manifest.json:parent-link']);
    });

    it('reports a deleted version as a gap, a wrong --key on every version, and every kind of bad latest pointer', async () => {
      await commit(3);
      const pinned = await verifyRun(d.run, { publicKey: KEY_B.publicKey });
      expect(where(pinned)).to.deep.equal([0, 1, 2].map((v) => `${v}:manifest.sig:signature-key`));
      expect(pinned.problems[0].message).to.equal(`v000000/manifest.sig: signed by key ${KEY_A.keyId}, not by the trusted key ${KEY_B.keyId} (from --key)`);

      const cases: [string | null, string][] = [
        ['garbage\n', 'latest: does not name a version: "garbage\\n"'],
        ['v000009\n', 'latest: names v000009, which does not exist'],
        ['v000001\n', 'latest: names v000001 but v000002 exists'],
        ['v000002', 'latest: "v000002" is not exactly "v000002\\n" as the store writes it'],
        [null, 'latest: missing, though versions exist'],
      ];
      for (const [text, msg] of cases) {
        if (text === null) await fs.rm(path.join(d.run, 'latest'));
        else await fs.writeFile(path.join(d.run, 'latest'), text);
        const r = await verifyRun(d.run);
        expect(where(r), msg).to.deep.equal(['null:latest:latest']);
        expect(r.problems[0].message).to.contain(msg);
        expect(formatVerifyReport(r).split('\n')).to.include(r.problems[0].message);
      }
      await fs.writeFile(path.join(d.run, 'latest'), 'v000002\n');

      await fs.rm(vdir(1), { recursive: true });
      const gap = await verifyRun(d.run);
      expect(where(gap)).to.deep.equal(['1:null:version-gap']);
      expect(gap.results.map((x) => [x.version, x.present, x.ok])).to.deep.equal([
        [0, true, true],
        [1, false, false],
        [2, true, true],
      ]);
      const text = formatVerifyReport(gap).split('\n');
      expect(text).to.include('v000001 MISSING');
      expect(text).to.include('  v000001: missing: the chain has a gap (versions run v000000…v000002)');
      expect(text[text.length - 1]).to.equal('FAILED: 1 problem in 2 versions (v000000…v000002), latest v000002');
      // A run of missing versions is one problem, however long.
      await fs.rename(vdir(2), vdir(900_000));
      await fs.writeFile(path.join(d.run, 'latest'), 'v900000\n');
      const far = await verifyRun(d.run);
      expect(far.problems.filter((p) => p.kind === 'version-gap').map((p) => p.message)).to.deep.equal([
        'v000001: missing, as is every version up to v899999: the chain has a gap (versions run v000000…v900000)',
      ]);
      expect(far.results.map((x) => x.version)).to.deep.equal([0, 1, 900_000]);
    });

    it('reports missing and extra files, a missing signature, a differing runId and a version field that is not the directory', async () => {
      await commit(4);
      await fs.rm(file(0, ADAPTER_FILE));
      await fs.writeFile(file(0, 'notes.txt'), 'x');
      await fs.rm(file(1, MANIFEST_SIG_FILE));
      // Changes to the latest manifest only, so that no child's parent link breaks as well.
      await resign(3, (m) => (m.runId = 'another-run'), KEY_A);
      const r = await verifyRun(d.run);
      expect(where(r)).to.deep.equal([
        '0:notes.txt:extra-file',
        `0:${ADAPTER_FILE}:missing-file`,
        '1:manifest.sig:signature-missing',
        '3:manifest.json:run-id',
      ]);
      expect(r.problems.map((p) => p.message)).to.deep.equal([
        'v000000/notes.txt: not listed in the manifest',
        `v000000/${ADAPTER_FILE}: missing (listed in the manifest)`,
        'v000001/manifest.sig: missing: this version is not signed',
        'v000003/manifest.json: runId "another-run" differs from the run\'s "run-v"',
      ]);
      await resign(3, (m) => ((m.runId = 'run-v'), (m.version = 7)), KEY_A);
      const again = await verifyRun(d.run);
      expect(again.problems.slice(3).map((p) => p.message)).to.deep.equal(['v000003/manifest.json: version field is 7, but the directory is v000003']);
    });

    it('an unsigned run (a store without a signer) fails: no version is signed and no key is trusted', async () => {
      await commit(2, null);
      const r = await verifyRun(d.run);
      expect(where(r)).to.deep.equal(['0:manifest.sig:signature-missing', '1:manifest.sig:signature-missing']);
      expect(r.key).to.equal(null);
    });
  });
});
