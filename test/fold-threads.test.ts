// The running sum folded on several threads (coordinator/strategy/fold-threads.ts): every fold returns what the
// one-thread kernel returns and leaves the same bits, whoever did each part (a helper, or the caller taking a part no
// helper claimed in time), with a bad value in any part (the parts after it taken back out), for sums that share the
// helpers in turn, and through FedAvg's streamed fold in any split and order. The shipped shared module is the one
// fold-kernel.ts's text assembles to with its memory imported and shared.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import wabtInit from 'wabt';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { StreamedFold, type FoldPasses } from '../coordinator/strategy/stream-fold';
import { AdmissionError } from '../coordinator/strategy/strategy';
import { STAGE_BYTES, foldKernel, type FoldKernel } from '../coordinator/strategy/fold-kernel';
import {
  FOLD_THREADS_MIN_PARAMS,
  MIN_PART,
  PIECE,
  defaultFoldThreads,
  foldThreads,
  parallelFoldKernel,
  roundFoldKernel,
  resetFoldSpeeds,
  setFoldThreads,
  speeds,
  startFoldThreads,
} from '../coordinator/strategy/fold-threads';
import type { NamedTensor } from '../proto/tensors';
import { kernelWat } from './kernel-wat';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const STAGED = STAGE_BYTES / 4;
const bits = (k: FoldKernel): Uint32Array => new Uint32Array(k.acc.buffer, k.acc.byteOffset, 2 * k.acc.length);

function sameBits(a: FoldKernel, b: FoldKernel, label: string): void {
  const x = bits(a);
  const y = bits(b);
  let i = 0;
  while (i < x.length && x[i] === y[i]) i++;
  expect(i, `${label}: first difference at value ${i >> 1} (${a.acc[i >> 1]} against ${b.acc[i >> 1]})`).to.equal(x.length);
}

/** Seeded values of magnitude below 0.01 with exact ties mixed in (k + ½ on the 2^-24 grid). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, (_, i) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return i % 7 === 0 ? ((s % 2001) - 1000 + 0.5) / 2 ** 24 : (s / 2 ** 32 - 0.5) * 0.02;
  });
}

describe('fold on several threads', function () {
  this.timeout(120_000);
  // Helpers start without blocking (a sum made before they listen folds on one thread): started here first.
  before(async () => expect(await startFoldThreads(3)).to.equal(3));
  after(() => setFoldThreads(undefined));

  it('the shipped shared module is fold-kernel.ts’s text with its memory imported and shared (wabt, threads on)', async () => {
    const { wat } = await kernelWat('fold-kernel.ts');
    const shared = wat.replace('(memory (export "mem") 1)', '(import "env" "mem" (memory 1 65536 shared))');
    expect(shared).not.to.equal(wat);
    const src = await fs.readFile(path.join(__dirname, '..', '..', 'coordinator', 'strategy', 'fold-threads.ts'), 'utf8');
    const shipped = [.../const SHARED_WASM = Buffer\.from\(([^)]*)'base64'/.exec(src)![1].matchAll(/'([^']+)'/g)].map((m) => m[1]).join('');
    const wabt = await wabtInit();
    expect(Buffer.from(wabt.parseWat('shared.wat', shared, { threads: true }).toBinary({}).buffer).toString('base64')).to.equal(shipped);
  });

  it('default helpers: none on 2 cores, half the cores less one, at most 7; a bad count refused', () => {
    expect([1, 2, 3, 4, 8, 16, 64].map((c) => defaultFoldThreads(c))).to.deep.equal([0, 0, 0, 1, 3, 7, 7]);
    for (const bad of [-1, 1.5, 65, NaN]) expect(() => setFoldThreads(bad)).to.throw(RangeError, /fold threads/);
    setFoldThreads(2);
    expect(foldThreads()).to.equal(2);
    expect(roundFoldKernel(FOLD_THREADS_MIN_PARAMS - 1).threads).to.equal(0);
    expect(roundFoldKernel(FOLD_THREADS_MIN_PARAMS).threads).to.equal(2);
    setFoldThreads(0);
    expect(roundFoldKernel(FOLD_THREADS_MIN_PARAMS).threads).to.equal(0);
  });

  it('any run, weight and bad value: the same stop and the same bits as one thread, whoever took each part', () => {
    const params = 3 * STAGED;
    const one = foldKernel(params);
    const many = [parallelFoldKernel(params, 2, false)!, parallelFoldKernel(params, 3, false)!];
    expect(many.map((k) => k.threads)).to.deep.equal([2, 3]);
    const bad = fc.constantFrom(NaN, Infinity, -Infinity, 128, -128, 1e30);
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: STAGED }),
        fc.nat(2 * STAGED),
        fc.integer({ min: -(2 ** 21), max: 2 ** 21 }),
        fc.option(fc.tuple(fc.nat(), bad), { freq: 2 }),
        fc.nat(),
        fc.boolean(),
        (n, start, w, poison, seed, sleep) => {
          const x = values(n, seed);
          if (poison) x[poison[0] % n] = poison[1];
          // Asleep (past their spin), the helpers wake late and the caller takes their parts; awake, they take them.
          if (sleep) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 3);
          one.staged.set(x);
          const want = one.fold(start, n, w);
          for (const k of many) {
            k.staged.set(x);
            expect(k.fold(start, n, w), `threads ${k.threads}, n ${n}`).to.equal(want);
            sameBits(one, k, `threads ${k.threads}, n ${n}, start ${start}, w ${w}`);
          }
        },
      ),
      { seed: 21, numRuns: 60 },
    );
  });

  it('foldBytes (copy of the next piece while the helpers fold one): the same stop and bits as staging and one thread', () => {
    const params = 3 * STAGED;
    const one = foldKernel(params);
    const k = parallelFoldKernel(params, 3, false)!;
    const bad = fc.constantFrom(NaN, Infinity, -128, 1e30);
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 0, max: 2 * STAGED + 99 }), fc.constantFrom(2 * PIECE, 2 * PIECE + 7, STAGED, STAGED + 1, 5 * PIECE + 8191)),
        fc.nat(STAGED),
        fc.integer({ min: -(2 ** 21), max: 2 ** 21 }),
        fc.option(fc.tuple(fc.nat(), bad), { freq: 2 }),
        fc.nat(),
        (n, start, w, poison, seed) => {
          const x = values(n, seed);
          if (poison && n > 0) x[poison[0] % n] = poison[1];
          let want = 0;
          for (let off = 0; off < n && want === off; off += STAGED) {
            const m = Math.min(STAGED, n - off);
            one.staged.set(x.subarray(off, off + m));
            want = off + one.fold(start + off, m, w);
          }
          expect(k.foldBytes!(start, new Uint8Array(x.buffer), w), `n ${n}`).to.equal(want);
          sameBits(one, k, `n ${n}, start ${start}, w ${w}`);
        },
      ),
      { seed: 22, numRuns: 40 },
    );
  });

  it('StreamedFold with pushWhole: chunks that start on a value go whole, the rest staged; a refusal names its value', () => {
    const k = foldKernel(10, false);
    const calls: string[] = [];
    const passes = (badAt = -1): FoldPasses => ({
      foldsOnPush: true,
      push: (start, n) => (calls.push(`staged ${start}+${n}`), n),
      pushWhole: (start, words) => {
        calls.push(`whole ${start}+${words.length / 4}`);
        return badAt >= start && badAt < start + words.length / 4 ? badAt - start : words.length / 4;
      },
      refuse: (i, value) => new Error(`value ${i} = ${value}`),
      takeBack: () => undefined,
      finish: () => false,
      commit: () => undefined,
      abandon: () => undefined,
      undone: () => undefined,
    });
    const b = new Uint8Array(Float32Array.from({ length: 10 }, (_, i) => i + 0.5).buffer);
    const f = new StreamedFold(k, 10, passes());
    for (const [from, to] of [
      [0, 8],
      [8, 14],
      [14, 16],
      [16, 17],
      [17, 40],
    ])
      f.push(b.subarray(from, to));
    f.finish();
    expect([calls, f.folded]).to.deep.equal([['whole 0+2', 'whole 2+1', 'staged 3+1', 'staged 4+6'], 10]);
    calls.length = 0;
    const g = new StreamedFold(k, 10, passes(6));
    g.push(b.subarray(0, 16));
    expect(() => g.push(b.subarray(16, 40))).to.throw('value 6 = 6.5');
    expect([calls, g.folded]).to.deep.equal([['whole 0+4', 'whole 4+6'], 6]);
    const h = new StreamedFold(k, 10, passes());
    expect(() => h.push(new Uint8Array(44))).to.throw(AdmissionError, 'more than the 10 values');
  });

  it('parts are taken by the helpers when they are awake and by the caller when they are not, with the same bits', () => {
    const n = STAGED;
    const one = foldKernel(n);
    const k = parallelFoldKernel(n, 2, false)!;
    const x = values(n, 5);
    one.staged.set(x);
    k.staged.set(x);
    // Until both ways happened (a few folds on an idle host; bounded on a busy one).
    const until = Date.now() + 20_000;
    for (let r = 0; Date.now() < until && (k.parts!.helpers === 0 || k.parts!.caller === 0); r++) {
      if (r % 2) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
      expect(one.fold(0, n, r + 1)).to.equal(n);
      expect(k.fold(0, n, r + 1)).to.equal(n);
    }
    expect(k.parts!.helpers, 'parts the helpers took').to.be.above(0);
    expect(k.parts!.caller, 'parts the caller took').to.be.above(0);
    sameBits(one, k, 'after both ways');
  });

  it('each run goes the way measured faster (one in 64 the other way, to keep measuring)', () => {
    resetFoldSpeeds();
    const sp = speeds(3);
    expect([sp.threads, sp.one, sp.runs]).to.deep.equal([NaN, NaN, 0]);
    const n = STAGED;
    const one = foldKernel(n);
    const k = parallelFoldKernel(n, 3)!;
    const x = values(n, 9);
    one.staged.set(x);
    k.staged.set(x);
    const threaded = (): number => k.parts!.helpers + k.parts!.caller;
    // Unmeasured: threads; the 64th run measures the calling thread alone.
    for (let r = 1; r <= 64; r++) {
      expect(k.fold(0, n, r)).to.equal(n);
      one.fold(0, n, r);
      expect(threaded(), `run ${r}`).to.equal(3 * Math.min(r, 63));
    }
    expect(sp.threads).to.be.above(0);
    expect(sp.one).to.be.above(0);
    // Threads measured slower: the calling thread alone, but for the 128th run.
    sp.threads = 2;
    sp.one = 1;
    for (let r = 65; r <= 128; r++) {
      expect(k.fold(0, n, -r)).to.equal(n);
      one.fold(0, n, -r);
      expect(threaded(), `run ${r}`).to.equal(3 * 63 + (r === 128 ? 3 : 0));
    }
    sameBits(one, k, 'either way');
    resetFoldSpeeds();
    expect(speeds(3).runs).to.equal(0);
  });

  it('a bad value in each part, at each edge of it: the values before it in, none after', () => {
    const n = 4 * MIN_PART + 13;
    const one = foldKernel(n);
    const k = parallelFoldKernel(n, 3, false)!;
    const each = Math.ceil(n / 4 / 16) * 16;
    for (const at of [0, 7, 8, each - 1, each, each + 9, 2 * each + 3, 3 * each - 8, 3 * each, n - 6, n - 1]) {
      const x = values(n, at);
      x[at] = NaN;
      for (const s of [one, k]) {
        s.acc.fill(0);
        s.staged.set(x);
        expect(s.fold(0, n, 5), `bad at ${at}`).to.equal(at);
      }
      sameBits(one, k, `bad at ${at}`);
      for (let i = 0; i < n; i++) if (i >= at && k.acc[i] !== 0) expect.fail(`value ${i} after the bad one at ${at} is in the sum`);
    }
  });

  it('two sums take turns on the same helpers: each stays its own', () => {
    const n = STAGED;
    const a = [foldKernel(n), parallelFoldKernel(n, 2, false)!];
    const b = [foldKernel(n), parallelFoldKernel(n, 2)!];
    for (let r = 0; r < 6; r++) {
      const x = values(n, r);
      for (const [k, w] of [...a.map((k) => [k, r + 1] as const), ...b.map((k) => [k, -3 * r - 2] as const)]) {
        k.staged.set(x);
        expect(k.fold(0, n, w)).to.equal(n);
      }
    }
    sameBits(a[0], a[1], 'first sum');
    sameBits(b[0], b[1], 'second sum');
  });

  it('FedAvg streamed in any split and order on 2 helpers: the committed adapter, bit for bit, of one thread', () => {
    const P = FOLD_THREADS_MIN_PARAMS + 1001;
    const shape = (name: string, n: number): NamedTensor => ({ name, dtype: 'float32', shape: [n], data: new Float32Array(n) });
    const global = [shape('a', 1001), shape('b', FOLD_THREADS_MIN_PARAMS)];
    const updates = [1, 2, 3].map((i) => values(P, 100 + i));
    const bytes = (x: Float32Array): Uint8Array => new Uint8Array(x.buffer);
    const run = (threads: number, order: number[], chunk: number, poisonAt?: number): Uint8Array[] => {
      setFoldThreads(threads);
      const s = new FedAvg();
      const agg = s.begin(global);
      for (const i of order) {
        const f = agg.open(`c${i}`, 10 * i + 1);
        const b = bytes(updates[i]);
        for (let off = 0; off < b.length; off += chunk) f.push(b.subarray(off, off + chunk));
        f.finish();
        f.commit();
      }
      if (poisonAt !== undefined) {
        // Refused at poisonAt after the chunks before it were folded, then taken back from the same bytes.
        const x = values(P, 7);
        x[poisonAt] = 300;
        const f = agg.open('bad', 9);
        expect(() => {
          for (let off = 0; off < 4 * P; off += chunk) f.push(bytes(x).subarray(off, off + chunk));
        }).to.throw(/300/);
        f.abandon();
        for (let off = 0; off < 4 * P && !f.undo(bytes(x).subarray(off, off + chunk)); off += chunk);
        f.undone();
      }
      return s.aggregate(global, agg.sum()).map((t) => new Uint8Array(t.data.buffer.slice(0)));
    };
    const want = run(0, [0, 1, 2], 1 << 20);
    for (const [order, chunk, poisonAt] of [
      [[2, 0, 1], 1 << 20, undefined],
      [[1, 2, 0], 262_147, P - 5],
      [[0, 2, 1], 99_999, 70_001],
    ] as const) {
      expect(run(2, [...order], chunk, poisonAt), `order ${order.join()}, chunks of ${chunk}`).to.deep.equal(want);
    }
  });
});
