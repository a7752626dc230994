// `fedtune recover`'s logic (coordinator/checkpoints/recover.ts) called in-process, where mutation testing sees it
// (test/recover.test.ts runs the command as a child process). Real runs in a temporary directory: a key file and
// five versions signed with it. Every result is compared whole (the lines told to the operator included), every
// refusal by its whole message, and every refusal leaves the run as it was.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import nacl from 'tweetnacl';
import { FsCheckpointStore, NotARunError } from '../coordinator/checkpoints/fs-store';
import { manifestKeyId, manifestSigner } from '../coordinator/checkpoints/signature';
import { RecoverRefusedError, recoverRun, runKey, type RecoverOptions } from '../coordinator/checkpoints/recover';
import { loadOrCreateCoordinatorKeys } from '../coordinator/keys';
import { tempDir } from './harness';
import { commitInput } from './checkpoint-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Every path under `dir` with its bytes' hash. */
async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = path.join(e.parentPath, e.name);
    out.push(
      `${path.relative(dir, p)} ${
        e.isFile()
          ? createHash('sha256')
              .update(await fs.readFile(p))
              .digest('hex')
          : 'dir'
      }`,
    );
  }
  return out.sort();
}

async function refused(run: string, opts: RecoverOptions, message: string): Promise<void> {
  const before = await snapshot(run);
  const err = await recoverRun(run, opts).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).to.be.instanceOf(RecoverRefusedError);
  expect((err as Error).message).to.equal(message);
  expect(await snapshot(run)).to.deep.equal(before);
}

describe('fedtune recover, in-process and exactly', function () {
  this.timeout(60_000);
  let root: string;
  let n = 0;
  before(async () => {
    root = await tempDir('recover-mutants');
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  /** A run laid out as a coordinator lays it out: keys/coordinator.json and v000000…v000004 signed with it. */
  async function makeRun(versions = 5): Promise<{ run: string; keyId: string }> {
    const run = path.join(root, `run${n++}`);
    const keys = await loadOrCreateCoordinatorKeys(path.join(run, 'keys', 'coordinator.json'));
    const store = new FsCheckpointStore(run, { signer: manifestSigner(keys.sign) });
    for (let v = 0; v < versions; v++) await store.commit(commitInput(v, 'run'));
    return { run, keyId: manifestKeyId(keys.sign.publicKey) };
  }
  const latest = (run: string): Promise<string | null> => fs.readFile(path.join(run, 'latest'), 'utf8').catch(() => null);
  const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex').slice(0, 12);
  /** Flips the adapter's last byte; returns the problem verify reports for it. */
  async function damage(run: string, v: number): Promise<string> {
    const p = path.join(run, 'versions', `v00000${v}`, 'adapter_model.safetensors');
    const b = await fs.readFile(p);
    const was = sha(b);
    b[b.length - 1] ^= 1;
    await fs.writeFile(p, b);
    return `v00000${v}/adapter_model.safetensors: sha256 ${sha(b)}… does not match the manifest's ${was}…`;
  }
  const message = async (run: string, opts: RecoverOptions = {}): Promise<string> => ((await recoverRun(run, opts).catch((e: Error) => e)) as Error).message;

  it('a missing pointer: a dry run says what it would do and changes nothing; the run then names the newest version; again, nothing to do', async () => {
    const { run, keyId } = await makeRun();
    await fs.rm(path.join(run, 'latest'));
    const before = await snapshot(run);
    const verified = `verified v000000…v000004: signatures by key ${keyId} (from keys/coordinator.json), every file hash and parent link`;
    const dry = await recoverRun(run, { dryRun: true });
    expect({ ...dry, key: dry.key?.keyId }).to.deep.equal({
      previous: null,
      latest: 4,
      changed: true,
      movedAside: [],
      key: keyId,
      lines: [verified, 'latest was missing; it would name v000004'],
    });
    expect(await snapshot(run)).to.deep.equal(before);
    // A temporary left by an interrupted pointer move is removed, and said so.
    await fs.writeFile(path.join(run, '.latest.0123456789ab.tmp'), 'v0000');
    const done = await recoverRun(run);
    expect([done.previous, done.latest, done.changed, done.movedAside, done.lines]).to.deep.equal([
      null,
      4,
      true,
      [],
      [verified, 'removed .latest.0123456789ab.tmp, left by an interrupted move of the latest pointer', 'latest was missing; it now names v000004'],
    ]);
    expect(await latest(run)).to.equal('v000004\n');
    expect(await snapshot(run)).to.deep.equal([...before, `latest ${createHash('sha256').update('v000004\n').digest('hex')}`].sort());
    const again = await recoverRun(run);
    expect([again.previous, again.changed, again.lines]).to.deep.equal(['v000004', false, [verified, 'latest already names v000004: nothing to do']]);
  });

  it('a pointer moved back is moved forward; a garbled one is quoted; a key given by the caller is named as given', async () => {
    const { run, keyId } = await makeRun();
    await fs.writeFile(path.join(run, 'latest'), 'v000001\n');
    const r = await recoverRun(run);
    expect([r.previous, r.latest, r.changed, r.lines.at(-1)]).to.deep.equal(['v000001', 4, true, 'latest named "v000001"; it now names v000004']);
    await fs.writeFile(path.join(run, 'latest'), '  v4 \n');
    const pub = (await runKey(run))!.publicKey;
    const g = await recoverRun(run, { publicKey: pub, keySource: '--key abc' });
    expect(g.lines).to.deep.equal([
      `verified v000000…v000004: signatures by key ${keyId} (from --key abc), every file hash and parent link`,
      'latest named "v4"; it now names v000004',
    ]);
    await fs.writeFile(path.join(run, 'latest'), 'v000004');
    const k = await recoverRun(run, { publicKey: pub });
    expect([k.previous, k.changed, k.lines]).to.deep.equal([
      'v000004',
      true, // "v000004" without its newline is rewritten
      [`verified v000000…v000004: signatures by key ${keyId} (from --key), every file hash and parent link`, 'latest named "v000004"; it now names v000004'],
    ]);
    expect(await latest(run)).to.equal('v000004\n');
  });

  it('a broken chain is refused naming the break, how many more problems, and the newest intact version; --to moves the rest aside', async () => {
    const { run } = await makeRun();
    await fs.rm(path.join(run, 'latest'));
    const p3 = await damage(run, 3);
    const verify = `run \`fedtune verify ${run}\``;
    await refused(
      run,
      {},
      `the chain is broken at v000003: ${p3}. Nothing was changed. The newest version whose chain is intact is v000002: \`fedtune recover ${run} --to 2\` makes it latest and moves v000003…v000004 to orphans/.`,
    );
    await damage(run, 4);
    expect(await message(run)).to.equal(
      `the chain is broken at v000003: ${p3} (and 1 more problem: ${verify}). Nothing was changed. The newest version whose chain is intact is v000002: \`fedtune recover ${run} --to 2\` makes it latest and moves v000003…v000004 to orphans/.`,
    );
    await refused(run, { version: 7 }, '--to 7: v000007 does not exist (versions run up to v000004)');
    await refused(run, { version: 3 }, `--to 3: its chain does not verify: ${p3}. Nothing was changed.`);
    await refused(run, { version: 4 }, `--to 4: its chain does not verify: ${p3} (and 1 more problem: ${verify}). Nothing was changed.`);
    const p2 = await damage(run, 2);
    expect(await message(run)).to.equal(
      `the chain is broken at v000002: ${p2} (and 2 more problems: ${verify}). Nothing was changed. The newest version whose chain is intact is v000001: \`fedtune recover ${run} --to 1\` makes it latest and moves v000002…v000004 to orphans/.`,
    );

    const before = await snapshot(run);
    const dry = await recoverRun(run, { version: 1, dryRun: true });
    expect(dry.movedAside).to.have.length(3);
    expect(dry.lines.slice(1)).to.deep.equal([
      ...['v000002', 'v000003', 'v000004'].map((v, i) => `would move ${v} to ${dry.movedAside[i]}`),
      'latest was missing; it would name v000001',
    ]);
    expect(await snapshot(run)).to.deep.equal(before);
    const moved = await recoverRun(run, { version: 1 });
    const orphans = path.dirname(moved.movedAside[0]);
    expect(orphans).to.match(/^orphans\/\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d-\d{3}Z$/);
    expect(moved.movedAside).to.deep.equal(['v000002', 'v000003', 'v000004'].map((v) => path.join(orphans, v)));
    expect(moved.lines.slice(1)).to.deep.equal([
      ...moved.movedAside.map((m) => `moved ${path.basename(m)} to ${m}`),
      'latest was missing; it now names v000001',
    ]);
    expect([moved.changed, await latest(run)]).to.deep.equal([true, 'v000001\n']);
    expect(await fs.readdir(path.join(run, 'versions'))).to.deep.equal(['v000000', 'v000001']);
    expect(await fs.readdir(path.join(run, orphans))).to.deep.equal(['v000002', 'v000003', 'v000004']);
    // Already latest, but versions beyond it: changed (they are moved), the pointer is left as it is.
    const { run: run2 } = await makeRun(3);
    const beyond = await recoverRun(run2, { version: 1 });
    expect([beyond.previous, beyond.changed, beyond.movedAside.length, await latest(run2)]).to.deep.equal(['v000002', true, 1, 'v000001\n']);
  });

  it('a break at v000000 leaves no intact version to offer', async () => {
    const { run } = await makeRun(2);
    const p0 = await damage(run, 0);
    await refused(run, {}, `the chain is broken at v000000: ${p0}. Nothing was changed. No version has an intact chain from v000000.`);
  });

  it('holds the run lock as `fedtune recover` while it works, and says when it removed a stale one', async () => {
    const { run } = await makeRun(2);
    const lockFile = path.join(run, 'coordinator.lock');
    const seen: string[] = [];
    let settled = false;
    const done = recoverRun(run).finally(() => (settled = true));
    while (!settled) {
      const t = await fs.readFile(lockFile, 'utf8').catch(() => null);
      if (t !== null) seen.push((JSON.parse(t) as { command: string }).command);
    }
    await done;
    expect(seen.length).to.be.greaterThan(0);
    expect([...new Set(seen)]).to.deep.equal(['fedtune recover']);
    expect(await fs.stat(lockFile).catch(() => null)).to.equal(null);
    // A lock left by a process that no longer runs, on this host.
    const stale = { pid: 2 ** 22 - 3, hostname: os.hostname(), startedAt: '2026-11-29T00:00:00.000Z', command: 'coordinator', processStart: '1', token: 'ab' };
    await fs.writeFile(lockFile, JSON.stringify(stale) + '\n');
    const r = await recoverRun(run);
    expect(r.lines[0]).to.equal(
      `removed a stale lock left by coordinator (pid ${stale.pid} on ${stale.hostname}, started ${stale.startedAt}), which no longer runs`,
    );
  });

  it('--to the version latest already names, with versions beyond it: they are moved aside and the pointer file is left alone', async () => {
    const { run } = await makeRun(3);
    await fs.writeFile(path.join(run, 'latest'), 'v000001\n');
    const ino = (await fs.stat(path.join(run, 'latest'))).ino;
    const r = await recoverRun(run, { version: 1 });
    expect([r.previous, r.changed, r.movedAside.length, r.lines.at(-1)]).to.deep.equal(['v000001', true, 1, 'latest named "v000001"; it now names v000001']);
    expect((await fs.stat(path.join(run, 'latest'))).ino).to.equal(ino);
    expect(await fs.readdir(path.join(run, 'versions'))).to.deep.equal(['v000000', 'v000001']);
  });

  it('a missing version is a gap: --to it says it does not exist; a break at v000001 offers v000000', async () => {
    const { run } = await makeRun(4);
    await fs.rm(path.join(run, 'versions', 'v000002'), { recursive: true });
    await refused(run, { version: 2 }, '--to 2: v000002 does not exist (versions run up to v000003)');
    const { run: run2 } = await makeRun(3);
    await fs.rm(path.join(run2, 'latest'));
    const p1 = await damage(run2, 1);
    await refused(
      run2,
      {},
      `the chain is broken at v000001: ${p1}. Nothing was changed. The newest version whose chain is intact is v000000: \`fedtune recover ${run2} --to 0\` makes it latest and moves v000001…v000002 to orphans/.`,
    );
    const err = await recoverRun(run2).catch((e: Error) => e);
    expect([(err as Error).name, err instanceof RecoverRefusedError]).to.deep.equal(['RecoverRefusedError', true]);
  });

  it('refuses what is not a run, a run without versions, and a key file without a public key; says when it trusts the first signer', async () => {
    const none = path.join(root, 'not-a-run');
    await fs.mkdir(none);
    const e1 = await recoverRun(none).catch((e: Error) => e);
    expect(e1).to.be.instanceOf(NotARunError);
    expect((e1 as Error).message).to.equal(`${none} is not a fedtune run directory (it has no versions/)`);
    await fs.mkdir(path.join(none, 'versions'));
    await refused(none, {}, `${none} holds no versions: there is nothing to point latest at`);
    const { run } = await makeRun(2);
    const keyFile = path.join(run, 'keys', 'coordinator.json');
    const k = JSON.parse(await fs.readFile(keyFile, 'utf8')) as Record<string, unknown>;
    await fs.writeFile(keyFile, JSON.stringify({ ...k, signPublicKey: 'AAAA' }));
    await refused(run, {}, `${keyFile} holds no signPublicKey: pass the run's public key with --key`);
    await fs.writeFile(keyFile, '{');
    await refused(run, {}, `${keyFile} holds no signPublicKey: pass the run's public key with --key`);
    await fs.rm(path.join(run, 'keys'), { recursive: true });
    expect(await runKey(run)).to.equal(undefined);
    const r = await recoverRun(run);
    expect(r.lines[0]).to.equal('no --key and no keys/coordinator.json: trusting the key of the first validly signed version');
    expect(r.key?.keyId).to.match(/^[0-9a-f]{16}$/);
    // Versions signed by another key than the one given: refused at v000000.
    const other = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(7)).publicKey;
    const m = await message(run, { publicKey: other });
    expect(m).to.match(/^the chain is broken at v000000: v000000\/manifest\.sig: signed by key [0-9a-f]{16}, not by the trusted key/);
  });
});
