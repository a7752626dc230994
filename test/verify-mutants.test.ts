// `fedtune verify`'s checks (coordinator/checkpoints/verify.ts) in-process and exactly: every refusal and every
// finding of verifyRun and verifyVersionDir compared whole (kind, version, file, sentence, digests, notes, key),
// on real signed runs damaged by hand. Written for mutation testing (bench/MUTATION.md, group verify):
// test/verify.test.ts checks many findings by where they are, not by what they say.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { ADAPTER_CONFIG_FILE, ADAPTER_FILE, FsCheckpointStore, MANIFEST_FILE, versionDirName } from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import { MANIFEST_SIG_FILE, manifestSigner, parseManifestSignature, signManifest, type ManifestSigner } from '../coordinator/checkpoints/signature';
import { VerifyUsageError, verifyRun, verifyVersionDir, type Problem } from '../coordinator/checkpoints/verify';
import { tempDir } from './harness';
import { commitInput } from './checkpoint-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sha = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const KEY_A = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(7)));
const KEY_B = manifestSigner(nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(8)));
const errorOf = async (p: Promise<unknown>): Promise<Error> =>
  (await p.then(
    () => new Error('(resolved)'),
    (e: unknown) => e,
  )) as Error;
/** kind, version, file and message of each problem, digests when present. */
const flat = (r: { problems: readonly Problem[] }): string[] =>
  r.problems.map((p) => `${p.kind}|${p.version}|${p.file}|${p.message}${p.expected === undefined ? '' : `|${p.expected}|${p.actual}`}`);

describe('fedtune verify, in-process and exactly', function () {
  this.timeout(60_000);
  let root: string;
  let n = 0;
  before(async () => {
    root = await tempDir('verify-mutants');
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  async function signedRun(count: number, signer: ManifestSigner | null = KEY_A, runId = 'run'): Promise<string> {
    const run = path.join(root, `run${n++}`);
    const store = new FsCheckpointStore(run, { signer: signer ?? undefined });
    for (let v = 0; v < count; v++) await store.commit(commitInput(v, runId));
    return run;
  }
  const f = (run: string, v: number, name: string): string => path.join(run, 'versions', versionDirName(v), name);
  const manifestOf = async (run: string, v: number): Promise<Record<string, unknown>> =>
    JSON.parse(await fs.readFile(f(run, v, MANIFEST_FILE), 'utf8')) as Record<string, unknown>;
  /** Writes `text` as the manifest of v and signs it (so only what the text says is wrong). */
  async function writeSigned(run: string, v: number, text: string, signer: ManifestSigner = KEY_A): Promise<void> {
    await fs.writeFile(f(run, v, MANIFEST_FILE), text);
    await fs.writeFile(f(run, v, MANIFEST_SIG_FILE), signManifest(Buffer.from(text), signer));
  }
  async function edit(run: string, v: number, change: (m: Record<string, unknown>) => void, signer: ManifestSigner = KEY_A): Promise<void> {
    const m = await manifestOf(run, v);
    change(m);
    await writeSigned(run, v, stableJson(m), signer);
  }
  const mhash = async (run: string, v: number): Promise<string> => sha(await fs.readFile(f(run, v, MANIFEST_FILE)));

  it('refuses what is not a run directory, as a usage error', async () => {
    const file = path.join(root, `file${n++}`);
    await fs.writeFile(file, 'x');
    for (const [dir, msg] of [
      [file, `${file} is not a directory`],
      [path.join(root, 'nope'), `${path.join(root, 'nope')} is not a directory`],
      [root, `${root} is not a fedtune run directory (it has no versions/)`],
    ]) {
      const e = await errorOf(verifyRun(dir));
      expect(e).to.be.instanceOf(VerifyUsageError);
      expect(e.message).to.equal(msg);
      expect(e.name).to.equal('VerifyUsageError');
    }
    const d = path.join(root, `d${n++}`);
    await fs.mkdir(d);
    await fs.writeFile(path.join(d, 'versions'), 'x');
    expect((await errorOf(verifyRun(d))).message).to.equal(`${d} is not a fedtune run directory (it has no versions/)`);
    // Any other error reading versions/ or a version directory is not the run's fault: it is thrown as it is.
    await fs.rm(path.join(d, 'versions'));
    await fs.symlink('versions', path.join(d, 'versions'));
    expect((await errorOf(verifyRun(d))).message).to.match(/^ELOOP/);
    const run = await signedRun(1);
    await fs.rm(f(run, 0, ''), { recursive: true });
    await fs.symlink('v000000', f(run, 0, ''));
    expect((await errorOf(verifyRun(run))).message).to.match(/^ELOOP/);
    for (const dir of [file, path.join(root, 'nope')]) {
      const e = await errorOf(verifyVersionDir(dir));
      expect(e).to.be.instanceOf(VerifyUsageError);
      expect(e.message).to.equal(`${dir} is not a directory`);
    }
  });

  it('a clean run: the whole result; an empty versions/ has nothing to vouch for', async () => {
    const run = await signedRun(2);
    expect(await verifyRun(run, { publicKey: KEY_A.publicKey, keySource: 'pub.txt' })).to.deep.equal({
      ok: true,
      runDir: run,
      versions: 2,
      latest: 1,
      key: { keyId: KEY_A.keyId, publicKey: b64(KEY_A.publicKey), source: 'pub.txt', pinned: true },
      results: [
        { version: 0, present: true, ok: true },
        { version: 1, present: true, ok: true },
      ],
      problems: [],
      notes: [],
    });
    expect((await verifyRun(run, { publicKey: KEY_A.publicKey })).key!.source).to.equal('--key');
    const empty = path.join(root, `e${n++}`);
    await fs.mkdir(path.join(empty, 'versions'), { recursive: true });
    expect(await verifyRun(empty)).to.deep.equal({
      ok: false,
      runDir: empty,
      versions: 0,
      latest: null,
      key: null,
      results: [],
      problems: [{ version: null, file: 'versions', kind: 'no-versions', message: 'versions: holds no version directories: nothing was committed' }],
      notes: [],
    });
  });

  it('notes ignored entries, sorts versions by number, and reports each run of missing versions once', async () => {
    const run = await signedRun(2);
    const vs = path.join(run, 'versions');
    await fs.mkdir(path.join(vs, '.tmp-123'));
    await fs.mkdir(path.join(vs, 'v0000001'));
    await fs.mkdir(path.join(vs, 'v12'));
    await fs.writeFile(path.join(vs, 'notes'), 'x');
    // v1000000 sorts before v999999 as text: the versions must be sorted by number.
    await fs.rename(f(run, 1, ''), path.join(vs, 'v1000000'));
    await fs.cp(path.join(vs, 'v1000000'), path.join(vs, 'v000003'), { recursive: true });
    await fs.cp(path.join(vs, 'v1000000'), path.join(vs, 'v999999'), { recursive: true });
    await fs.writeFile(path.join(run, 'latest'), 'v1000000\n');
    const r = await verifyRun(run);
    expect(r.notes).to.deep.equal([
      'versions/.tmp-123: an interrupted commit, ignored (the coordinator deletes it when it next starts)',
      'versions/notes: not a version directory, ignored',
      'versions/v0000001: not a version directory, ignored',
      'versions/v12: not a version directory, ignored',
    ]);
    expect(r.versions).to.equal(4);
    expect(r.latest).to.equal(1000000);
    expect(r.results).to.deep.equal([
      { version: 0, present: true, ok: true },
      { version: 1, present: false, ok: false },
      { version: 3, present: true, ok: false },
      { version: 4, present: false, ok: false },
      { version: 999999, present: true, ok: false },
      { version: 1000000, present: true, ok: false },
    ]);
    expect(r.problems.filter((p) => p.kind === 'version-gap').map((p) => `${p.version}|${p.file}|${p.message}`)).to.deep.equal([
      '1|null|v000001: missing, as is every version up to v000002: the chain has a gap (versions run v000000…v1000000)',
      '4|null|v000004: missing, as is every version up to v999998: the chain has a gap (versions run v000000…v1000000)',
    ]);
  });

  it('the latest pointer: missing, unreadable, not a version, not exact, naming a missing or an older version', async () => {
    const run = await signedRun(3);
    const latest = path.join(run, 'latest');
    const one = async (): Promise<string[]> => flat(await verifyRun(run));
    const L = (m: string): string => `latest|null|latest|latest: ${m}`;
    await fs.rm(latest);
    expect(await one()).to.deep.equal([L('missing, though versions exist (deleted or lost: `fedtune recover` rebuilds it from the signed chain)')]);
    expect((await verifyRun(run)).latest).to.equal(null);
    await fs.mkdir(latest);
    expect(await one()).to.deep.equal([L('unreadable (EISDIR), though versions exist (deleted or lost: `fedtune recover` rebuilds it from the signed chain)')]);
    await fs.rmdir(latest);
    for (const [text, msgs, named] of [
      ['v000002\n', [], 2],
      ['v2\n', [L('does not name a version: "v2\\n"')], null],
      ['xv000002\n', [L('does not name a version: "xv000002\\n"')], null],
      ['v000002x\n', [L('does not name a version: "v000002x\\n"')], null],
      [' v000002\n', [L('" v000002\\n" is not exactly "v000002\\n" as the store writes it')], 2],
      ['v000002', [L('"v000002" is not exactly "v000002\\n" as the store writes it')], 2],
      ['v000005\n', [L('names v000005, which does not exist')], 5],
      [
        'v000001\n',
        [
          L(
            'names v000001 but v000002 exists (one version beyond latest is what a crash between the rename and the pointer leaves: the coordinator finishes that commit when it next starts)',
          ),
        ],
        1,
      ],
      [
        'v000000\n',
        [
          L(
            'names v000000 but v000002 exists (the pointer only moves forward one version at a time, so this is damage: `fedtune recover` rebuilds it from the signed chain)',
          ),
        ],
        0,
      ],
    ] as const) {
      await fs.writeFile(latest, text);
      const r = await verifyRun(run);
      expect(flat(r), text).to.deep.equal(msgs);
      expect(r.latest, text).to.equal(named);
      expect(r.ok).to.equal(msgs.length === 0);
      expect(r.results.every((x) => x.ok)).to.equal(true);
    }
    // A crash before the first pointer: only v000000, no latest.
    const first = await signedRun(1);
    await fs.rm(path.join(first, 'latest'));
    expect(flat(await verifyRun(first))).to.deep.equal([
      L('missing, though versions exist (a crash before the first pointer: the coordinator finishes that commit when it next starts)'),
    ]);
    // No versions and no pointer: only the empty versions/.
    const empty = path.join(root, `e${n++}`);
    await fs.mkdir(path.join(empty, 'versions'), { recursive: true });
    expect((await verifyRun(empty)).problems.map((p) => p.kind)).to.deep.equal(['no-versions']);
  });

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

  it('run ids: the odd ones out against the most common; a tie goes to the lowest version', async () => {
    const run = await signedRun(3);
    await edit(run, 0, (m) => (m.runId = 'other'));
    const r = await verifyRun(run);
    expect(flat(r).filter((p) => p.startsWith('run-id'))).to.deep.equal([
      'run-id|0|manifest.json|v000000/manifest.json: runId "other" differs from the run\'s "run"',
    ]);
    const two = await signedRun(2, KEY_A, 'first');
    await edit(two, 1, (m) => (m.runId = 'second'));
    expect(flat(await verifyRun(two))).to.deep.equal(['run-id|1|manifest.json|v000001/manifest.json: runId "second" differs from the run\'s "first"']);
  });

  it('parent links: v0 with one, a later one without, another version, another hash, and a changed parent', async () => {
    const run = await signedRun(6);
    const h = [0, 1, 2, 3, 4].map(() => '');
    for (let v = 0; v < 5; v++) h[v] = await mhash(run, v);
    await edit(run, 5, (m) => (m.parent = { version: 4, manifestSha256: 'a'.repeat(64) }));
    await edit(run, 3, (m) => (m.parent = { version: 1, manifestSha256: h[2] }));
    await edit(run, 2, (m) => (m.parent = null));
    await edit(run, 0, (m) => (m.parent = { version: 0, manifestSha256: h[0] }));
    // v4's link still names v3's old hash: v3 was re-signed, so it is reported too.
    const h3 = await mhash(run, 3);
    const h2 = await mhash(run, 2);
    const h0 = await mhash(run, 0);
    const link = (v: number, was: string, now: string): string =>
      pl(
        v,
        `parent.manifestSha256 ${was.slice(0, 12)}… does not match the sha256 ${now.slice(0, 12)}… of ${versionDirName(v - 1)}/manifest.json`,
        `|${was}|${now}`,
      );
    const pl = (v: number, msg: string, extra = ''): string => `parent-link|${v}|manifest.json|${versionDirName(v)}/manifest.json: ${msg}${extra}`;
    const r = await verifyRun(run);
    expect(flat(r)).to.deep.equal([
      pl(0, 'version 0 must have no parent, but names one'),
      link(1, h[0], h0),
      pl(2, 'has no parent link (expected v000001)'),
      pl(3, 'parent.version is 1, not 2'),
      link(3, h[2], h2),
      pl(4, `parent.manifestSha256 ${h[3].slice(0, 12)}… does not match the sha256 ${h3.slice(0, 12)}… of v000003/manifest.json`, `|${h[3]}|${h3}`),
      pl(5, `parent.manifestSha256 ${'a'.repeat(12)}… does not match the sha256 ${h[4].slice(0, 12)}… of v000004/manifest.json`, `|${'a'.repeat(64)}|${h[4]}`),
    ]);
    // A parent whose manifest changed after signing: a link to what was signed is no second fault, another is.
    const chain = await signedRun(3);
    const signed1 = await mhash(chain, 1);
    const text = await fs.readFile(f(chain, 1, MANIFEST_FILE), 'utf8');
    await fs.writeFile(f(chain, 1, MANIFEST_FILE), text.replace('"round": 1,', '"round": 9,'));
    expect(flat(await verifyRun(chain)).map((p) => p.split('|').slice(0, 2).join('|'))).to.deep.equal(['manifest-hash|1']);
    await edit(chain, 2, (m) => ((m.parent as Record<string, unknown>).manifestSha256 = 'b'.repeat(64)));
    const changed = await mhash(chain, 1);
    expect(flat(await verifyRun(chain)).slice(1)).to.deep.equal([
      pl(
        2,
        `parent.manifestSha256 ${'b'.repeat(12)}… does not match the sha256 ${changed.slice(0, 12)}… of v000001/manifest.json`,
        `|${'b'.repeat(64)}|${changed}`,
      ),
    ]);
    expect(signed1).to.not.equal(changed);
  });

  it('problems are grouped by version in order, those of no version last; a release pointer problem is reported', async () => {
    const run = await signedRun(3);
    await fs.writeFile(path.join(run, 'latest'), 'v000001\n');
    await fs.writeFile(f(run, 2, 'x'), 'x');
    await fs.writeFile(f(run, 0, 'y'), 'y');
    await fs.writeFile(path.join(run, 'release'), 'bad');
    const r = await verifyRun(run);
    expect(r.problems.map((p) => `${p.kind}|${p.version}`)).to.deep.equal(['extra-file|0', 'extra-file|2', 'latest|null', 'release|null']);
    expect(r.problems[3]).to.deep.equal({
      version: null,
      file: 'release',
      kind: 'release',
      message: 'release: does not name a version as the coordinator writes it: "bad"',
    });
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

describe('fedtune verify, in-process: the edge of each check', function () {
  this.timeout(60_000);
  let root: string;
  let n = 0;
  before(async () => {
    root = await tempDir('verify-mutants-2');
  });
  after(() => fs.rm(root, { recursive: true, force: true }));
  async function signedRun(count: number, runId = 'run'): Promise<string> {
    const run = path.join(root, `run${n++}`);
    const store = new FsCheckpointStore(run, { signer: KEY_A });
    for (let v = 0; v < count; v++) await store.commit(commitInput(v, runId));
    return run;
  }
  const f = (run: string, v: number, name: string): string => path.join(run, 'versions', versionDirName(v), name);
  async function edit(run: string, v: number, change: (m: Record<string, unknown>) => void): Promise<void> {
    const m = JSON.parse(await fs.readFile(f(run, v, MANIFEST_FILE), 'utf8')) as Record<string, unknown>;
    change(m);
    const text = stableJson(m);
    await fs.writeFile(f(run, v, MANIFEST_FILE), text);
    await fs.writeFile(f(run, v, MANIFEST_SIG_FILE), signManifest(Buffer.from(text), KEY_A));
  }
  async function flipSignature(run: string, v: number): Promise<void> {
    const s = JSON.parse(await fs.readFile(f(run, v, MANIFEST_SIG_FILE), 'utf8')) as Record<string, string>;
    const sig = Buffer.from(s.signature, 'base64');
    sig[5] ^= 1;
    await fs.writeFile(f(run, v, MANIFEST_SIG_FILE), stableJson({ ...s, signature: b64(sig) }));
  }

  it('one missing version is one gap, without "as is every version up to"', async () => {
    const run = await signedRun(3);
    await fs.rm(f(run, 1, ''), { recursive: true });
    expect(flat(await verifyRun(run))).to.deep.equal(['version-gap|1|null|v000001: missing: the chain has a gap (versions run v000000…v000002)']);
  });

  it("a signature that does not verify is not trusted: v000000's flipped, v000001's key is, and an export has no key id", async () => {
    const run = await signedRun(2);
    await flipSignature(run, 0);
    const r = await verifyRun(run);
    expect(r.notes).to.deep.equal(['v000000 has no valid signature; trusting the key of v000001 instead']);
    expect(r.key!.source).to.equal('v000001/manifest.sig');
    const d = await verifyVersionDir(f(run, 0, ''), { publicKey: KEY_B.publicKey });
    expect(d.keyId).to.equal(null);
    expect(flat(d)).to.deep.equal([`signature-invalid|0|manifest.sig|v000000/manifest.sig: ed25519 signature does not verify under its key ${KEY_A.keyId}`]);
  });

  it('run ids that are not strings are neither counted nor reported as another run', async () => {
    const run = await signedRun(3);
    await edit(run, 2, (m) => (m.runId = 5));
    await edit(run, 1, (m) => (m.runId = 5));
    const r = await verifyRun(run);
    expect(r.problems.filter((p) => p.kind === 'run-id' || p.kind === 'manifest').map((p) => p.message)).to.deep.equal([
      'v000001/manifest.json: runId is not a string',
      'v000002/manifest.json: runId is not a string',
    ]);
  });

  it('a parent that is not {version, manifestSha256} is a shape problem, and no parent-link problem on top', async () => {
    const run = await signedRun(2);
    const h0 = sha(await fs.readFile(f(run, 0, MANIFEST_FILE)));
    const shape = 'manifest|1|manifest.json|v000001/manifest.json: parent is neither null nor {version, manifestSha256}';
    for (const [parent, more] of [
      ['x', []],
      [[0, h0], []],
      [{ version: 0, manifestSha256: 5 }, []],
      [{ version: '0', manifestSha256: h0 }, ['parent-link|1|manifest.json|v000001/manifest.json: parent.version is "0", not 0']],
    ] as const) {
      await edit(run, 1, (m) => (m.parent = parent));
      expect(flat(await verifyRun(run)), JSON.stringify(parent)).to.deep.equal([shape, ...more]);
    }
  });

  it('file names with a slash or a space inside are not names a manifest may list', async () => {
    const run = await signedRun(1);
    const good = sha('z');
    await edit(run, 0, (m) => Object.assign(m.files as Record<string, string>, { 'a/b': good, 'a b': good, 'a.': good }));
    await fs.writeFile(f(run, 0, 'a.'), 'z');
    expect(flat(await verifyRun(run))).to.deep.equal([
      'manifest|0|manifest.json|v000000/manifest.json: files lists "a b", which is not a file name it may list',
      'manifest|0|manifest.json|v000000/manifest.json: files lists "a/b", which is not a file name it may list',
    ]);
  });

  it("the manifest's files are checked in name order, whatever order a hand-written manifest lists them in", async () => {
    const run = await signedRun(1);
    const m = JSON.parse(await fs.readFile(f(run, 0, MANIFEST_FILE), 'utf8')) as Record<string, unknown>;
    const good = sha('z');
    m.files = { 'z/z': good, 'b b': good, ...(m.files as Record<string, string>), 'a/a': good };
    const text = JSON.stringify(m);
    await fs.writeFile(f(run, 0, MANIFEST_FILE), text);
    await fs.writeFile(f(run, 0, MANIFEST_SIG_FILE), signManifest(Buffer.from(text), KEY_A));
    expect(flat(await verifyRun(run)).map((p) => p.split(': ').slice(1).join(': '))).to.deep.equal([
      'files lists "a/a", which is not a file name it may list',
      'files lists "b b", which is not a file name it may list',
      'files lists "z/z", which is not a file name it may list',
    ]);
  });

  it('notes and extra files come in name order, whatever order the directory lists them in', async () => {
    const run = await signedRun(1);
    for (const name of ['zz', 'mm', 'aa']) {
      await fs.writeFile(path.join(run, 'versions', name), '');
      await fs.writeFile(f(run, 0, name), '');
    }
    const r = await verifyRun(run);
    expect(r.notes).to.deep.equal(['aa', 'mm', 'zz'].map((x) => `versions/${x}: not a version directory, ignored`));
    expect(r.problems.map((p) => p.file)).to.deep.equal(['aa', 'mm', 'zz']);
  });

  it("verifyVersionDir reports against the manifest's own version number", async () => {
    const run = await signedRun(1);
    const m = JSON.parse(await fs.readFile(f(run, 0, MANIFEST_FILE), 'utf8')) as Record<string, unknown>;
    await edit(run, 0, (x) => ((x.version = 3), (x.format = 'x')));
    expect(flat(await verifyVersionDir(f(run, 0, '')))).to.deep.equal([
      'manifest|3|manifest.json|v000003/manifest.json: format "x" is not fedtune.checkpoint/1',
    ]);
    expect(m.version).to.equal(0);
  });
});
