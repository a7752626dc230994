// Exact checks on the checkpoint store (coordinator/checkpoints/*) that mutation testing found missing
// (bench/MUTATION.md, groups checkpoints, checkpoints-open, checkpoints-files). Real files in a temporary
// directory, real hashes and signatures; each assertion names the bytes, the file state or the whole message.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FsCheckpointStore, NotARunError, RecoveryNeededError } from '../coordinator/checkpoints/fs-store';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import { formatVersionTable } from '../coordinator/checkpoints/table';
import { SERVER_STATE_FILE, decodeServerState, encodeServerState } from '../coordinator/checkpoints/server-state';
import type { Manifest, VersionInput } from '../coordinator/checkpoints/types';
import { readSafetensors, writeSafetensors } from '../proto/safetensors';
import type { NamedTensor } from '../proto/tensors';
import { tempDir } from './harness';
import { commitInput } from './checkpoint-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** A manifest with only what the version table reads. */
function row(m: Partial<Manifest> & { version: number }): Manifest {
  return {
    round: m.version,
    attempt: 1,
    participants: [],
    metrics: {},
    createdAt: `2026-11-29T00:00:${String(m.version).padStart(2, '0')}.000Z`,
    ...m,
  } as Manifest;
}

const input = (round: number, serverState?: NamedTensor[], runId = 'mutants'): VersionInput => commitInput(round, runId, serverState);

describe('checkpoint store, exactly', () => {
  let root: string;
  before(async () => {
    root = await tempDir('checkpoint-store-mutants');
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  it("a version's adapter file carries the metadata transformers requires to load it ({format: 'pt'}); its server state names its strategy", async () => {
    const run = path.join(root, 'metadata');
    const state = [{ name: 'm.lora_A.weight.momentum', dtype: 'float32' as const, shape: [2], data: Float32Array.from([0.5, 1]) }];
    await new FsCheckpointStore(run).commit(input(0, state));
    const dir = path.join(run, 'versions', 'v000000');
    expect(readSafetensors(await fs.readFile(path.join(dir, 'adapter_model.safetensors'))).metadata).to.deep.equal({ format: 'pt' });
    expect(readSafetensors(await fs.readFile(path.join(dir, 'server-state.safetensors'))).metadata).to.deep.equal({
      format: 'fedtune.server-state/1',
      strategy: 'fedavgm',
    });
  });

  it('formatVersionTable: every column, padded to its widest cell, with no trailing blanks; what retention pruned', () => {
    const table = formatVersionTable(
      [
        row({ version: 0, round: 0, attempt: 0 }),
        row({
          version: 1,
          participants: [
            { clientId: 'a', numExamples: 3 },
            { clientId: 'b', numExamples: 4 },
          ] as unknown as Manifest['participants'],
          metrics: { 'clients.train_loss': 1.23456, 'eval.loss': 2, 'eval.accuracy': 0.5, 'heldout.eval_loss': 0.1, 'heldout.eval_accuracy': 0.25 },
          best: { version: 1 } as Manifest['best'],
          privacy: { epsilon: 1.5, delta: 1e-5, clipNorm: 4.1870003 } as unknown as Manifest['privacy'],
        }),
        row({
          version: 12,
          participants: [{ clientId: 'a' }, { clientId: 'b' }, { clientId: 'c' }] as unknown as Manifest['participants'],
          secureAggregation: {} as Manifest['secureAggregation'],
          privacy: { epsilon: null, delta: 1e-5 } as unknown as Manifest['privacy'],
        }),
        row({ version: 13, round: 13 }),
        row({ version: 14, round: 14 }),
        row({ version: 15, round: 15 }),
      ],
      new Map<number, ReadonlySet<string> | null>([
        [0, new Set()],
        [1, new Set(['adapter_model.safetensors', 'ema/adapter_config.json', 'ema/adapter_model.safetensors', 'server-state.safetensors'])],
        [12, new Set(['server-state.safetensors'])],
        [13, new Set(['adapter_model.safetensors'])],
        [14, null],
      ]),
    );
    expect(table.split('\n')).to.deep.equal([
      'version  round  attempt  clients  examples  train_loss  eval_loss  eval_acc  heldout_loss  heldout_acc  best  epsilon        clip   pruned         created',
      'v0       0      0        0        0         -           -          -         -             -            -     -              -      -              2026-11-29T00:00:00.000Z',
      'v1       1      1        2        7         1.2346      2.0000     0.500     0.1000        0.250        v1    1.500@0.00001  4.187  adapter+state  2026-11-29T00:00:01.000Z',
      'v12      12     1        3        hidden    -           -          -         -             -            -     inf            -      state          2026-11-29T00:00:12.000Z',
      'v13      13     1        0        0         -           -          -         -             -            -     -              -      adapter        2026-11-29T00:00:13.000Z',
      'v14      14     1        0        0         -           -          -         -             -            -     -              -      ?              2026-11-29T00:00:14.000Z',
      'v15      15     1        0        0         -           -          -         -             -            -     -              -      -              2026-11-29T00:00:15.000Z',
    ]);
  });

  it('server state: read back exactly; a file of another format or with non-float tensors is refused by name', () => {
    const state = [{ name: 'm.a', dtype: 'float32' as const, shape: [2], data: new Float32Array([1.5, -2]) }];
    const back = decodeServerState(encodeServerState(state, 'fedavgm'));
    expect(back.map((t) => [t.name, t.shape, [...t.data]])).to.deep.equal([['m.a', [2], [1.5, -2]]]);
    expect(SERVER_STATE_FILE).to.equal('server-state.safetensors');
    expect(() => decodeServerState(writeSafetensors(state, { format: 'pt' }))).to.throw(
      'server-state.safetensors: metadata format is "pt", not fedtune.server-state/1',
    );
    // Built by hand: writeSafetensors writes float32 only.
    const header = Buffer.from(
      JSON.stringify({
        __metadata__: { format: 'fedtune.server-state/1' },
        n: { dtype: 'I32', shape: [1], data_offsets: [0, 4] },
        k: { dtype: 'U8', shape: [1], data_offsets: [4, 5] },
      }),
    );
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    const ints = Buffer.concat([len, header, Buffer.from([3, 0, 0, 0, 9])]);
    expect(() => decodeServerState(ints)).to.throw('server-state.safetensors: holds non-float tensors (k, n)');
  });

  /** A run with versions 0..n−1 of run `runId` (no signer), and its directory. */
  async function runWith(name: string, n: number, runId = 'mutants'): Promise<string> {
    const run = path.join(root, name);
    const s = new FsCheckpointStore(run);
    for (let v = 0; v < n; v++) await s.commit(input(v, undefined, runId));
    return run;
  }
  const manifestOf = (run: string, v: number): string => path.join(run, 'versions', `v${String(v).padStart(6, '0')}`, 'manifest.json');
  async function editManifest(run: string, v: number, edit: (m: Record<string, unknown>) => void): Promise<void> {
    const m = JSON.parse(await fs.readFile(manifestOf(run, v), 'utf8')) as Record<string, unknown>;
    edit(m);
    await fs.writeFile(manifestOf(run, v), stableJson(m));
  }
  /** Every file under `dir` with its bytes, to show that a refusal changed nothing. */
  async function state(dir: string): Promise<Record<string, string>> {
    const out: Record<string, string> = {};
    for (const e of await fs.readdir(dir, { recursive: true, withFileTypes: true }))
      if (e.isFile()) out[path.relative(dir, path.join(e.parentPath, e.name))] = (await fs.readFile(path.join(e.parentPath, e.name))).toString('hex');
    return out;
  }
  async function refusal(run: string, opts: ConstructorParameters<typeof FsCheckpointStore>[1] = {}): Promise<Error> {
    const before = await state(run);
    const err = await new FsCheckpointStore(run, opts).open().then(
      () => expect.fail('the store opened'),
      (e: unknown) => e as Error,
    );
    expect(await state(run)).to.deep.equal(before);
    return err;
  }
  const hint = (run: string): string =>
    `Nothing was changed. Run \`fedtune recover ${run}\` to rebuild the pointer from the signed chain (\`fedtune verify ${run}\` shows every problem)`;

  it('a read-only store refuses a directory without versions/ (or with a file there), and opens an interrupted commit without finishing it', async () => {
    for (const [name, make] of [
      ['empty', async (d: string) => fs.mkdir(d)],
      ['file', async (d: string) => fs.mkdir(d).then(() => fs.writeFile(path.join(d, 'versions'), ''))],
    ] as const) {
      const dir = path.join(root, `not-a-run-${name}`);
      await make(dir);
      const err = await refusal(dir, { readOnly: true });
      expect([err.constructor, err.message]).to.deep.equal([NotARunError, `${dir} is not a fedtune run directory (it has no versions/)`]);
    }
    const run = await runWith('read-only-roll', 3);
    await fs.writeFile(path.join(run, 'latest'), 'v000001\n');
    const before = await state(run);
    const s = new FsCheckpointStore(run, { readOnly: true });
    expect((await s.list()).map((m) => m.version)).to.deep.equal([0, 1]);
    expect(await state(run)).to.deep.equal(before);
  });

  it('refuses a first version that names a parent, and a later one that names none, by the exact message', async () => {
    const run = await runWith('first-parent', 1);
    await editManifest(run, 0, (m) => (m.parent = { version: 0, manifestSha256: 'ab'.repeat(32) }));
    const err = await refusal(run);
    expect(err.message).to.equal(
      `run ${run}: the chain is broken at v000000: its parent link names v000000 with manifest abababababababab…, but it is the first version. Nothing was changed. \`fedtune verify ${run}\` shows every problem`,
    );
    const orphan = await runWith('no-parent', 2);
    await editManifest(orphan, 1, (m) => (m.parent = null));
    const v0sha = createHash('sha256')
      .update(await fs.readFile(manifestOf(orphan, 0)))
      .digest('hex');
    expect((await refusal(orphan)).message).to.equal(
      `run ${orphan}: the chain is broken at v000001: its parent link names no parent, but v000000/manifest.json hashes to ${v0sha.slice(0, 16)}…. Nothing was changed. \`fedtune verify ${orphan}\` shows every problem`,
    );
  });

  it('finishes an interrupted commit only for a version of this run that links to latest; each refusal names why', async () => {
    // v2 of another run, one beyond latest: refused with or without a configured run id.
    const other = await runWith('roll-other-run', 2);
    await new FsCheckpointStore(other).commit(input(2, undefined, 'intruder'));
    await fs.writeFile(path.join(other, 'latest'), 'v000001\n');
    for (const [opts, expected] of [
      [{}, 'mutants'],
      [{ runId: 'mutants' }, 'mutants'],
    ] as const) {
      const err = await refusal(other, opts);
      expect([err.constructor, err.message]).to.deep.equal([
        RecoveryNeededError,
        `run ${other}: v000002 is beyond the latest pointer; it cannot be taken as an interrupted commit: v000002/manifest.json: it belongs to run "intruder", not "${expected}"`,
      ]);
    }
    // A first version of another run than the configured one; without a run id it is taken.
    const first = await runWith('roll-first', 1, 'elsewhere');
    await fs.rm(path.join(first, 'latest'));
    const err0 = await refusal(first, { runId: 'mutants' });
    expect(err0.message).to.equal(
      `run ${first}: v000000 is beyond the latest pointer; it cannot be taken as an interrupted commit: v000000/manifest.json: it belongs to run "elsewhere", not "mutants"`,
    );
    expect((await new FsCheckpointStore(first, { warn: () => undefined }).list()).map((m) => m.runId)).to.deep.equal(['elsewhere']);
    // A version that does not link to latest, and a first version that names a parent.
    const unlinked = await runWith('roll-unlinked', 3);
    await editManifest(unlinked, 2, (m) => (m.parent = { version: 1, manifestSha256: 'cd'.repeat(32) }));
    await fs.writeFile(path.join(unlinked, 'latest'), 'v000001\n');
    expect((await refusal(unlinked)).message).to.equal(
      `run ${unlinked}: v000002 is beyond the latest pointer; it cannot be taken as an interrupted commit: v000002/manifest.json: its parent link does not match v000001/manifest.json`,
    );
    const parented = await runWith('roll-parented', 1);
    await editManifest(parented, 0, (m) => (m.parent = { version: 0, manifestSha256: 'ef'.repeat(32) }));
    await fs.rm(path.join(parented, 'latest'));
    expect((await refusal(parented)).message).to.equal(
      `run ${parented}: v000000 is beyond the latest pointer; it cannot be taken as an interrupted commit: v000000/manifest.json: its parent link does not match a first version (none)`,
    );
  });

  it('reads versions/ exactly: other names are ignored, seven-digit versions sort by number, the pointer is read strictly', async () => {
    const run = await runWith('scan', 1);
    await fs.writeFile(path.join(run, 'versions', 'notes.txt'), 'x');
    await fs.mkdir(path.join(run, 'versions', 'v0000001')); // not the name of version 1
    expect((await new FsCheckpointStore(run).list()).map((m) => m.version)).to.deep.equal([0]);
    // No pointer, versions 999999 and 1000000: the range is given in numeric order (names sort the other way).
    const big = path.join(root, 'scan-big');
    await fs.mkdir(path.join(big, 'versions', 'v999999'), { recursive: true });
    await fs.mkdir(path.join(big, 'versions', 'v1000000'));
    const err = await refusal(big);
    expect(err.message).to.equal(
      `run ${big}: the latest pointer is missing, but versions v999999…v1000000 exist. The pointer only ever moves forward one version at a time, so this is damage (a deleted, edited or restored pointer), not an interrupted commit. ${hint(big)}`,
    );
    // A pointer that is not a version is quoted up to 40 characters; one that cannot be read is not taken as missing.
    await fs.writeFile(path.join(run, 'latest'), 'y'.repeat(100));
    expect((await refusal(run)).message).to.equal(`${path.join(run, 'latest')} does not name a version: ${JSON.stringify('y'.repeat(40))}. ${hint(run)}`);
    await fs.rm(path.join(run, 'latest'));
    await fs.mkdir(path.join(run, 'latest'));
    expect(((await refusal(run)) as NodeJS.ErrnoException).code).to.equal('EISDIR');
  });
});
