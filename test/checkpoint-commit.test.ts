// One commit of the checkpoint store, exactly: the files a version holds (with and without a server optimiser's
// state), the steps it takes in order (temporary directory, files, rename, pointer), a read-only store refusing
// to commit, and the pointer check's verdicts (pointerProblem) for every shape of disagreement.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { FsCheckpointStore, pointerProblem } from '../coordinator/checkpoints/fs-store';
import { decodeServerState } from '../coordinator/checkpoints/server-state';
import type { VersionInput } from '../coordinator/checkpoints/types';
import type { NamedTensor } from '../proto/tensors';
import { tempDir } from './harness';
import { commitInput } from './checkpoint-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

const input = (round: number, serverState?: NamedTensor[]): VersionInput => commitInput(round, 'commit', serverState);

describe('checkpoint store: one commit, exactly', () => {
  let root: string;
  before(async () => {
    root = await tempDir('checkpoint-commit');
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  it('writes the files in a .tmp directory, renames it into place, then moves latest: each step in order', async () => {
    const run = path.join(root, 'steps');
    const seen: string[] = [];
    const s = new FsCheckpointStore(run, {
      crashHook: (point, file) => {
        const rel = path
          .relative(run, file)
          .replace(/\.tmp-v000000-[0-9a-f]{12}/, 'TMP')
          .replace(/\.latest\.[0-9a-f]{12}\.tmp$/, 'LATEST-TMP');
        seen.push(`${point} ${rel}`);
      },
    });
    await s.commit(input(0));
    expect(seen).to.deep.equal([
      'commit:tmp:mkdir versions/TMP',
      'commit:tmp:open versions/TMP/adapter_model.safetensors',
      'commit:tmp:write versions/TMP/adapter_model.safetensors',
      'commit:tmp:fsync versions/TMP/adapter_model.safetensors',
      'commit:tmp:open versions/TMP/adapter_config.json',
      'commit:tmp:write versions/TMP/adapter_config.json',
      'commit:tmp:fsync versions/TMP/adapter_config.json',
      'commit:tmp:open versions/TMP/manifest.json',
      'commit:tmp:write versions/TMP/manifest.json',
      'commit:tmp:fsync versions/TMP/manifest.json',
      'commit:tmp:fsync-dir versions/TMP',
      'commit:renamed versions/v000000',
      'commit:versions:fsync-dir versions',
      'commit:pointer:open LATEST-TMP',
      'commit:pointer:write LATEST-TMP',
      'commit:pointer:fsync LATEST-TMP',
      'commit:pointer:rename latest',
      'commit:pointer:fsync-dir ',
    ]);
    expect(await fs.readFile(path.join(run, 'latest'), 'utf8')).to.equal('v000000\n');
    expect((await fs.readdir(path.join(run, 'versions'))).sort()).to.deep.equal(['v000000']);
  });

  it('a server optimiser state is a fourth file, hashed in the manifest and read back exactly; without one there is none', async () => {
    const run = path.join(root, 'state');
    const s = new FsCheckpointStore(run);
    const state: NamedTensor[] = [{ name: 'momentum.m.lora_A.weight', dtype: 'float32', shape: [2], data: Float32Array.from([0.5, -0.25]) }];
    const ck = await s.commit(input(0, state));
    const dir = path.join(run, 'versions', 'v000000');
    expect((await fs.readdir(dir)).sort()).to.deep.equal(['adapter_config.json', 'adapter_model.safetensors', 'manifest.json', 'server-state.safetensors']);
    const bytes = await fs.readFile(path.join(dir, 'server-state.safetensors'));
    expect(ck.manifest.files['server-state.safetensors']).to.equal(sha(bytes));
    expect(decodeServerState(bytes).map((t) => [t.name, [...t.data]])).to.deep.equal([['momentum.m.lora_A.weight', [0.5, -0.25]]]);
    expect(ck.serverState!.map((t) => [...t.data])).to.deep.equal([[0.5, -0.25]]);
    const back = await new FsCheckpointStore(run).read(0);
    expect(back.serverState!.map((t) => [t.name, [...t.data]])).to.deep.equal([['momentum.m.lora_A.weight', [0.5, -0.25]]]);
    // An empty state writes no file.
    const next = await s.commit(input(1, []));
    expect(Object.keys(next.manifest.files).sort()).to.deep.equal(['adapter_config.json', 'adapter_model.safetensors']);
    expect(next.serverState).to.deep.equal([]);
    expect((await fs.readdir(path.join(run, 'versions', 'v000001'))).sort()).to.deep.equal([
      'adapter_config.json',
      'adapter_model.safetensors',
      'manifest.json',
    ]);
  });

  it('a read-only store refuses to commit and writes nothing', async () => {
    const run = path.join(root, 'ro');
    await new FsCheckpointStore(run).commit(input(0));
    const before = (await fs.readdir(run, { recursive: true })).sort();
    const err = (await new FsCheckpointStore(run, { readOnly: true }).commit(input(1)).catch((e: unknown) => e)) as Error;
    expect(err.message).to.equal(`the checkpoint store of ${run} was opened read-only`);
    expect((await fs.readdir(run, { recursive: true })).sort()).to.deep.equal(before);
  });

  it('pointerProblem: none when the pointer names the newest; roll forward exactly one beyond; anything else is damage', () => {
    const hint = 'Nothing was changed. Run `fedtune recover /r` to rebuild the pointer from the signed chain (`fedtune verify /r` shows every problem)';
    expect(pointerProblem('/r', null, [])).to.equal(null);
    expect(pointerProblem('/r', 2, [0, 1, 2])).to.equal(null);
    expect(pointerProblem('/r', null, [0])).to.deep.equal({ message: 'run /r: v000000 is beyond the latest pointer', rollForward: 0 });
    expect(pointerProblem('/r', 1, [0, 1, 2])).to.deep.equal({ message: 'run /r: v000002 is beyond the latest pointer', rollForward: 2 });
    expect(pointerProblem('/r', 3, [0, 1, 2])).to.deep.equal({
      message: `run /r: latest names v000003, which does not exist (versions run up to v000002). ${hint}`,
    });
    expect(pointerProblem('/r', 0, [])).to.deep.equal({ message: `run /r: latest names v000000, which does not exist (there are no versions). ${hint}` });
    const damage =
      'The pointer only ever moves forward one version at a time, so this is damage (a deleted, edited or restored pointer), not an interrupted commit.';
    expect(pointerProblem('/r', null, [0, 1])).to.deep.equal({
      message: `run /r: the latest pointer is missing, but versions v000000…v000001 exist. ${damage} ${hint}`,
    });
    expect(pointerProblem('/r', null, [1])).to.deep.equal({
      message: `run /r: the latest pointer is missing, but versions v000001…v000001 exist. ${damage} ${hint}`,
    });
    expect(pointerProblem('/r', 0, [0, 2])).to.deep.equal({
      message: `run /r: latest names v000000, but versions v000002…v000002 exist beyond it. ${damage} ${hint}`,
    });
    expect(pointerProblem('/r', 0, [0, 1, 2, 3])).to.deep.equal({
      message: `run /r: latest names v000000, but versions v000001…v000003 exist beyond it. ${damage} ${hint}`,
    });
  });
});
