// `fedtune verify`'s run-level checks (coordinator/checkpoints/verify.ts) in-process and exactly: what is not a run
// directory, the versions found and their gaps, the latest pointer, run ids, parent links, the order of the findings;
// each finding of verifyRun compared whole (kind, version, file, sentence, digests, notes, key) on real signed runs
// damaged by hand.
// Written for mutation testing (bench/MUTATION.md, group verify): test/verify.test.ts checks many findings by where
// they are, not by what they say. Shared set-up: test/verify-kit.ts.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { MANIFEST_FILE, versionDirName } from '../coordinator/checkpoints/fs-store';
import { VerifyUsageError, verifyRun, verifyVersionDir } from '../coordinator/checkpoints/verify';
import { KEY_A, b64, errorOf, flat, signedRuns } from './verify-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('fedtune verify, in-process and exactly', function () {
  this.timeout(60_000);
  const { root, fresh, signedRun, f, edit, mhash } = signedRuns('verify-run-mutants');

  it('refuses what is not a run directory, as a usage error', async () => {
    const file = fresh('file');
    await fs.writeFile(file, 'x');
    for (const [dir, msg] of [
      [file, `${file} is not a directory`],
      [path.join(root(), 'nope'), `${path.join(root(), 'nope')} is not a directory`],
      [root(), `${root()} is not a fedtune run directory (it has no versions/)`],
    ]) {
      const e = await errorOf(verifyRun(dir));
      expect(e).to.be.instanceOf(VerifyUsageError);
      expect(e.message).to.equal(msg);
      expect(e.name).to.equal('VerifyUsageError');
    }
    const d = fresh('d');
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
    for (const dir of [file, path.join(root(), 'nope')]) {
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
    const empty = fresh('e');
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
    const empty = fresh('e');
    await fs.mkdir(path.join(empty, 'versions'), { recursive: true });
    expect((await verifyRun(empty)).problems.map((p) => p.kind)).to.deep.equal(['no-versions']);
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
});
