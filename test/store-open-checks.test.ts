// The checkpoint store checks a run directory's chain when it opens it, before changing anything: every version
// up to the pointer must belong to the run (the configured run.id, or one run id throughout) and link to the
// version before it by manifest hash. A coordinator pointed at another run's directory, or at a chain with a
// version replaced, deleted or edited, refuses to start with a message naming the first break — and leaves the
// directory exactly as it was (not even a stray temporary is tidied).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { CheckpointIntegrityError, FsCheckpointStore, MANIFEST_FILE, RunMismatchError, versionDirName } from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import type { Manifest, VersionInput } from '../coordinator/checkpoints/types';
import { settled, smallAdapter, snapshot, startCoordinator, tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

function input(v: number, runId = 'run-x'): VersionInput {
  return {
    adapter: smallAdapter(v),
    adapterConfig: { peft_type: 'LORA' },
    manifest: {
      runId,
      round: v,
      attempt: 1,
      strategy: 'fedavg',
      participants: [],
      metrics: {},
      config: {},
      seeds: { run: 1 },
      baseModel: { name: 'tiny', sha256: 'ab'.repeat(32) },
      protocolVersion: 3,
    },
  };
}

describe('checkpoint store: run id and chain checked on open', function () {
  this.timeout(30_000);
  let run: string;
  const manifestFile = (v: number): string => path.join(run, 'versions', versionDirName(v), MANIFEST_FILE);
  const editManifest = async (v: number, edit: (m: Manifest) => Manifest): Promise<void> =>
    fs.writeFile(manifestFile(v), stableJson(edit(JSON.parse(await fs.readFile(manifestFile(v), 'utf8')) as Manifest)));

  beforeEach(async () => {
    run = path.join(await tempDir('store-open'), 'run');
    const s = new FsCheckpointStore(run, { runId: 'run-x' });
    for (let v = 0; v < 3; v++) await s.commit(input(v));
    // A temporary an interrupted commit would leave: an open that goes ahead removes it, a refusal must not.
    await fs.mkdir(path.join(run, 'versions', '.tmp-v000003-abcdef012345'));
  });
  afterEach(() => fs.rm(path.dirname(run), { recursive: true, force: true }));

  /** Opens (writable and read-only) and expects both refused with `cls` and `message`, the directory untouched. */
  async function refusedOnOpen(opts: { runId?: string }, cls: typeof CheckpointIntegrityError, message: string | RegExp): Promise<void> {
    for (const readOnly of [false, true]) {
      const before = await snapshot(run);
      const dirs = (await fs.readdir(path.join(run, 'versions'))).sort();
      const err = await new FsCheckpointStore(run, { ...opts, readOnly }).latest().catch((e: unknown) => e as Error);
      expect(err, `readOnly ${readOnly}`).to.be.instanceOf(cls);
      if (typeof message === 'string') expect((err as Error).message).to.contain(message);
      else expect((err as Error).message).to.match(message);
      expect((err as Error).message).to.contain('Nothing was changed');
      expect(await snapshot(run)).to.deep.equal(before);
      expect((await fs.readdir(path.join(run, 'versions'))).sort()).to.deep.equal(dirs);
    }
  }

  it('opens its own run (and then tidies the temporary)', async () => {
    const s = new FsCheckpointStore(run, { runId: 'run-x' });
    expect((await s.latest())!.manifest.version).to.equal(2);
    expect(await fs.readdir(path.join(run, 'versions'))).to.not.include('.tmp-v000003-abcdef012345');
  });

  it('refuses a run directory whose versions belong to another run id', async () => {
    await refusedOnOpen({ runId: 'run-y' }, RunMismatchError, 'v000000 belongs to run "run-x", not to this run "run-y"');
  });

  it('refuses versions of two runs in one chain, even with no run id configured', async () => {
    await editManifest(2, (m) => ({ ...m, runId: 'run-z' }));
    await refusedOnOpen({}, RunMismatchError, 'v000002 belongs to run "run-z", the versions before it to run "run-x"');
    await refusedOnOpen({ runId: 'run-x' }, RunMismatchError, 'v000002 belongs to run "run-z"');
  });

  it('refuses a broken parent link: a version replaced by another with a different manifest', async () => {
    await editManifest(1, (m) => ({ ...m, metrics: { forged: 1 } })); // v2's link to v1 no longer matches
    await refusedOnOpen(
      { runId: 'run-x' },
      CheckpointIntegrityError,
      /the chain is broken at v000002: its parent link names v000001 with manifest [0-9a-f]{16}…, but v000001\/manifest\.json hashes to [0-9a-f]{16}…/,
    );
  });

  it('refuses a parent link that names the wrong version', async () => {
    await editManifest(2, (m) => ({ ...m, parent: { ...m.parent!, version: 0 } }));
    await refusedOnOpen({}, CheckpointIntegrityError, 'the chain is broken at v000002: its parent link names v000000');
  });

  it('refuses a first version that claims a parent', async () => {
    await editManifest(0, (m) => ({ ...m, parent: { version: 0, manifestSha256: '0'.repeat(64) } }));
    await refusedOnOpen(
      {},
      CheckpointIntegrityError,
      'the chain is broken at v000000: its parent link names v000000 with manifest 0000000000000000…, but it is the first version',
    );
  });

  it('refuses a version missing from the middle of the chain', async () => {
    await fs.rm(path.join(run, 'versions', versionDirName(1)), { recursive: true });
    await refusedOnOpen({ runId: 'run-x' }, CheckpointIntegrityError, 'the chain up to v000002 is broken: version 1 does not exist');
  });

  it('a coordinator pointed at another run directory refuses to start, changing nothing', async () => {
    const dir = await tempDir('store-open-coord');
    try {
      const first = await startCoordinator(dir, { total: 1 }, { run: { dir, seed: 5, id: 'exp-1' } });
      await settled(first);
      await first.coordinator.stop(200);
      const before = await snapshot(dir);
      const err = await startCoordinator(dir, { total: 1 }, { run: { dir, seed: 5, id: 'exp-2' } }).catch((e: unknown) => e as Error);
      expect(err).to.be.instanceOf(RunMismatchError);
      expect((err as Error).message).to.contain('v000000 belongs to run "exp-1", not to this run "exp-2"');
      expect((err as Error).message).to.contain('set run.id to "exp-1" to continue that run');
      expect(await snapshot(dir)).to.deep.equal(before);
      // The same run id continues.
      const again = await startCoordinator(dir, { total: 1 }, { run: { dir, seed: 5, id: 'exp-1' } });
      await settled(again);
      await again.coordinator.stop(200);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
