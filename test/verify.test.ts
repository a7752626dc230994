// Signed checkpoints (checkpoints/signature.ts, the signing FsCheckpointStore) and `fedtune verify`
// (checkpoints/verify.ts): every flipped byte in any file of any version is reported against exactly that
// version and file, as are broken parent links, gaps, a wrong key and a damaged latest pointer; the CLI's exit
// codes; and a real Coordinator round whose versions verify under the coordinator's own key.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import nacl from 'tweetnacl';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_FILE,
  CheckpointIntegrityError,
  FsCheckpointStore,
  MANIFEST_FILE,
  versionDirName,
} from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import { MANIFEST_SIG_FILE, manifestSigner, signManifest, type ManifestSigner } from '../coordinator/checkpoints/signature';
import { verifyRun, type Problem, type VerifyResult } from '../coordinator/checkpoints/verify';
import { formatVerifyReport } from '../coordinator/checkpoints/verify-report';
import type { Manifest, VersionInput } from '../coordinator/checkpoints/types';
import { FederationClient } from '../client-sdk/client';
import { ConstantTrainer, smallAdapter, startCoordinator, tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const SIGNED_FILES = [ADAPTER_FILE, ADAPTER_CONFIG_FILE, MANIFEST_FILE, MANIFEST_SIG_FILE];
// Fixed keys, so a failure reproduces byte for byte.
const KEY_A = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(1)));
const KEY_B = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(2)));

function input(v: number): VersionInput {
  return {
    adapter: smallAdapter(v / 4),
    adapterConfig: { peft_type: 'LORA', r: 2 },
    manifest: {
      runId: 'run-v',
      round: v,
      attempt: 1,
      strategy: 'fedavg',
      participants:
        v === 0
          ? []
          : [{ clientId: 'c1', clientName: `hospital-site-${v}`, numExamples: 10, weight: 1, seed: 3, backend: 'cpu', metrics: { loss: 1 / (v + 1) } }],
      metrics: { 'clients.train_loss': 2 - v / 10 },
      config: { note: 'free text that nothing but the signature protects' },
      seeds: { run: 42 },
      baseModel: { name: 'tiny', sha256: 'ab'.repeat(32) },
      protocolVersion: 1,
    },
  };
}

describe('signed checkpoints and fedtune verify', function () {
  this.timeout(60_000);
  let run: string;
  const vdir = (v: number): string => path.join(run, 'versions', versionDirName(v));
  const file = (v: number, f: string): string => path.join(vdir(v), f);

  async function commit(n: number, signer: ManifestSigner | null = KEY_A): Promise<FsCheckpointStore> {
    const s = new FsCheckpointStore(run, { signer: signer ?? undefined });
    for (let v = 0; v < n; v++) await s.commit(input(v));
    return s;
  }

  /** Rewrites a version's manifest (keeping it canonical) and signs it again with `signer`. */
  async function resign(v: number, edit: (m: Record<string, unknown>) => void, signer: ManifestSigner): Promise<void> {
    const m = JSON.parse(await fs.readFile(file(v, MANIFEST_FILE), 'utf8')) as Record<string, unknown>;
    edit(m);
    const text = stableJson(m);
    await fs.writeFile(file(v, MANIFEST_FILE), text);
    await fs.writeFile(file(v, MANIFEST_SIG_FILE), signManifest(Buffer.from(text), signer));
  }

  const where = (r: VerifyResult): string[] => r.problems.map((p: Problem) => `${p.version}:${p.file}:${p.kind}`);

  beforeEach(async () => {
    run = path.join(await tempDir('verify'), 'run');
  });
  afterEach(() => fs.rm(path.dirname(run), { recursive: true, force: true }));

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
      for (const s of [new FsCheckpointStore(run, { signer: KEY_A }), new FsCheckpointStore(run)]) {
        for (const err of [await s.read(2).catch((e: unknown) => e), await s.latest().catch((e: unknown) => e)]) {
          expect(err).to.be.instanceOf(CheckpointIntegrityError);
          expect((err as Error).message).to.match(/^v000002\/manifest\.json: sha256 [0-9a-f]{64} does not match the signed [0-9a-f]{64} in manifest\.sig$/);
        }
      }
    });

    it('refuses, when it signs, a version that is unsigned or signed by another key; without a key it reads an unsigned run', async () => {
      await commit(2);
      const other = await new FsCheckpointStore(run, { signer: KEY_B }).latest().catch((e: unknown) => e);
      expect(other).to.be.instanceOf(CheckpointIntegrityError);
      expect((other as Error).message).to.equal(`v000001/manifest.sig: signed by key ${KEY_A.keyId}, not by this coordinator's key ${KEY_B.keyId}`);
      // A commit on top is refused too, and writes nothing.
      expect(await new FsCheckpointStore(run, { signer: KEY_B }).commit(input(2)).catch((e: unknown) => e)).to.be.instanceOf(CheckpointIntegrityError);
      expect((await fs.readdir(path.join(run, 'versions'))).sort()).to.deep.equal(['v000000', 'v000001']);
      await fs.rm(file(0, MANIFEST_SIG_FILE));
      const missing = await new FsCheckpointStore(run, { signer: KEY_A }).read(0).catch((e: unknown) => e);
      expect((missing as Error).message).to.equal('v000000/manifest.sig: missing; this store signs every version and refuses an unsigned one');
      expect((await new FsCheckpointStore(run).read(0)).manifest.version).to.equal(0);
      const sigText = await fs.readFile(file(1, MANIFEST_SIG_FILE), 'utf8');
      await fs.writeFile(file(1, MANIFEST_SIG_FILE), sigText.replace('"ed25519"', '"ed25519x"'));
      expect(((await new FsCheckpointStore(run).read(1).catch((e: unknown) => e)) as Error).message).to.contain(
        'v000001/manifest.sig: not a fedtune.manifest-sig/1 signature: algorithm',
      );
    });

    it('takes its signer before first use only, and exports manifest.sig with the version', async () => {
      const s = await commit(2);
      expect(() => s.setSigner(KEY_B)).to.throw('before the store is first used');
      expect(() => new FsCheckpointStore(run, { signer: { ...KEY_A, keyId: KEY_B.keyId } })).to.throw('is not the id of its public key');
      const out = path.join(path.dirname(run), 'export');
      await s.export(1, out);
      expect((await fs.readdir(out)).sort()).to.deep.equal([...SIGNED_FILES].sort());
      expect((await verifyRun(run)).ok).to.equal(true);
    });
  });

  describe('verifyRun', () => {
    it('passes a clean signed run, trusting the key of v000000 or a pinned one', async () => {
      await commit(3);
      const r = await verifyRun(run);
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
      const pinned = await verifyRun(run, { publicKey: KEY_A.publicKey });
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
            const r = await verifyRun(run);
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
      expect((await verifyRun(run)).ok).to.equal(true);
    });

    it('names the free-text change in the latest manifest as a manifest changed after signing', async () => {
      await commit(3);
      const text = await fs.readFile(file(2, MANIFEST_FILE), 'utf8');
      await fs.writeFile(file(2, MANIFEST_FILE), text.replace('nothing but the signature', 'nothing but the signaturE'));
      const r = await verifyRun(run);
      expect(where(r)).to.deep.equal(['2:manifest.json:manifest-hash']);
      expect(r.problems[0].message).to.match(
        /^v000002\/manifest\.json: sha256 [0-9a-f]{12}… does not match the signed [0-9a-f]{12}… in manifest\.sig: the manifest changed after it was signed/,
      );
      expect(r.problems[0].actual).to.equal(sha(await fs.readFile(file(2, MANIFEST_FILE))));
    });

    it('reports a file hash mismatch with expected and actual digests', async () => {
      await commit(2);
      await fs.appendFile(file(1, ADAPTER_CONFIG_FILE), ' ');
      const r = await verifyRun(run);
      expect(where(r)).to.deep.equal([`1:${ADAPTER_CONFIG_FILE}:file-hash`]);
      const p = r.problems[0];
      expect(p.actual).to.equal(sha(await fs.readFile(file(1, ADAPTER_CONFIG_FILE))));
      expect(p.message).to.equal(
        `v000001/${ADAPTER_CONFIG_FILE}: sha256 ${p.actual!.slice(0, 12)}… does not match the manifest's ${p.expected!.slice(0, 12)}…`,
      );
    });

    it("checks the manifest's piece hashes (parallel downloads) against the adapter file, even when re-signed", async () => {
      await commit(2);
      expect(where(await verifyRun(run))).to.deep.equal([]);
      await resign(1, (m) => ((m.pieces as { sha256: string[] }).sha256[0] = 'e'.repeat(64)), KEY_A);
      let r = await verifyRun(run);
      expect(where(r)).to.deep.equal([`1:${ADAPTER_FILE}:file-hash`]);
      expect(r.problems[0].message).to.match(
        /^v000001\/adapter_model\.safetensors: piece 0: sha256 [0-9a-f]{12}… does not match the manifest's pieces \(eeeeeeeeeeee…; 1 listed, 1 in the file\)$/,
      );
      await resign(1, (m) => (m.pieces = { bytes: -1, sha256: [] }), KEY_A);
      r = await verifyRun(run);
      expect(where(r)).to.deep.equal(['1:manifest.json:manifest']);
    });

    it('detects a broken parent link even when the manifest is re-signed with the right key', async () => {
      await commit(3);
      const wrong = 'f'.repeat(64);
      await resign(2, (m) => ((m.parent as Record<string, unknown>).manifestSha256 = wrong), KEY_A);
      let r = await verifyRun(run);
      expect(where(r)).to.deep.equal(['2:manifest.json:parent-link']);
      expect(r.problems[0].message).to.equal(
        `v000002/manifest.json: parent.manifestSha256 ${wrong.slice(0, 12)}… does not match the sha256 ${sha(await fs.readFile(file(1, MANIFEST_FILE))).slice(0, 12)}… of v000001/manifest.json`,
      );
      // Signed by another key instead: the link and the signature are both reported.
      await resign(2, () => undefined, KEY_B);
      r = await verifyRun(run);
      expect(where(r)).to.deep.equal(['2:manifest.sig:signature-key', '2:manifest.json:parent-link']);
      expect(r.problems[0].message).to.equal(
        `v000002/manifest.sig: signed by key ${KEY_B.keyId}, not by the trusted key ${KEY_A.keyId} (from v000000/manifest.sig)`,
      );
      // A parent link naming another version (with the right hash).
      const v1 = sha(await fs.readFile(file(1, MANIFEST_FILE)));
      await resign(2, (m) => (m.parent = { version: 0, manifestSha256: v1 }), KEY_A);
      expect(where(await verifyRun(run))).to.deep.equal(['2:manifest.json:parent-link']);
    });

    it('reports a deleted version as a gap, a wrong --key on every version, and every kind of bad latest pointer', async () => {
      await commit(3);
      const pinned = await verifyRun(run, { publicKey: KEY_B.publicKey });
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
        if (text === null) await fs.rm(path.join(run, 'latest'));
        else await fs.writeFile(path.join(run, 'latest'), text);
        const r = await verifyRun(run);
        expect(where(r), msg).to.deep.equal(['null:latest:latest']);
        expect(r.problems[0].message).to.contain(msg);
        expect(formatVerifyReport(r).split('\n')).to.include(r.problems[0].message);
      }
      await fs.writeFile(path.join(run, 'latest'), 'v000002\n');

      await fs.rm(vdir(1), { recursive: true });
      const gap = await verifyRun(run);
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
      await fs.writeFile(path.join(run, 'latest'), 'v900000\n');
      const far = await verifyRun(run);
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
      const r = await verifyRun(run);
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
      const again = await verifyRun(run);
      expect(again.problems.slice(3).map((p) => p.message)).to.deep.equal(['v000003/manifest.json: version field is 7, but the directory is v000003']);
    });

    it('an unsigned run (a store without a signer) fails: no version is signed and no key is trusted', async () => {
      await commit(2, null);
      const r = await verifyRun(run);
      expect(where(r)).to.deep.equal(['0:manifest.sig:signature-missing', '1:manifest.sig:signature-missing']);
      expect(r.key).to.equal(null);
    });
  });

  describe('fedtune verify (the built CLI)', () => {
    const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
    const cli = (args: string[]): Promise<{ code: number; out: string }> =>
      promisify(execFile)(process.execPath, [CLI, 'verify', ...args], { timeout: 30_000 }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );

    it('exits 0 on a clean run, 1 naming the damaged file, 2 on usage errors', async () => {
      await commit(3);
      const ok = await cli([run]);
      expect(ok.code, ok.out).to.equal(0);
      expect(ok.out).to.contain('v000002 ok').and.contain('OK: 3 versions');
      const keyFile = path.join(path.dirname(run), 'pub.txt');
      await fs.writeFile(keyFile, b64(KEY_A.publicKey) + '\n');
      expect((await cli([run, '--key', b64(KEY_A.publicKey)])).code).to.equal(0);
      expect((await cli([run, '--key', keyFile])).code).to.equal(0);
      const wrongKey = await cli([run, '--key', b64(KEY_B.publicKey)]);
      expect(wrongKey.code).to.equal(1);
      expect(wrongKey.out).to.contain(`v000001/manifest.sig: signed by key ${KEY_A.keyId}`);

      const p = file(1, ADAPTER_FILE);
      const bad = await fs.readFile(p);
      bad[bad.length - 3] ^= 0x40;
      await fs.writeFile(p, bad);
      const damaged = await cli([run]);
      expect(damaged.code, damaged.out).to.equal(1);
      expect(damaged.out)
        .to.contain('v000001 FAILED (1 problem)')
        .and.contain(`v000001/${ADAPTER_FILE}: sha256`)
        .and.contain('FAILED: 1 problem in 3 versions');
      const json = await cli([run, '--json']);
      expect(json.code).to.equal(1);
      const parsed = JSON.parse(json.out) as VerifyResult;
      expect(parsed.problems.map((x) => [x.version, x.file, x.kind])).to.deep.equal([[1, ADAPTER_FILE, 'file-hash']]);

      for (const args of [[], [path.join(run, 'nope')], [run, '--key', 'not-a-key'], [run, '--key', path.join(run, 'latest')], [run, '--no-such-flag']]) {
        const r = await cli(args);
        expect(r.code, `${args.join(' ')}: ${r.out}`).to.equal(2);
      }
    });
  });

  describe('a Coordinator run', () => {
    it('signs every version with the key it created at start (0600), which verify accepts pinned', async () => {
      const h = await startCoordinator(path.dirname(run), { total: 1 });
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
      const dir = path.dirname(run);
      const err = await startCoordinator(dir, {}, { security: { keyFile: path.join(dir, 'versions', 'k.json') } }).catch((e: unknown) => e);
      expect((err as Error).message).to.equal(`security.keyFile ${path.join(dir, 'versions', 'k.json')} must not be inside ${path.join(dir, 'versions')}`);
    });
  });
});
