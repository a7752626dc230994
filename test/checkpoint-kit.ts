// What the checkpoint store's tests commit: one small version whose adapter values encode its round, so a test can
// tell versions apart by their bytes (checkpoint-commit.test.ts, checkpoint-store-mutants.test.ts). Also the
// filesystem store's own tests' versions and a run directory for each of their tests (test/checkpoints*.test.ts).
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ADAPTER_CONFIG_FILE, ADAPTER_FILE, FsCheckpointStore, MANIFEST_FILE, versionDirName } from '../coordinator/checkpoints/fs-store';
import type { VersionInput } from '../coordinator/checkpoints/types';
import type { NamedTensor } from '../proto/tensors';

export function commitInput(round: number, runId: string, serverState?: NamedTensor[]): VersionInput {
  return {
    adapter: [{ name: 'm.lora_A.weight', dtype: 'float32', shape: [2], data: Float32Array.from([round, -round]) }],
    adapterConfig: { peft_type: 'LORA' },
    serverState,
    manifest: {
      runId,
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

/** The files every version of the filesystem store holds. */
export const STORE_FILES = [ADAPTER_FILE, ADAPTER_CONFIG_FILE, MANIFEST_FILE];

/** Version v's adapter, unsorted on purpose: the store writes (and reads back) tensors sorted by name. */
export function storeAdapter(v: number): NamedTensor[] {
  return [
    { name: 'm.lora_B.weight', dtype: 'float32', shape: [4, 2], data: Float32Array.from({ length: 8 }, (_, i) => v * 10 + i * 0.5) },
    { name: 'm.lora_A.weight', dtype: 'float32', shape: [2, 3], data: Float32Array.from({ length: 6 }, (_, i) => -v - i / 3) },
  ];
}

/** Version v as the filesystem store's tests commit it (test/checkpoints*.test.ts): a manifest with a participant. */
export function storeInput(v: number): VersionInput {
  return {
    adapter: storeAdapter(v),
    adapterConfig: { r: 2, peft_type: 'LORA', target_modules: ['c_attn'], lora_alpha: 4 },
    manifest: {
      runId: 'run-x',
      round: v,
      attempt: 1 + (v % 2),
      strategy: 'fedavg',
      participants:
        v === 0 ? [] : [{ clientId: 'c1', clientName: 'site-1', numExamples: 10 * v, weight: 1, seed: 7 + v, backend: 'cpu', metrics: { loss: 1 / (v + 1) } }],
      metrics: { 'clients.train_loss': 2 - v / 10 },
      config: { rounds: { total: 3 } },
      seeds: { run: 42, selection: { [String(v)]: 100 + v } },
      baseModel: { name: 'tiny', sha256: 'ab'.repeat(32) },
      protocolVersion: 1,
    },
  };
}

export interface StoreRun {
  /** A fresh temporary folder for each test, removed after it; the run directory `run` is inside it. */
  root: string;
  run: string;
  /** Version v's directory in the run. */
  vdir(v: number): string;
  /** Versions 0, 1 and 2 committed by `store` (a new store on the run unless given). */
  commitThree(store?: FsCheckpointStore): Promise<FsCheckpointStore>;
}

/** A run directory of its own for each test of the calling describe block (its beforeEach and afterEach hooks). */
export function storeRun(): StoreRun {
  const d: StoreRun = {
    root: '',
    run: '',
    vdir: (v) => path.join(d.run, 'versions', versionDirName(v)),
    async commitThree(store = new FsCheckpointStore(d.run)) {
      for (let v = 0; v < 3; v++) await store.commit(storeInput(v));
      return store;
    },
  };
  beforeEach(async () => {
    d.root = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-ckpt-'));
    d.run = path.join(d.root, 'run');
  });
  afterEach(() => fs.rm(d.root, { recursive: true, force: true }));
  return d;
}
