// Streaming admission (coordinator/strategy/fold-kernel.ts, stream-fold.ts, Attempt.foldChunk): each upload's
// chunks are folded into the round's running sum as they are opened, and taken back out exactly when the upload is
// not accepted after all. Checked against an exact BigInt reference: the SIMD kernel value by value (and that it
// is the module its source text assembles to), an update streamed in any split or taken back part way, and a round
// over real gRPC with many small sites whose uploads interleave chunk by chunk in different orders, one of them
// refused after most of its chunks were folded in: every run commits the same bytes, the reference's; and an upload
// still streaming when the round closes leaves the others' FedAvg, bit for bit.
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import pino from 'pino';
import wabtInit from 'wabt';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { DpStrategy } from '../coordinator/strategy/dp';
import { FedAvg, aggregateUpdates } from '../coordinator/strategy/fedavg';
import { LIMIT, SCALE } from '../coordinator/strategy/fixed-point';
import { foldKernel } from '../coordinator/strategy/fold-kernel';
import type { ClientUpdate, Strategy, UpdateFold } from '../coordinator/strategy/strategy';
import { sortByName, type NamedTensor, type TensorList } from '../proto/tensors';
import * as grpc from '@grpc/grpc-js';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import { PREFIX, join, nextTask, rawClient, reportMetrics, sendUpload, siteDelta, smallAdapter, startCoordinator, testIdentity, uploadFrames } from './harness';
import { kernelWat } from './kernel-wat';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** w·round-half-away-from-zero(x·2^24), exactly. */
const q = (x: number, w: number): bigint => {
  const s = x * SCALE;
  return BigInt(w) * BigInt(Math.sign(s) * Math.floor(Math.abs(s) + 0.5));
};

const below128 = Math.fround(LIMIT - 2 ** -17);
const admitted = fc.oneof(
  fc.constantFrom(0, -0, 0.5 / SCALE, -0.5 / SCALE, 1.5 / SCALE, -1.5 / SCALE, below128, -below128, 2 ** -149, 1, -1),
  fc.float({ min: -below128, max: below128, noNaN: true }),
  fc.integer({ min: -(2 ** 30), max: 2 ** 30 }).map((k) => Math.fround((k + 0.5) / SCALE)),
);

const bytesOf = (x: Float32Array): Uint8Array => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
const hex = (ts: TensorList): string[] => ts.map((t) => `${t.name}:${Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex')}`);

/** Feeds `bytes` to `f` in pieces of the given sizes (cycled). */
function feed(bytes: Uint8Array, sizes: readonly number[], f: (b: Uint8Array) => unknown): void {
  for (let off = 0, k = 0; off < bytes.length; k++) {
    const n = sizes[k % sizes.length];
    f(bytes.subarray(off, off + n));
    off += n;
  }
}

function flat(u: ClientUpdate): Uint8Array {
  const n = u.delta.reduce((a, t) => a + t.data.length, 0);
  const out = new Float32Array(n);
  let off = 0;
  for (const t of u.delta) {
    out.set(t.data, off);
    off += t.data.length;
  }
  return bytesOf(out);
}

describe('streaming admission: the fold kernel and UpdateFold against BigInt', () => {
  it('the SIMD kernel (and its JavaScript fallback) adds w·q(x) exactly and stops at the first value outside ±128, adding none from there', () => {
    const bad = fc.constantFrom(NaN, Infinity, -Infinity, 128, -128, 1e30);
    fc.assert(
      fc.property(
        fc.array(admitted, { minLength: 1, maxLength: 67 }),
        fc.integer({ min: -(2 ** 21), max: 2 ** 21 }),
        fc.option(fc.tuple(fc.nat(), bad)),
        (values, w, poison) => {
          const x = Float32Array.from(values);
          const stop = poison ? poison[0] % x.length : x.length;
          if (poison) x[stop] = poison[1];
          for (const simd of [true, false]) {
            const k = foldKernel(x.length + 3, simd);
            k.staged.set(x);
            expect(k.fold(3, x.length, w), `simd ${simd}`).to.equal(stop);
            for (let i = 0; i < x.length; i++) expect(BigInt(k.acc[3 + i]), `simd ${simd}, x = ${x[i]}`).to.equal(i < stop ? q(x[i], w) : 0n);
          }
        },
      ),
      { seed: 11, numRuns: 500 },
    );
  });

  it('the shipped module is the one its source text assembles to (wabt)', async () => {
    const { src, wat } = await kernelWat('fold-kernel.ts');
    const shipped = [.../const WASM = Buffer\.from\(([^)]*)'base64'/.exec(src)![1].matchAll(/'([^']+)'/g)].map((m) => m[1]).join('');
    const wabt = await wabtInit();
    expect(Buffer.from(wabt.parseWat('fold.wat', wat).toBinary({}).buffer).toString('base64')).to.equal(shipped);
  });

  const global: NamedTensor[] = [
    { name: 'a', dtype: 'float32', shape: [7], data: new Float32Array(7) },
    { name: 'b', dtype: 'float32', shape: [3, 5], data: new Float32Array(15) },
  ];
  const update = (id: string, n: number, vals: number[]): ClientUpdate => ({
    clientId: id,
    numExamples: n,
    delta: [
      { ...global[0], data: Float32Array.from(vals.slice(0, 7)) },
      { ...global[1], data: Float32Array.from(vals.slice(7, 22)) },
    ],
  });
  const arb = fc.array(admitted, { minLength: 22, maxLength: 22 });
  const splits = fc.array(fc.integer({ min: 1, max: 13 }), { minLength: 1, maxLength: 5 });

  for (const [label, make] of [
    ['FedAvg', (): Strategy => new FedAvg()],
    ['DP-FedAvg (norm on the first pass, clipped fold on the replay)', (): Strategy => new DpStrategy(new FedAvg(), { clipNorm: 3, noiseMultiplier: 1 })],
  ] as const) {
    it(`${label}: an update streamed in any split sums as the batch add does; one refused part way is taken back, bit for bit`, () => {
      fc.assert(
        fc.property(arb, arb, fc.integer({ min: 1, max: 1000 }), splits, fc.nat(21), (v1, v2, w, sizes, cut) => {
          const s = make();
          const batch = s.begin(global);
          const u1 = update('one', w, v1);
          batch.admit(u1);
          batch.add(u1);
          const streamed = s.begin(global);
          const pass = (f: UpdateFold, b: Uint8Array): void => {
            feed(b, sizes, (p) => f.push(p));
            f.finish();
            if (f.needsReplay) feed(b, sizes, (p) => f.replay(p));
            f.commit();
          };
          pass(streamed.open('one', w), flat(u1));
          // A second update refused at value `cut` (NaN there), or abandoned after its replay: taken back out.
          const u2 = update('two', 7, v2);
          const bad = flat(
            update(
              'two',
              7,
              v2.map((x, i) => (i === cut ? NaN : x)),
            ),
          );
          const f2 = streamed.open('two', 7);
          expect(() => feed(bad, sizes, (p) => f2.push(p))).to.throw(/NaN/);
          f2.abandon();
          feed(bad, sizes, (p) => f2.undo(p));
          f2.undone();
          const f3 = streamed.open('two', 7);
          feed(flat(u2), sizes, (p) => f3.push(p));
          f3.finish();
          if (f3.needsReplay) feed(flat(u2), sizes, (p) => f3.replay(p));
          f3.abandon();
          feed(flat(u2), sizes, (p) => f3.undo(p));
          f3.undone();
          const a = [...batch.sum().tensors.values()].map((t) => Array.from(t as Float64Array));
          const b = [...streamed.sum().tensors.values()].map((t) => Array.from(t as Float64Array));
          expect(b).to.deep.equal(a);
          expect(streamed.count).to.equal(1);
          expect(streamed.sum().totalWeight).to.equal(batch.sum().totalWeight);
        }),
        { seed: 12, numRuns: 150 },
      );
    });
  }
});

/** A site whose update is a seeded random delta (the base is all zeros, so the delta the SDK sends is exactly it). */
class SeededTrainer implements Trainer {
  readonly backend = 'test';
  constructor(
    private readonly seed: number,
    private readonly numExamples: number,
    private readonly delayMs: number,
    /** Set a value outside ±128 at the end: the strategy refuses the upload after its other chunks were folded. */
    private readonly poison = false,
  ) {}
  static delta(seed: number, global: TensorList): Float32Array[] {
    let s = seed * 2654435761;
    return global.map((t) =>
      Float32Array.from(t.data, () => {
        s = (Math.imul(s, 1103515245) + 12345) >>> 0;
        return (s / 2 ** 32 - 0.5) * 0.02;
      }),
    );
  }
  async train(global: TensorList, _plan: TrainingPlan): Promise<TrainOutcome> {
    await new Promise((r) => setTimeout(r, this.delayMs));
    const d = SeededTrainer.delta(this.seed, global);
    if (this.poison) d[d.length - 1][d[d.length - 1].length - 1] = 200;
    return { adapter: global.map((t, k) => ({ ...t, data: Float32Array.from(t.data, (x, i) => x + d[k][i]) })), numExamples: this.numExamples, metrics: {} };
  }
}

describe('streaming admission over real gRPC: many small sites, any arrival order', function () {
  this.timeout(120_000);
  const SITES = 10;
  // Odd sizes and 30-byte chunks: values straddle chunk boundaries, and each upload is 12 chunks.
  const adapter = (): NamedTensor[] => [
    { name: `${PREFIX}.lora_A.weight`, dtype: 'float32', shape: [2, 19], data: new Float32Array(38) },
    { name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [25, 2], data: new Float32Array(50) },
  ];
  const examples = (i: number): number => 1 + ((i * 7) % 11);

  /** The committed v1 over SITES sites started with these delays (and a poisoned extra site when asked). */
  async function round(delays: readonly number[], poisoned: boolean): Promise<NamedTensor[]> {
    const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-stream-'));
    const logs: string[] = [];
    const logger = pino({ level: 'warn' }, new Writable({ write: (b: Buffer, _e, cb) => (logs.push(b.toString()), cb()) }));
    const h = await startCoordinator(
      runDir,
      { total: 1, minClients: SITES + (poisoned ? 1 : 0), minUpdates: SITES, clientsPerRound: 100 },
      {},
      { initialAdapter: adapter, logger },
    );
    const clients: FederationClient[] = [];
    try {
      const mk = (name: string, t: Trainer): FederationClient => {
        const c = new FederationClient({
          address: h.address,
          name,
          identity: testIdentity(name),
          trainer: t,
          chunkBytes: 30,
          backoff: { initialMs: 50, maxMs: 200, factor: 2 },
        });
        clients.push(c);
        return c;
      };
      const runs = delays.map((ms, i) => mk(`s${i}`, new SeededTrainer(i + 1, examples(i), ms)).run());
      let refused: string | undefined;
      if (poisoned) {
        // Its task fails with the refusal; it then leaves, so the round does not wait for it.
        const c = mk('poisoned', new SeededTrainer(99, 5, 0, true));
        c.on('taskFailed', (f) => {
          refused = f.error;
          void c.stop();
        });
        void c.run().catch(() => undefined);
      }
      await Promise.all(runs);
      if (poisoned) expect(refused).to.match(/update refused by the fedavg strategy: tensor .*lora_B.weight holds 200 at element 49; outside ±128/);
      const v1 = await h.coordinator.done;
      // Taken back out of the sum from its spool temporary, not by rebuilding the sum.
      expect(logs.join('')).not.to.include('could not take a refused update back');
      expect(v1.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(delays.map((_, i) => `s${i}`).sort());
      return v1.adapter;
    } finally {
      for (const c of clients) await c.stop().catch(() => undefined);
      await h.coordinator.stop();
      await fs.rm(runDir, { recursive: true, force: true });
    }
  }

  it('every order commits the same bytes, the BigInt reference; an upload refused after 11 of its 12 chunks were folded leaves no trace', async () => {
    // Reference: Σ n·q per value in BigInt, one float64 division, one float32 rounding (the base is 0).
    const deltas = Array.from({ length: SITES }, (_, i) => SeededTrainer.delta(i + 1, adapter()));
    const W = Array.from({ length: SITES }, (_, i) => examples(i)).reduce((a, b) => a + b, 0);
    const reference = adapter().map((t, k) => ({
      ...t,
      data: Float32Array.from(t.data, (_, j) => Number(deltas.reduce((acc, d, i) => acc + q(d[k][j], examples(i)), 0n)) / (W * SCALE)),
    }));
    const forward = Array.from({ length: SITES }, (_, i) => 20 * i);
    const backward = [...forward].reverse();
    const together = forward.map(() => 0); // all at once: their chunks interleave in the coordinator
    for (const [delays, poisoned] of [
      [forward, false],
      [backward, false],
      [together, true],
    ] as const)
      expect(hex(await round(delays, poisoned)), `delays ${delays.join(',')}`).to.deep.equal(hex(reference));
  });

  it("an upload still streaming when the round closes is taken back out: the version is the others' FedAvg, bit for bit", async () => {
    const runDir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-stream-close-'));
    const logs: string[] = [];
    const logger = pino({ level: 'warn' }, new Writable({ write: (b: Buffer, _e, cb) => (logs.push(b.toString()), cb()) }));
    const h = await startCoordinator(runDir, { total: 1, minClients: 3, minUpdates: 2, deadlineMs: 2500 }, {}, { logger });
    const c = rawClient(h.address);
    const streams: { cancel(): void }[] = [];
    try {
      const sites: { name: string; who: Awaited<ReturnType<typeof join>>; task: Promise<TrainTask__Output> }[] = [];
      for (const name of ['a', 'b', 'late']) {
        const who = await join(c, name);
        const t = nextTask(c, who.session_token);
        streams.push(t.stream);
        sites.push({ name, who, task: t.task });
      }
      const deltas = sites.map((x) => siteDelta(x.name, smallAdapter(0)));
      const weights = [10, 30, 20];
      const frames = await Promise.all(
        sites.map(async (x, i) => uploadFrames({ who: x.who, task: await x.task, numExamples: weights[i], chunkBytes: 10 }, deltas[i])),
      );
      for (const i of [0, 1]) {
        expect((await sendUpload(c, frames[i])).err).to.equal(undefined);
        await reportMetrics(c, sites[i].who.session_token, (await sites[i].task).task_id, 1);
      }
      // The third site's header and half its chunks, folded into the sum; then it stalls until the deadline.
      const half = 1 + (frames[2].length - 2) / 2;
      let call: ReturnType<typeof c.UploadUpdate> | undefined;
      const late = new Promise<grpc.ServiceError | null>((resolve) => {
        call = c.UploadUpdate((err) => resolve(err));
        for (const f of frames[2].slice(0, half)) call.write(f);
      });
      streams.push({ cancel: () => call!.cancel() });
      const v1 = await h.coordinator.done;
      // Its next chunk, after the close, is refused: the attempt it belonged to is over.
      call!.write(frames[2][half]);
      expect((await late)?.code).to.equal(grpc.status.DEADLINE_EXCEEDED);
      const want = aggregateUpdates(
        new FedAvg(),
        smallAdapter(0),
        [0, 1].map((i) => ({ clientId: sites[i].name, numExamples: weights[i], delta: deltas[i] })),
      );
      expect(hex(sortByName([...v1.adapter]))).to.deep.equal(hex(sortByName(want.adapter)));
      expect(v1.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['a', 'b']);
      expect(logs.join('')).not.to.include('could not take a refused update back');
    } finally {
      for (const s of streams) s.cancel();
      c.close();
      await h.coordinator.stop(500);
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });
});
