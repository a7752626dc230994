// `fedtune verify`'s checks of one version (coordinator/checkpoints/verify.ts) in-process and exactly: its directory,
// manifest and signature, the manifest's shape and file list, the trusted key, and verifyVersionDir on an exported
// version; each finding compared whole (kind, version, file, sentence, digests, notes, key) on real signed runs
// damaged by hand.
// Written for mutation testing (bench/MUTATION.md, group verify): test/verify.test.ts checks many findings by where
// they are, not by what they say. Shared set-up: test/verify-kit.ts.
import { promises as fs } from 'node:fs';
import { ADAPTER_CONFIG_FILE, ADAPTER_FILE, MANIFEST_FILE, versionDirName } from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import { MANIFEST_SIG_FILE, parseManifestSignature } from '../coordinator/checkpoints/signature';
import { verifyRun, verifyVersionDir } from '../coordinator/checkpoints/verify';
import { KEY_A, KEY_B, b64, flat, sha, signedRuns } from './verify-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('fedtune verify, in-process and exactly', function () {
  this.timeout(60_000);
  const { signedRun, f, manifestOf, writeSigned, edit, mhash } = signedRuns('verify-manifest-mutants');

  it("a version's directory, manifest and signature: each damage by its own sentence", async () => {
    const run = await signedRun(6);
    // v1: not a directory.
    await fs.rm(f(run, 1, ''), { recursive: true });
    await fs.writeFile(f(run, 1, ''), 'x');
    // v2: manifest missing (its standard files are not extra).
    await fs.rm(f(run, 2, MANIFEST_FILE));
    // v3: manifest.sig unreadable.
    const sig3 = await fs.readFile(f(run, 3, MANIFEST_SIG_FILE));
    await fs.writeFile(f(run, 3, MANIFEST_SIG_FILE), '{}');
    const parseError = (parseManifestSignature(Buffer.from('{}')) as { error: string }).error;
    // v4: a signature that does not verify, over an unchanged manifest.
    const s4 = JSON.parse(await fs.readFile(f(run, 4, MANIFEST_SIG_FILE), 'utf8')) as Record<string, string>;
    const sigBytes = Buffer.from(s4.signature, 'base64');
    sigBytes[0] ^= 1;
    await fs.writeFile(f(run, 4, MANIFEST_SIG_FILE), stableJson({ ...s4, signature: b64(sigBytes) }));
    // v5: manifestSha256 alone wrong, and the key id not its key's.
    const s5 = JSON.parse(await fs.readFile(f(run, 5, MANIFEST_SIG_FILE), 'utf8')) as Record<string, string>;
    const wrong = 'e'.repeat(64);
    await fs.writeFile(f(run, 5, MANIFEST_SIG_FILE), stableJson({ ...s5, manifestSha256: wrong, keyId: KEY_B.keyId }));
    const m5 = await mhash(run, 5);
    const r = await verifyRun(run);
    expect(flat(r)).to.deep.equal([
      'manifest|1|null|v000001: not a directory',
      'manifest|2|manifest.json|v000002/manifest.json: missing',
      `signature-invalid|3|manifest.sig|v000003/manifest.sig: unreadable: ${parseError}`,
      `signature-invalid|4|manifest.sig|v000004/manifest.sig: ed25519 signature does not verify under its key ${KEY_A.keyId}`,
      `signature-invalid|5|manifest.sig|v000005/manifest.sig: manifestSha256 ${wrong.slice(0, 12)}… does not match manifest.json's sha256 ${m5.slice(0, 12)}… (the signature itself verifies)|${wrong}|${m5}`,
      `signature-invalid|5|manifest.sig|v000005/manifest.sig: keyId ${KEY_B.keyId} is not the id of its publicKey (${KEY_A.keyId})`,
    ]);
    expect(r.results.map((x) => x.ok)).to.deep.equal([true, false, false, false, false, false]);
    expect(r.notes).to.deep.equal([]);
    expect(r.key!.source).to.equal('v000000/manifest.sig');
    // v3's signature back; v2's manifest gone still says nothing of its adapter files.
    await fs.writeFile(f(run, 3, MANIFEST_SIG_FILE), sig3);
    expect(flat(await verifyRun(run)).filter((p) => p.includes('|3|'))).to.deep.equal([]);
  });

  it('a manifest changed after signing: its file hashes are not checked, only unknown files are extra', async () => {
    const run = await signedRun(2);
    const before = await mhash(run, 1);
    const m = await manifestOf(run, 1);
    (m.files as Record<string, string>)[ADAPTER_FILE] = '0'.repeat(64);
    const text = stableJson(m);
    await fs.writeFile(f(run, 1, MANIFEST_FILE), text);
    await fs.writeFile(f(run, 1, 'junk'), 'x');
    const after = sha(text);
    expect(flat(await verifyRun(run))).to.deep.equal([
      `manifest-hash|1|manifest.json|v000001/manifest.json: sha256 ${after.slice(0, 12)}… does not match the signed ${before.slice(0, 12)}… in manifest.sig: the manifest changed after it was signed (its file hashes are not trusted, so the other files were not checked)|${before}|${after}`,
      'extra-file|1|junk|v000001/junk: not listed in the manifest',
    ]);
    // Its files no longer an object: the standard files are still not extra.
    await fs.writeFile(f(run, 1, MANIFEST_FILE), stableJson({ ...m, files: 3 }));
    expect(flat(await verifyRun(run)).map((p) => p.split('|').slice(0, 3).join('|'))).to.deep.equal([
      'manifest-hash|1|manifest.json',
      'manifest|1|manifest.json',
      'extra-file|1|junk',
    ]);
  });

  it("the manifest's shape, each fault by its sentence (signed, so nothing else is wrong)", async () => {
    const run = await signedRun(8);
    const jsonError = ((): string => {
      try {
        JSON.parse('{"a":');
      } catch (e) {
        return (e as Error).message;
      }
      return '';
    })();
    await writeSigned(run, 7, '{"a":');
    await writeSigned(run, 6, '[1]');
    await edit(run, 5, (m) => {
      m.format = 'other/1';
      m.version = '5';
      m.runId = 5;
    });
    await edit(run, 4, (m) => {
      m.parent = { version: 3 };
    });
    await edit(run, 3, (m) => {
      m.files = [];
    });
    await edit(run, 2, (m) => {
      const files = m.files as Record<string, string>;
      delete files[ADAPTER_FILE];
      delete files[ADAPTER_CONFIG_FILE];
    });
    const r = await verifyRun(run);
    const mf = (v: number, msg: string): string => `manifest|${v}|manifest.json|${versionDirName(v)}/manifest.json: ${msg}`;
    expect(flat(r).filter((p) => !p.startsWith('parent-link'))).to.deep.equal([
      mf(2, `files does not list ${ADAPTER_FILE}`),
      mf(2, `files does not list ${ADAPTER_CONFIG_FILE}`),
      `extra-file|2|${ADAPTER_CONFIG_FILE}|v000002/${ADAPTER_CONFIG_FILE}: not listed in the manifest`,
      `extra-file|2|${ADAPTER_FILE}|v000002/${ADAPTER_FILE}: not listed in the manifest`,
      mf(3, 'files is not an object of sha256 hashes'),
      mf(4, 'parent is neither null nor {version, manifestSha256}'),
      mf(5, 'format "other/1" is not fedtune.checkpoint/1'),
      mf(5, 'version field is "5", but the directory is v000005'),
      mf(5, 'runId is not a string'),
      mf(6, 'not a JSON object'),
      mf(7, `not valid JSON (${jsonError})`),
    ]);
    expect(r.notes).to.deep.equal([]);
  });

  it("the manifest's file list: names it may not list, digests that are not sha256 hex, missing files, wrong hashes", async () => {
    const run = await signedRun(1);
    const m = await manifestOf(run, 0);
    const files = m.files as Record<string, unknown>;
    const good = files[ADAPTER_FILE] as string;
    Object.assign(files, {
      '../x': good,
      '.hidden': good,
      [MANIFEST_FILE]: good,
      [MANIFEST_SIG_FILE]: good,
      upper: good.toUpperCase(),
      short: good.slice(1),
      long: `${good}0`,
      num: 7,
      gone: good,
      wrong: good,
      'a-b.c_d': sha('y'),
    });
    await fs.writeFile(f(run, 0, 'wrong'), 'x');
    await fs.writeFile(f(run, 0, 'a-b.c_d'), 'y');
    await fs.writeFile(f(run, 0, 'upper'), 'x');
    await edit(run, 0, (x) => (x.files = files));
    const mf = (msg: string): string => `manifest|0|manifest.json|v000000/manifest.json: ${msg}`;
    expect(flat(await verifyRun(run))).to.deep.equal([
      mf('files lists "../x", which is not a file name it may list'),
      mf('files lists ".hidden", which is not a file name it may list'),
      `missing-file|0|gone|v000000/gone: missing (listed in the manifest)`,
      mf('files.long is not a sha256 hex digest'),
      mf('files lists "manifest.json", which is not a file name it may list'),
      mf('files lists "manifest.sig", which is not a file name it may list'),
      mf('files.num is not a sha256 hex digest'),
      mf('files.short is not a sha256 hex digest'),
      mf('files.upper is not a sha256 hex digest'),
      `file-hash|0|wrong|v000000/wrong: sha256 ${sha('x').slice(0, 12)}… does not match the manifest's ${good.slice(0, 12)}…|${good}|${sha('x')}`,
    ]);
    // A directory where a listed file should be.
    await fs.rm(f(run, 0, 'wrong'));
    await fs.mkdir(f(run, 0, 'wrong'));
    expect(flat(await verifyRun(run)).filter((p) => p.includes('|wrong|'))).to.deep.equal([
      'missing-file|0|wrong|v000000/wrong: unreadable (EISDIR) (listed in the manifest)',
    ]);
  });

  it('the trusted key: the first valid signature, notes when it is not v000000 or there is none, every other key reported', async () => {
    const run = await signedRun(3);
    await edit(run, 2, () => undefined, KEY_B);
    const k2 = await verifyRun(run);
    expect(flat(k2)).to.deep.equal([
      `signature-key|2|manifest.sig|v000002/manifest.sig: signed by key ${KEY_B.keyId}, not by the trusted key ${KEY_A.keyId} (from v000000/manifest.sig)`,
    ]);
    // v0's signature broken (key id wrong): v1's key is trusted, with a note.
    const s0 = JSON.parse(await fs.readFile(f(run, 0, MANIFEST_SIG_FILE), 'utf8')) as Record<string, string>;
    await fs.writeFile(f(run, 0, MANIFEST_SIG_FILE), stableJson({ ...s0, keyId: KEY_B.keyId }));
    const r = await verifyRun(run);
    expect(r.notes).to.deep.equal(['v000000 has no valid signature; trusting the key of v000001 instead']);
    expect(r.key).to.deep.equal({ keyId: KEY_A.keyId, publicKey: b64(KEY_A.publicKey), source: 'v000001/manifest.sig', pinned: false });
    expect(flat(r).map((p) => p.split('|').slice(0, 2).join('|'))).to.deep.equal(['signature-invalid|0', 'signature-key|2']);
    // Pinned: no note, the source is the caller's.
    const pinned = await verifyRun(run, { publicKey: KEY_B.publicKey, keySource: 'b.pub' });
    expect(pinned.notes).to.deep.equal([]);
    expect(flat(pinned).filter((p) => p.startsWith('signature-key'))).to.deep.equal([
      `signature-key|0|manifest.sig|v000000/manifest.sig: signed by key ${KEY_B.keyId}, not by the trusted key ${KEY_B.keyId} (from b.pub)`,
      `signature-key|1|manifest.sig|v000001/manifest.sig: signed by key ${KEY_A.keyId}, not by the trusted key ${KEY_B.keyId} (from b.pub)`,
    ]);
    // No valid signature anywhere: no key; a note only when some version has a signature at all.
    const none = await signedRun(2);
    for (const v of [0, 1]) await fs.writeFile(f(none, v, MANIFEST_SIG_FILE), stableJson({ ...s0, keyId: KEY_B.keyId, manifestSha256: 'e'.repeat(64) }));
    const rn = await verifyRun(none);
    expect(rn.key).to.equal(null);
    expect(rn.notes).to.deep.equal(['no version has a valid signature, so there is no key to trust']);
    const unsigned = await signedRun(2, null);
    const ru = await verifyRun(unsigned);
    expect(ru.key).to.equal(null);
    expect(ru.notes).to.deep.equal([]);
    expect(flat(ru)).to.deep.equal([
      'signature-missing|0|manifest.sig|v000000/manifest.sig: missing: this version is not signed',
      'signature-missing|1|manifest.sig|v000001/manifest.sig: missing: this version is not signed',
    ]);
  });

  it('verifyVersionDir: an exported version, its signer pinned or not, and what it finds', async () => {
    const run = await signedRun(3);
    const dir = f(run, 2, '');
    expect(await verifyVersionDir(dir)).to.deep.equal({ ok: true, version: 2, keyId: KEY_A.keyId, files: 2, problems: [] });
    expect(await verifyVersionDir(dir, { publicKey: KEY_A.publicKey })).to.deep.equal({ ok: true, version: 2, keyId: KEY_A.keyId, files: 2, problems: [] });
    expect(await verifyVersionDir(dir, { publicKey: KEY_B.publicKey, keySource: 'b.pub' })).to.deep.equal({
      ok: false,
      version: 2,
      keyId: KEY_A.keyId,
      files: 2,
      problems: [
        {
          version: 2,
          file: MANIFEST_SIG_FILE,
          kind: 'signature-key',
          message: `v000002/manifest.sig: signed by key ${KEY_A.keyId}, not by the trusted key ${KEY_B.keyId} (from b.pub)`,
        },
      ],
    });
    expect((await verifyVersionDir(dir, { publicKey: KEY_B.publicKey })).problems[0].message).to.contain('(from --key)');
    // An invalid signature: no key id, and no key check on top.
    const s = JSON.parse(await fs.readFile(f(run, 2, MANIFEST_SIG_FILE), 'utf8')) as Record<string, string>;
    await fs.writeFile(f(run, 2, MANIFEST_SIG_FILE), stableJson({ ...s, keyId: KEY_B.keyId }));
    const bad = await verifyVersionDir(dir, { publicKey: KEY_B.publicKey });
    expect(bad.keyId).to.equal(null);
    expect(bad.problems.map((p) => p.kind)).to.deep.equal(['signature-invalid']);
    const s1 = JSON.parse(await fs.readFile(f(run, 1, MANIFEST_SIG_FILE), 'utf8')) as Record<string, string>;
    await fs.writeFile(f(run, 1, MANIFEST_SIG_FILE), stableJson({ ...s1, manifestSha256: 'e'.repeat(64) }));
    expect((await verifyVersionDir(f(run, 1, ''))).keyId).to.equal(null);
    // Manifests without a usable version number.
    for (const [text, version] of [
      ['{"version":-1}', null],
      ['{"version":1.5}', null],
      ['{"version":"1"}', null],
      ['[]', null],
      ['{', null],
      ['{"version":0}', 0],
      ['{"version":3}', 3],
    ] as const) {
      await writeSigned(run, 0, text);
      const r = await verifyVersionDir(f(run, 0, ''));
      expect(r.version, text).to.equal(version);
      expect(r.files).to.equal(0);
      expect(r.problems.filter((p) => p.message.endsWith('has no version number')).length, text).to.equal(version === null ? 1 : 0);
      if (version === null)
        expect(r.problems.find((p) => p.message.endsWith('has no version number'))).to.deep.equal({
          version: 0,
          file: MANIFEST_FILE,
          kind: 'manifest',
          message: 'v000000/manifest.json: has no version number',
        });
    }
    await fs.rm(f(run, 0, MANIFEST_FILE));
    const gone = await verifyVersionDir(f(run, 0, ''));
    expect(gone.version).to.equal(null);
    expect(flat(gone)).to.deep.equal(['manifest|0|manifest.json|v000000/manifest.json: missing']);
  });
});
