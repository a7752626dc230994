// The average under strategy.ema is stored once per version: in its ema/ PEFT file, which server-state.safetensors no
// longer repeats (checkpoints/ema-files.ts). What a version resumes from is unchanged: the store gives back the
// committed state bit for bit (the average read from ema/), a version written before (the average inside the state
// file) reads as it did, and a run rolled back with `fedtune recover --to 2` and restarted commits versions 3 and 4
// byte for byte as the run did the first time (real coordinators, real gRPC, real SDK clients).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FsCheckpointStore, versionDirName } from '../coordinator/checkpoints/fs-store';
import { SERVER_STATE_FILE, encodeServerState } from '../coordinator/checkpoints/server-state';
import { stableJson } from '../coordinator/checkpoints/atomic-fs';
import { recoverRun } from '../coordinator/checkpoints/recover';
import { verifyRun } from '../coordinator/checkpoints/verify';
import { readSafetensors } from '../proto/safetensors';
import type { NamedTensor } from '../proto/tensors';
import { createHash } from 'node:crypto';
import { commitInput } from './checkpoint-kit';
import { startCoordinator, tempDir, type Harness } from './harness';
import { RoundTrainer, restartSuite, startRestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const hex = (t: readonly NamedTensor[]): string[] =>
  t.map((x) => `${x.name}:${x.shape.join('x')}:${Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength).toString('hex')}`);
const f32 = (name: string, values: number[]): NamedTensor => ({ name, dtype: 'float32', shape: [values.length], data: Float32Array.from(values) });

describe('the average stored once (ema/), its state unchanged', function () {
  this.timeout(120_000);
  const { dirs, clients, coordinators } = restartSuite();

  it('the store gives back the committed state bit for bit; the state file holds no average; a version from before reads as it did', async () => {
    const dir = await tempDir('ema-once');
    dirs.push(dir);
    const store = new FsCheckpointStore(dir, { runId: 'r' });
    await store.commit(commitInput(0, 'r'));
    // FedAdam's moments and the average (ema/<adapter tensor>), sorted by name as EmaStrategy keeps them.
    const state = [f32('ema/m.lora_A.weight', [0.1, -1 / 3]), f32('m/m.lora_A.weight', [1e-8, 2]), f32('v/m.lora_A.weight', [3, 1 / 7])];
    const committed = await store.commit(commitInput(1, 'r', state));
    expect(hex(committed.serverState!)).to.deep.equal(hex(state));
    expect(hex((await store.read(1)).serverState!)).to.deep.equal(hex(state));
    const v1 = path.join(dir, 'versions', versionDirName(1));
    expect(readSafetensors(await fs.readFile(path.join(v1, SERVER_STATE_FILE))).tensors.map((t) => t.name)).to.deep.equal([
      'm/m.lora_A.weight',
      'v/m.lora_A.weight',
    ]);
    expect(hex(readSafetensors(await fs.readFile(path.join(v1, 'ema', 'adapter_model.safetensors'))).tensors)).to.deep.equal(
      hex([f32('m.lora_A.weight', [0.1, -1 / 3])]),
    );
    // As a version was written before: the average inside the state file too (an unsigned store, so the manifest can follow).
    const legacy = encodeServerState(state, 'fedavgm');
    await fs.writeFile(path.join(v1, SERVER_STATE_FILE), legacy);
    const manifest = JSON.parse(await fs.readFile(path.join(v1, 'manifest.json'), 'utf8')) as { files: Record<string, string> };
    manifest.files[SERVER_STATE_FILE] = createHash('sha256').update(legacy).digest('hex');
    await fs.writeFile(path.join(v1, 'manifest.json'), stableJson(manifest));
    expect(hex((await new FsCheckpointStore(dir, { runId: 'r' }).read(1)).serverState!)).to.deep.equal(hex(state));
    // A state holding averages of tensors the adapter lacks is stored whole (the ema/ file could not give them back).
    const partial = [f32('ema/m.lora_A.weight', [4, 5]), f32('ema/other.weight', [1]), f32('m/m.lora_A.weight', [2, 3])];
    await store.commit(commitInput(2, 'r', partial));
    expect(readSafetensors(await fs.readFile(path.join(dir, 'versions', versionDirName(2), SERVER_STATE_FILE))).tensors.map((t) => t.name)).to.deep.equal([
      'ema/m.lora_A.weight',
      'ema/other.weight',
      'm/m.lora_A.weight',
    ]);
    expect(hex((await store.read(2)).serverState!)).to.deep.equal(hex(partial));
  });

  it('rolled back with `fedtune recover --to 2` and restarted: versions 3 and 4 are committed again byte for byte', async () => {
    const dir = await tempDir('ema-once-rollback');
    dirs.push(dir);
    const run = async (): Promise<void> => {
      const h: Harness = await startCoordinator(dir, { total: 4 }, { strategy: { name: 'fedadam', serverLearningRate: 0.05, ema: 0.5 } });
      coordinators.push(h.coordinator);
      const s = startRestartSites(h.address, [new RoundTrainer(0.3), new RoundTrainer(-0.1)], clients);
      expect((await h.coordinator.done).manifest.version).to.equal(4);
      await Promise.all(s.runs);
      await h.coordinator.stop(200);
    };
    await run();
    const names = ['adapter_model.safetensors', SERVER_STATE_FILE, 'ema/adapter_model.safetensors'];
    const first = new Map<string, Buffer>();
    for (const v of [3, 4]) for (const n of names) first.set(`${v}/${n}`, await fs.readFile(path.join(dir, 'versions', versionDirName(v), n)));
    const r = await recoverRun(dir, { version: 2 });
    expect(r.movedAside).to.have.length(2);
    await run();
    for (const [k, bytes] of first) {
      const [v, n] = [Number(k.split('/')[0]), k.slice(k.indexOf('/') + 1)];
      expect((await fs.readFile(path.join(dir, 'versions', versionDirName(v), n))).equals(bytes), k).to.equal(true);
    }
    expect((await verifyRun(dir)).problems).to.deep.equal([]);
  });
});
