// A round over real gRPC with each opened chunk handed to a fold helper whole (coordinator/strategy/fold-handoff.ts):
// three sites upload 131,072-parameter deltas in 64 KiB chunks (whole values, so every chunk is handed), and a fourth
// site's update holds a value of 200 in its third chunk. The fourth is refused with the in-line message, taken back
// out of the sum from its spool temporary, and the committed adapter is the batch FedAvg of the other three, bit for bit.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FedAvg, aggregateUpdates } from '../coordinator/strategy/fedavg';
import { handed } from '../coordinator/strategy/fold-handoff';
import { FOLD_THREADS_MIN_PARAMS, setFoldThreads, startFoldThreads } from '../coordinator/strategy/fold-threads';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { PREFIX, startCoordinator, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const RANK = 8;
const WIDTH = FOLD_THREADS_MIN_PARAMS / (2 * RANK);
const adapter = (): NamedTensor[] => [
  { name: `${PREFIX}.lora_A.weight`, dtype: 'float32', shape: [RANK, WIDTH], data: new Float32Array(RANK * WIDTH) },
  { name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [WIDTH, RANK], data: new Float32Array(RANK * WIDTH) },
];
const BAD_AT = 2 * 16_384 + 77; // in the third 64 KiB chunk of lora_A

function delta(seed: number, global: TensorList, poison: boolean): Float32Array[] {
  let s = seed * 2654435761;
  const d = global.map((t) =>
    Float32Array.from(t.data, () => {
      s = (Math.imul(s, 1103515245) + 12345) >>> 0;
      return (s / 2 ** 32 - 0.5) * 0.02;
    }),
  );
  if (poison) d[0][BAD_AT] = 200;
  return d;
}

class SeededTrainer implements Trainer {
  readonly backend = 'test';
  constructor(
    private readonly seed: number,
    private readonly numExamples: number,
    private readonly poison = false,
  ) {}
  train(global: TensorList, _plan: TrainingPlan): Promise<TrainOutcome> {
    const d = delta(this.seed, global, this.poison);
    return Promise.resolve({ adapter: global.map((t, k) => ({ ...t, data: d[k] })), numExamples: this.numExamples, metrics: {} });
  }
}

describe('a round over real gRPC, chunks handed to fold helpers whole', function () {
  this.timeout(120_000);
  after(() => setFoldThreads(undefined));

  it('commits the batch FedAvg of the accepted sites; the site with a bad value is refused and taken back out', async () => {
    expect(await startFoldThreads(2)).to.equal(2);
    setFoldThreads(2);
    const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-fold-handoff-'));
    const logs: string[] = [];
    const logger = pino({ level: 'warn' }, new Writable({ write: (b: Buffer, _e, cb) => (logs.push(b.toString()), cb()) }));
    const h = await startCoordinator(runDir, { total: 1, minClients: 4, minUpdates: 3 }, {}, { initialAdapter: adapter, logger });
    const mk = (i: number, poison = false): FederationClient =>
      new FederationClient({
        address: h.address,
        name: `s${i}`,
        identity: testIdentity(`s${i}`),
        trainer: new SeededTrainer(i, 10 * i + 3, poison),
        chunkBytes: 65_536,
        backoff: { initialMs: 50, maxMs: 200, factor: 2 },
      });
    const clients = [1, 2, 3].map((i) => mk(i));
    const bad = mk(4, true);
    const before = handed.runs;
    try {
      let refused: string | undefined;
      bad.on('taskFailed', (f) => {
        refused = f.error;
        void bad.stop();
      });
      void bad.run().catch(() => undefined);
      await Promise.all(clients.map((c) => c.run()));
      const v1 = await h.coordinator.done;
      expect(refused).to.match(new RegExp(`update refused by the fedavg strategy: tensor .*lora_A.weight holds 200 at element ${BAD_AT}; outside ±128`));
      expect(logs.join('')).not.to.include('could not take a refused update back');
      expect(handed.runs - before, 'chunks handed to the helpers').to.be.at.least(3 * 8);
      const global = adapter();
      const updates = [1, 2, 3].map((i) => ({
        clientId: `s${i}`,
        numExamples: 10 * i + 3,
        delta: global.map((t, k) => ({ ...t, data: delta(i, global, false)[k] })),
      }));
      setFoldThreads(0);
      const batch = aggregateUpdates(new FedAvg(), global, updates).adapter;
      const bytes = (ts: NamedTensor[]): string[] =>
        ts.map((t) => `${t.name}:${Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('base64')}`);
      expect(bytes(v1.adapter)).to.deep.equal(bytes(batch));
    } finally {
      for (const c of [...clients, bad]) await c.stop().catch(() => undefined);
      await h.coordinator.stop();
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });
});
