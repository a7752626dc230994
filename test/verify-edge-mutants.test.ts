// `fedtune verify` in-process at the edge of each check (coordinator/checkpoints/verify.ts): one gap, a signature that
// does not verify, run ids and parents of the wrong type, file names a manifest may not list, the order of checks,
// notes and extras whatever order the disk or the manifest gives.
// Written for mutation testing (bench/MUTATION.md, group verify): test/verify.test.ts checks many findings by where
// they are, not by what they say. Shared set-up: test/verify-kit.ts.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { MANIFEST_FILE } from '../coordinator/checkpoints/fs-store';
import { MANIFEST_SIG_FILE, signManifest } from '../coordinator/checkpoints/signature';
import { verifyRun, verifyVersionDir } from '../coordinator/checkpoints/verify';
import { KEY_A, KEY_B, flat, sha, signedRuns } from './verify-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('fedtune verify, in-process: the edge of each check', function () {
  this.timeout(60_000);
  const { signedRun, f, edit, flipSignature } = signedRuns('verify-edge-mutants');

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
