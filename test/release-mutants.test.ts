// The release pointer (coordinator/checkpoints/release.ts, release-check.ts) in-process and exactly: reading it
// strictly, what `fedtune verify` says of it, writing it, finishing a move a crash cut short, resolving a version
// name, and setting it by hand against a signed run. Real runs in a temporary directory. Found missing by mutation
// testing (bench/MUTATION.md, group release): test/early-stopping.test.ts reaches these through the `fedtune`
// command in a child process, where Stryker does not see them.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { manifestKeyId, manifestSigner } from '../coordinator/checkpoints/signature';
import { readRelease, releaseProblem } from '../coordinator/checkpoints/release-check';
import { chainVerifiedTo, reconcileRelease, resolveVersion, setRelease, writeRelease } from '../coordinator/checkpoints/release';
import type { BestVersionRecord, Manifest } from '../coordinator/checkpoints/types';
import type { Problem, VerifyResult } from '../coordinator/checkpoints/verify-types';
import { loadOrCreateCoordinatorKeys } from '../coordinator/keys';
import { tempDir } from './harness';
import { commitInput } from './checkpoint-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const best = (version: number): BestVersionRecord => ({ metric: 'eval_loss', mode: 'min', version, value: 0.5, sinceBest: 0 });
const errorOf = async (p: Promise<unknown>): Promise<string> =>
  (
    (await p.then(
      () => new Error('(resolved)'),
      (e: unknown) => e,
    )) as Error
  ).message;
const problem = (version: number | null, message: string): Problem => ({ version, file: null, kind: 'hash', message }) as unknown as Problem;

describe('the release pointer, in-process and exactly', function () {
  this.timeout(60_000);
  let root: string;
  let n = 0;
  before(async () => {
    root = await tempDir('release-mutants');
  });
  after(() => fs.rm(root, { recursive: true, force: true }));
  const dir = async (): Promise<string> => {
    const d = path.join(root, `d${n++}`);
    await fs.mkdir(d, { recursive: true });
    return d;
  };
  const content = (d: string): Promise<string | null> => fs.readFile(path.join(d, 'release'), 'utf8').catch(() => null);
  /** A signed run: keys/coordinator.json and `count` versions; the last `withBest` manifest records a best. */
  async function signedRun(count: number, bestOf?: number): Promise<{ run: string; store: FsCheckpointStore }> {
    const run = path.join(root, `run${n++}`);
    const keys = await loadOrCreateCoordinatorKeys(path.join(run, 'keys', 'coordinator.json'));
    const store = new FsCheckpointStore(run, { signer: manifestSigner(keys.sign) });
    for (let v = 0; v < count; v++) {
      const input = commitInput(v, 'run');
      await store.commit(bestOf === undefined ? input : { ...input, manifest: { ...input.manifest, best: best(bestOf) } });
    }
    return { run, store };
  }

  it('readRelease takes exactly what the coordinator writes, and quotes the first 40 characters of anything else', async () => {
    const d = await dir();
    expect(await readRelease(d)).to.equal(null);
    for (const [text, v] of [
      ['v000004\n', 4],
      ['v1000000\n', 1000000],
    ] as const) {
      await fs.writeFile(path.join(d, 'release'), text);
      expect(await readRelease(d)).to.equal(v);
    }
    for (const text of ['v000004', ' v000004\n', 'v0000004\n', 'v4\n', 'v000004\n\n', 'x'.repeat(50)]) {
      await fs.writeFile(path.join(d, 'release'), text);
      expect(await errorOf(readRelease(d))).to.equal(`does not name a version as the coordinator writes it: ${JSON.stringify(text.slice(0, 40))}`);
    }
    await fs.rm(path.join(d, 'release'));
    await fs.mkdir(path.join(d, 'release'));
    expect(await errorOf(readRelease(d))).to.match(/^EISDIR/);
  });

  it("releaseProblem: the pointer's sentence for verify, or null", async () => {
    const d = await dir();
    const present = new Set([0, 1, 2, 3]);
    expect(await releaseProblem(d, present, 3, [])).to.equal(null);
    await fs.writeFile(path.join(d, 'release'), 'v2\n');
    expect(await releaseProblem(d, present, 3, [])).to.equal('does not name a version as the coordinator writes it: "v2\\n"');
    await writeRelease(d, 7);
    expect(await releaseProblem(d, present, 3, [])).to.equal('names v000007, which does not exist');
    await writeRelease(d, 3);
    expect(await releaseProblem(d, present, 2, [])).to.equal('names v000003, beyond latest v000002');
    expect(await releaseProblem(d, present, null, [])).to.equal(null);
    expect(await releaseProblem(d, present, 3, [problem(null, 'latest: gone'), problem(4, 'v4 bad')])).to.equal(null);
    expect(await releaseProblem(d, present, 3, [problem(null, 'latest: gone'), problem(3, 'v3 bad'), problem(1, 'v1 bad')])).to.equal(
      'names v000003, whose chain does not verify (v3 bad)',
    );
  });

  it('writeRelease replaces the pointer atomically, each step named release:…', async () => {
    const d = await dir();
    const steps: string[] = [];
    await writeRelease(d, 3, (point, file) => void steps.push(`${point} ${path.basename(file)}`));
    expect(await content(d)).to.equal('v000003\n');
    expect(steps.map((s) => s.replace(/\.[0-9a-f]{12}\.tmp/, '.X.tmp'))).to.deep.equal([
      'release:open .release.X.tmp',
      'release:write .release.X.tmp',
      'release:fsync .release.X.tmp',
      'release:rename release',
      `release:fsync-dir ${path.basename(d)}`,
    ]);
    expect(await fs.readdir(d)).to.deep.equal(['release']);
  });

  it('reconcileRelease moves the pointer only to a latest version that is itself the best; clears what a cut write left', async () => {
    const d = await dir();
    const m = (version: number, b?: number): Manifest => ({ version, best: b === undefined ? undefined : best(b) }) as Manifest;
    await fs.writeFile(path.join(d, '.release.0123456789ab.tmp'), 'v00');
    expect(await reconcileRelease(d, m(4))).to.equal(false);
    expect(await fs.readdir(d)).to.deep.equal([]);
    expect(await reconcileRelease(d, m(4, 2))).to.equal(false);
    expect(await content(d)).to.equal(null);
    expect(await reconcileRelease(d, m(4, 4))).to.equal(true);
    expect(await content(d)).to.equal('v000004\n');
    expect(await reconcileRelease(d, m(4, 4))).to.equal(false);
    await writeRelease(d, 2); // a rollback by the operator: not the crash's doing, but the latest is the best
    expect(await reconcileRelease(d, m(4, 4))).to.equal(true);
    await fs.writeFile(path.join(d, 'release'), 'garbled');
    const steps: string[] = [];
    expect(await reconcileRelease(d, m(5, 5), (p) => void steps.push(p))).to.equal(true);
    expect([await content(d), steps[0]]).to.deep.equal(['v000005\n', 'release:open']);
  });

  it('resolveVersion: a number, latest, best or release, each refusal with its sentence', async () => {
    const { run, store } = await signedRun(3, 1);
    expect([await resolveVersion(store, '7'), await resolveVersion(store, '12')]).to.deep.equal([7, 12]);
    expect(await resolveVersion(store, 'latest')).to.equal(2);
    expect(await resolveVersion(store, 'best')).to.equal(1);
    expect(await errorOf(resolveVersion(store, 'release'))).to.equal(`${run} has no release pointer`);
    await writeRelease(run, 1);
    expect(await resolveVersion(new FsCheckpointStore(run, { readOnly: true }), 'release')).to.equal(1);
    for (const ref of ['v1', '-1', 'Latest', '1.5', '']) {
      expect(await errorOf(resolveVersion(store, ref))).to.equal(`version ${JSON.stringify(ref)}: a version number (0, 1, …), latest, best or release`);
    }
    const { store: plain } = await signedRun(2);
    expect(await errorOf(resolveVersion(plain, 'best'))).to.equal(
      `no best version recorded in ${plain.runDir}: its manifests carry no figures for earlyStopping.metric`,
    );
    const empty = new FsCheckpointStore(path.join(root, `empty${n++}`));
    expect(await errorOf(resolveVersion(empty, 'latest'))).to.equal(`${empty.runDir} has no versions`);
    // A run with no versions: 'best' says so (not a TypeError), and a bad name is refused before any listing.
    expect(await errorOf(resolveVersion(empty, 'best'))).to.equal(
      `no best version recorded in ${empty.runDir}: its manifests carry no figures for earlyStopping.metric`,
    );
    const broken = await dir(); // not a run: listing it throws
    await fs.writeFile(path.join(broken, 'versions'), '');
    expect(await errorOf(new FsCheckpointStore(broken, { readOnly: true }).list())).to.not.equal('(resolved)');
    expect(await errorOf(resolveVersion(new FsCheckpointStore(broken, { readOnly: true }), 'v1'))).to.equal(
      'version "v1": a version number (0, 1, …), latest, best or release',
    );
  });

  it('chainVerifiedTo: the version must be present and it and every version before it free of problems', () => {
    const r = (problems: Problem[]): VerifyResult =>
      ({ results: [0, 1, 2, 3].map((version) => ({ version, present: version !== 2, ok: true })), problems }) as unknown as VerifyResult;
    expect(chainVerifiedTo(r([]), 3)).to.equal(null);
    expect(chainVerifiedTo(r([]), 2)).to.equal('v000002 does not exist');
    expect(chainVerifiedTo(r([]), 9)).to.equal('v000009 does not exist');
    expect(chainVerifiedTo(r([problem(null, 'latest: x'), problem(4, 'v4: y')]), 3)).to.equal(null);
    expect(chainVerifiedTo(r([problem(3, 'v3: a')]), 3)).to.equal('the chain up to v000003 does not verify: v3: a');
    expect(chainVerifiedTo(r([problem(1, 'v1: a'), problem(3, 'v3: b'), problem(4, 'v4: c')]), 3)).to.equal(
      'the chain up to v000003 does not verify: v1: a (and 1 more problems)',
    );
  });

  it('setRelease points at a version whose chain verifies under the run key, returning what it named before; refuses otherwise, unchanged', async () => {
    const { run } = await signedRun(4);
    expect(await setRelease(run, 2)).to.deep.equal({ previous: null });
    expect(await content(run)).to.equal('v000002\n');
    expect(await setRelease(run, 3)).to.deep.equal({ previous: 2 });
    await fs.writeFile(path.join(run, 'release'), 'garbled');
    expect(await setRelease(run, 1)).to.deep.equal({ previous: null });
    expect(await content(run)).to.equal('v000001\n');
    expect(await errorOf(setRelease(run, 6))).to.equal('refused: v000006 does not exist; the release pointer was not changed');
    const other = (await loadOrCreateCoordinatorKeys(path.join(root, `other${n++}.json`))).sign.publicKey;
    const otherId = manifestKeyId(other);
    const runId = manifestKeyId((await loadOrCreateCoordinatorKeys(path.join(run, 'keys', 'coordinator.json'))).sign.publicKey);
    expect(await errorOf(setRelease(run, 2, other))).to.equal(
      `refused: the chain up to v000002 does not verify: v000000/manifest.sig: signed by key ${runId}, not by the trusted key ${otherId} (from --key) (and 2 more problems); the release pointer was not changed`,
    );
    await fs.writeFile(path.join(run, 'latest'), 'v000001\n'); // moved back: v000002 and v000003 lie beyond it
    expect(await errorOf(setRelease(run, 3))).to.equal('refused: v000003 is beyond latest; the release pointer was not changed');
    await fs.rm(path.join(run, 'latest'));
    expect(await errorOf(setRelease(run, 2))).to.equal('refused: v000002 is beyond latest; the release pointer was not changed');
    expect(await errorOf(setRelease(run, 0))).to.equal('refused: v000000 is beyond latest; the release pointer was not changed');
    expect(await content(run)).to.equal('v000001\n');
  });
});
