// FedAvg's close split across a threaded sum's helpers (coordinator/strategy/fold-close.ts): the next adapter is the
// one-thread close's bit for bit, for several thread counts and cuts (part boundaries inside tensors), whoever closes
// each part (a helper, or the caller taking a part no helper claimed); a helper's own close of a part equals the
// caller's; the shipped shared module is close-kernel.ts's text with its memory imported and shared.
import wabtInit from 'wabt';
import { CLOSE_SHARED_WASM, closeFedAvg } from '../coordinator/strategy/close-kernel';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { SCALE } from '../coordinator/strategy/fixed-point';
import { callerClose, closeParts } from '../coordinator/strategy/fold-close';
import { SUM_AT, wasmApi } from '../coordinator/strategy/fold-kernel';
import { CTRL, OP, helpers, post, waitFor, type SumMessage } from '../coordinator/strategy/fold-pool';
import { FOLD_THREADS_MIN_PARAMS, parallelFoldKernel, setFoldThreads, startFoldThreads } from '../coordinator/strategy/fold-threads';
import type { NamedTensor } from '../proto/tensors';
import { kernelWat } from './kernel-wat';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Seeded float32 values of magnitude below `scale`. */
function values(n: number, seed: number, scale: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 2 * scale;
  });
}

const bytesOf = (x: Float32Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

describe('FedAvg close on the fold helpers', function () {
  this.timeout(60_000);
  before(async () => {
    expect(await startFoldThreads(3)).to.equal(3);
  });
  after(() => setFoldThreads(undefined));

  it('the shipped shared module is close-kernel.ts’s text with its memory imported and shared (wabt, threads on)', async () => {
    const { wat } = await kernelWat('close-kernel.ts');
    const shared = wat.replace('(memory (export "mem") 24)', '(import "env" "mem" (memory 1 65536 shared))');
    expect(shared).not.to.equal(wat);
    const wabt = await wabtInit();
    expect(Buffer.from(wabt.parseWat('close-shared.wat', shared, { threads: true }).toBinary({}).buffer).equals(CLOSE_SHARED_WASM)).to.equal(true);
  });

  it('split over 1-3 helpers and 1-5 parts, boundaries inside tensors: the one-thread close bit for bit', () => {
    const sizes = [1001, 70_003, 3, 99_999, 17];
    const P = sizes.reduce((a, b) => a + b, 0);
    const global = sizes.map((n, i) => values(n, 50 + i, 2 ** ((i % 3) * 4 - 4)));
    for (const threads of [1, 2, 3]) {
      const k = parallelFoldKernel(P, threads, false)!;
      expect(k.threads).to.equal(threads);
      // The sum: three updates' fixed-point values, as a round leaves it.
      for (const [i, w] of [7, 100, 3].entries())
        for (let start = 0; start < P; start += k.staged.length) {
          const n = Math.min(k.staged.length, P - start);
          k.staged.set(values(n, 1000 * i + start, 0.05));
          expect(k.fold(start, n, w)).to.equal(n);
        }
      for (const d of [110 * SCALE, 3 * SCALE, 1e6 * SCALE]) {
        let off = 0;
        const want = global.map((g) => {
          const out = new Float32Array(g.length);
          expect(closeFedAvg(k.acc.subarray(off, off + g.length), g, d, out)).to.equal(true);
          off += g.length;
          return out;
        });
        for (const cut of [undefined, 1, 2, threads + 1, 5]) {
          const got = k.close!(global, d, cut)!;
          expect(got.map((t) => t.buffer instanceof SharedArrayBuffer)).to.deep.equal(sizes.map(() => false));
          got.forEach((t, i) => expect(bytesOf(t).equals(bytesOf(want[i])), `threads ${threads}, cut ${cut}, d ${d}, tensor ${i}`).to.equal(true));
        }
      }
      // A layout of another size is not closed here (the caller then closes on its own thread).
      expect(k.close!([new Float32Array(P - 1)], SCALE)).to.equal(undefined);
    }
  });

  it('a helper’s close of a part equals the caller’s, bit for bit', () => {
    const n = 4099;
    const pages = Math.ceil((SUM_AT + 12 * n + 64) / 65536);
    const memory = new wasmApi!.Memory({ initial: pages, maximum: pages, shared: true });
    const sumAt = SUM_AT;
    const gAt = sumAt + 8 * n;
    const s = new Float64Array(memory.buffer, sumAt, n);
    const g = new Float32Array(memory.buffer, gAt, n);
    s.set(Float64Array.from(values(n, 3, 1), (v) => Math.round(v * 2 ** 30)));
    const g0 = values(n, 4, 0.5);
    const d = 37 * SCALE;
    const want = new Float32Array(n);
    expect(closeFedAvg(s.slice(), g0, d, want)).to.equal(true);
    g.set(g0);
    callerClose(memory)(sumAt, gAt, n, d);
    expect(bytesOf(g.slice()).equals(bytesOf(want)), 'caller').to.equal(true);
    const sum: SumMessage = { op: 'sum', id: -7, memory, layout: undefined }; // an id no sum of fold-threads.ts has
    for (const h of helpers.slice(0, 3)) {
      g.set(g0);
      post(h, sum, sumAt, gAt, n, d, OP.CLOSE); // not taken back: this helper does it
      expect(waitFor(h.c, CTRL.DONE, h.seq, 30_000)).to.equal(true);
      expect(h.c[CTRL.RESULT]).to.equal(n);
      expect(bytesOf(g.slice()).equals(bytesOf(want)), 'helper').to.equal(true);
    }
  });

  it('FedAvg.aggregate of a threaded sum closes on the helpers: the one-thread adapter, bit for bit', () => {
    const shape = (name: string, data: Float32Array): NamedTensor => ({ name, dtype: 'float32', shape: [data.length], data });
    const global = [shape('a', values(1001, 1, 0.1)), shape('b', values(FOLD_THREADS_MIN_PARAMS, 2, 0.1))];
    const P = 1001 + FOLD_THREADS_MIN_PARAMS;
    const updates = [1, 2, 3].map((i) => ({ clientId: `c${i}`, numExamples: 10 * i + 1 }));
    const run = (threads: number): Buffer[] => {
      setFoldThreads(threads);
      const s = new FedAvg();
      const agg = s.begin(global);
      for (const u of updates) {
        const f = agg.open(u.clientId, u.numExamples);
        f.push(new Uint8Array(values(P, 40 + u.numExamples, 0.01).buffer));
        f.finish();
        f.commit();
      }
      const before = closeParts.helpers + closeParts.caller;
      const first = s.aggregate(global, agg.sum());
      const out = first.map((t) => Buffer.from(t.data.buffer.slice(0)));
      expect(closeParts.helpers + closeParts.caller - before, `threads ${threads}`).to.equal(threads);
      // Closed again (the buffers touched in advance serve the first close only): the same bits, new buffers.
      const again = s.aggregate(global, agg.sum());
      again.forEach((t, i) => expect(t.data.buffer).not.to.equal(first[i].data.buffer));
      expect(again.map((t) => Buffer.from(t.data.buffer.slice(0)))).to.deep.equal(out);
      expect(first.map((t) => Buffer.from(t.data.buffer.slice(0)))).to.deep.equal(out);
      return out;
    };
    const want = run(0);
    for (const threads of [1, 2, 3]) expect(run(threads), `threads ${threads}`).to.deep.equal(want);
  });
});
