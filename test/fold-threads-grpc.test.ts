// A round over real gRPC with the running sum folded on helper threads (fold-threads.ts): three sites upload
// 131,072-parameter deltas in chunks that straddle values, each run cut into parts; the committed adapter is the
// same bytes as the same round folded on one thread, and as the batch FedAvg of the same updates.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FedAvg, aggregateUpdates } from '../coordinator/strategy/fedavg';
import { FOLD_THREADS_MIN_PARAMS, foldPartsTaken, resetFoldSpeeds, setFoldThreads, startFoldThreads } from '../coordinator/strategy/fold-threads';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { PREFIX, startCoordinator, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const RANK = 8;
const WIDTH = FOLD_THREADS_MIN_PARAMS / (2 * RANK);
const adapter = (): NamedTensor[] => [
  { name: `${PREFIX}.lora_A.weight`, dtype: 'float32', shape: [RANK, WIDTH], data: new Float32Array(RANK * WIDTH) },
  { name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [WIDTH, RANK], data: new Float32Array(RANK * WIDTH) },
];

function delta(seed: number, global: TensorList): Float32Array[] {
  let s = seed * 2654435761;
  return global.map((t) =>
    Float32Array.from(t.data, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return (s / 2 ** 32 - 0.5) * 0.02;
    }),
  );
}

/** Its update is a seeded delta on the all-zero base (so the delta the SDK sends is exactly it). */
class SeededTrainer implements Trainer {
  readonly backend = 'test';
  constructor(
    private readonly seed: number,
    private readonly numExamples: number,
  ) {}
  train(global: TensorList, _plan: TrainingPlan): Promise<TrainOutcome> {
    const d = delta(this.seed, global);
    return Promise.resolve({ adapter: global.map((t, k) => ({ ...t, data: d[k] })), numExamples: this.numExamples, metrics: {} });
  }
}

describe('a round over real gRPC, folded on helper threads', function () {
  this.timeout(120_000);
  after(() => setFoldThreads(undefined));

  async function round(threads: number): Promise<NamedTensor[]> {
    setFoldThreads(threads);
    const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-fold-threads-'));
    const h = await startCoordinator(runDir, { total: 1, minClients: 3, minUpdates: 3 }, {}, { initialAdapter: adapter });
    const clients = [1, 2, 3].map(
      (i) =>
        new FederationClient({
          address: h.address,
          name: `s${i}`,
          identity: testIdentity(`s${i}`),
          trainer: new SeededTrainer(i, 10 * i + 3),
          // 200,002 bytes: runs of ~50,000 values (three parts each), values straddling the chunks.
          chunkBytes: 200_002,
          backoff: { initialMs: 50, maxMs: 200, factor: 2 },
        }),
    );
    try {
      await Promise.all(clients.map((c) => c.run()));
      return (await h.coordinator.done).adapter;
    } finally {
      for (const c of clients) await c.stop().catch(() => undefined);
      await h.coordinator.stop();
      await fs.rm(runDir, { recursive: true, force: true });
    }
  }

  it('commits the bytes of the one-thread round and of the batch FedAvg', async () => {
    expect(await startFoldThreads(2)).to.equal(2);
    resetFoldSpeeds(); // unmeasured, runs go to the threads (whatever this busy box measured before)
    const before = foldPartsTaken();
    const threaded = await round(2);
    const after = foldPartsTaken();
    expect(after.helpers + after.caller - before.helpers - before.caller, 'parts folded by the helpers or by the caller').to.be.above(0);
    const one = await round(0);
    setFoldThreads(0);
    const global = adapter();
    const updates = [1, 2, 3].map((i) => ({
      clientId: `s${i}`,
      numExamples: 10 * i + 3,
      delta: global.map((t, k) => ({ ...t, data: delta(i, global)[k] })),
    }));
    const batch = aggregateUpdates(new FedAvg(), global, updates).adapter;
    const bytes = (ts: NamedTensor[]): string[] =>
      ts.map((t) => `${t.name}:${Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64')}`);
    expect(bytes(threaded)).to.deep.equal(bytes(one));
    expect(bytes(threaded)).to.deep.equal(bytes(batch));
  });
});
