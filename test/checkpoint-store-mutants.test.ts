// Exact checks on the checkpoint store (coordinator/checkpoints/*) that mutation testing found missing
// (bench/MUTATION.md, groups checkpoints, checkpoints-open, checkpoints-files). Real files in a temporary
// directory, real hashes and signatures; each assertion names the bytes, the file state or the whole message.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { formatVersionTable } from '../coordinator/checkpoints/table';
import { SERVER_STATE_FILE, decodeServerState, encodeServerState } from '../coordinator/checkpoints/server-state';
import type { Manifest, VersionInput } from '../coordinator/checkpoints/types';
import { readSafetensors, writeSafetensors } from '../proto/safetensors';
import type { NamedTensor } from '../proto/tensors';
import { tempDir } from './harness';
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

function input(round: number, serverState?: NamedTensor[]): VersionInput {
  return {
    adapter: [{ name: 'm.lora_A.weight', dtype: 'float32', shape: [2], data: Float32Array.from([round, -round]) }],
    adapterConfig: { peft_type: 'LORA' },
    serverState,
    manifest: {
      runId: 'mutants',
      round,
      attempt: 1,
      strategy: 'fedavgm',
      participants: [],
      metrics: {},
      config: {},
      seeds: {},
      baseModel: { name: 't', sha256: '0'.repeat(64) },
      protocolVersion: 1,
    },
  };
}

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

  it('formatVersionTable: every column, padded to its widest cell, with no trailing blanks', () => {
    const table = formatVersionTable([
      row({ version: 0, round: 0, attempt: 0 }),
      row({
        version: 1,
        participants: [
          { clientId: 'a', numExamples: 3 },
          { clientId: 'b', numExamples: 4 },
        ] as unknown as Manifest['participants'],
        metrics: { 'clients.train_loss': 1.23456, 'eval.loss': 2, 'eval.accuracy': 0.5, 'heldout.eval_loss': 0.1, 'heldout.eval_accuracy': 0.25 },
        best: { version: 1 } as Manifest['best'],
        privacy: { epsilon: 1.5, delta: 1e-5 } as unknown as Manifest['privacy'],
      }),
      row({
        version: 12,
        participants: [{ clientId: 'a' }, { clientId: 'b' }, { clientId: 'c' }] as unknown as Manifest['participants'],
        secureAggregation: {} as Manifest['secureAggregation'],
        privacy: { epsilon: null, delta: 1e-5 } as unknown as Manifest['privacy'],
      }),
    ]);
    expect(table.split('\n')).to.deep.equal([
      'version  round  attempt  clients  examples  train_loss  eval_loss  eval_acc  heldout_loss  heldout_acc  best  epsilon        created',
      'v0       0      0        0        0         -           -          -         -             -            -     -              2026-11-29T00:00:00.000Z',
      'v1       1      1        2        7         1.2346      2.0000     0.500     0.1000        0.250        v1    1.500@0.00001  2026-11-29T00:00:01.000Z',
      'v12      12     1        3        hidden    -           -          -         -             -            -     inf            2026-11-29T00:00:12.000Z',
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
});
