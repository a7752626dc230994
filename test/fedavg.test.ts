// coordinator/strategy/fixed-point.ts and fedavg.ts: FedAvg weighted by example counts on the 2^-24 integer
// grid. Results are checked against hand-computed values and an exact BigInt reference, and must be
// bit-identical under every permutation of the updates. The streaming form (admit, add, aggregate the running sum)
// is in test/fedavg-streaming.test.ts.
import { FedAvg, aggregateUpdates } from '../coordinator/strategy/fedavg';
import {
  CLIP_LOG2,
  FRACTION_BITS,
  FixedPointRangeError,
  LIMIT,
  MAX_TOTAL_WEIGHT,
  SCALE,
  accumulate,
  quantize,
  weightedMean,
} from '../coordinator/strategy/fixed-point';
import type { ClientUpdate } from '../coordinator/strategy/strategy';
import type { NamedTensor } from '../proto/tensors';
import { Prng } from '../proto/prng';
import { hex, permutations, randomUpdate, referenceFedAvg, t, upd } from './fedavg-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('fixed point', () => {
  it('has the documented grid and bounds, and MAX_TOTAL_WEIGHT keeps Σ n·q below 2^53', () => {
    expect(FRACTION_BITS).to.equal(24);
    expect(SCALE).to.equal(2 ** 24);
    expect(CLIP_LOG2).to.equal(7);
    expect(LIMIT).to.equal(128);
    expect(MAX_TOTAL_WEIGHT).to.equal(2 ** 22 - 1);
    // Largest |q| is that of the largest float32 below 128: (128 - 2^-17)·2^24 = 2^31 - 2^7.
    const maxQ = quantize(Float32Array.from([Math.fround(128 - 2 ** -17)]))[0];
    expect(maxQ).to.equal(2 ** 31 - 2 ** 7);
    expect(BigInt(MAX_TOTAL_WEIGHT) * BigInt(maxQ) < 2n ** 53n).to.equal(true);
  });

  it('quantize rounds half away from zero on the 2^-24 grid', () => {
    const step = 1 / SCALE;
    const q = quantize(
      Float32Array.from([0.5 * step, -0.5 * step, 1.5 * step, -1.5 * step, 2.5 * step, 0.49 * step, -0.49 * step, 0.25, -127.5, 0, -0, 1e-45]),
    );
    expect(Array.from(q)).to.deep.equal([1, -1, 2, -2, 3, 0, -0, 0.25 * SCALE, -127.5 * SCALE, 0, 0, 0]);
    const big = Math.fround(127.99999);
    expect(quantize(Float32Array.from([big, -big]))[1]).to.equal(-big * SCALE);
  });

  it('quantize and accumulate refuse NaN, ±Inf and |x| ≥ 128, naming tensor, index and value', () => {
    for (const bad of [128, -128, 200, NaN, Infinity, -Infinity]) {
      const x = Float32Array.from([0, 1, bad]);
      let err: unknown;
      try {
        quantize(x, 'lora_A');
      } catch (e) {
        err = e;
      }
      expect(err).to.be.instanceOf(FixedPointRangeError).and.instanceOf(RangeError);
      const fe = err as FixedPointRangeError;
      expect([fe.tensor, fe.index, fe.value]).to.deep.equal(['lora_A', 2, bad]);
      expect(fe.message).to.equal(`lora_A[2] = ${bad} is outside the fixed-point range (|x| < 128)`);
      expect(() => accumulate(new Float64Array(3), x, 1, 'c:lora_B'), String(bad)).to.throw(FixedPointRangeError, `c:lora_B[2] = ${bad}`);
    }
    expect(() => accumulate(new Float64Array(2), new Float32Array(3), 1, 'c:w')).to.throw(RangeError, 'c:w: 3 values, accumulator has 2');
  });

  it("names its error FixedPointRangeError and an unnamed tensor 'tensor'", () => {
    const err = new FixedPointRangeError('w', 0, NaN);
    expect(err.name).to.equal('FixedPointRangeError');
    expect(() => quantize(Float32Array.from([NaN]))).to.throw(FixedPointRangeError, /^tensor\[0\] = NaN is outside the fixed-point range \(\|x\| < 128\)$/);
    expect(() => accumulate(new Float64Array(2), Float32Array.from([1, 200]), 1)).to.throw(FixedPointRangeError, /^tensor\[1\] = 200 is outside/);
    expect(() => accumulate(new Float64Array(1), new Float32Array(2), 1)).to.throw(RangeError, /^tensor: 2 values, accumulator has 1$/);
  });

  it('accumulate adds weight·q exactly; weightedMean divides once by Σ weights · 2^24', () => {
    const acc = new Float64Array(3);
    accumulate(acc, Float32Array.from([1, -0.5, 3 / SCALE]), 2);
    accumulate(acc, Float32Array.from([0.25, 1, -1 / SCALE]), 6);
    expect(Array.from(acc)).to.deep.equal([(2 * 1 + 6 * 0.25) * SCALE, (2 * -0.5 + 6 * 1) * SCALE, 2 * 3 - 6 * 1]);
    expect(Array.from(weightedMean(acc, 8))).to.deep.equal([3.5 / 8, 5 / 8, 0 / 8]);
    expect(Array.from(weightedMean(Float64Array.from([SCALE]), 3))).to.deep.equal([1 / 3]);
  });
});

describe('FedAvg', () => {
  const fedavg = new FedAvg();
  const avg = (g: readonly NamedTensor[], us: readonly ClientUpdate[]): ReturnType<typeof aggregateUpdates> => aggregateUpdates(fedavg, g, us);

  it('is named fedavg and declares the fixed-point range as its maxAbsDelta', () => {
    expect(fedavg.name).to.equal('fedavg');
    expect(fedavg.maxAbsDelta).to.equal(LIMIT);
  });

  it('computes hand-checked weighted means exactly', () => {
    const global = [t('a', [1, 2, -3], [3, 1]), t('b', [0])];
    const r = avg(global, [
      upd('x', 1, [t('a', [0.5, -1, 0], [3, 1]), t('b', [0.25])]),
      upd('y', 3, [t('a', [-0.5, 1, 0.125], [3, 1]), t('b', [0.75])]),
      upd('z', 4, [t('a', [0, 0, -0.25], [3, 1]), t('b', [-0.5])]),
    ]);
    // a0: 1 + (0.5 − 1.5 + 0)/8 = 0.875; a1: 2 + (−1 + 3)/8 = 2.25; a2: −3 + (0.375 − 1)/8 = −3.078125
    // b:  (0.25 + 2.25 − 2)/8 = 0.0625
    expect(Array.from(r.adapter[0].data)).to.deep.equal([0.875, 2.25, -3.078125]);
    expect(Array.from(r.adapter[1].data)).to.deep.equal([0.0625]);
    expect(r.adapter.map((x) => [x.name, x.dtype, x.shape])).to.deep.equal([
      ['a', 'float32', [3, 1]],
      ['b', 'float32', [1]],
    ]);
    expect(r.weights).to.deep.equal({ x: 0.125, y: 0.375, z: 0.5 });
    expect(Object.keys(r.weights)).to.deep.equal(['x', 'y', 'z']);
  });

  it('rounds a non-dyadic mean once: zero ×2 and one ×1 give float32(1/3)', () => {
    const r = avg([t('a', [0, 10])], [upd('p', 2, [t('a', [0, 0])]), upd('q', 1, [t('a', [1, -1])])]);
    expect(Array.from(r.adapter[0].data)).to.deep.equal([Math.fround(1 / 3), Math.fround(10 - 1 / 3)]);
    expect(r.weights.p).to.equal(2 / 3);
  });

  it('snaps a single update onto the 2^-24 grid: global + round(delta·2^24)/2^24', () => {
    const delta = Float32Array.from([0.3, -0.7, 1e-9, 0.5 / SCALE, 100.123]);
    const r = avg([t('a', [0, 0, 0, 0, 0])], [upd('solo', 17, [{ name: 'a', dtype: 'float32', shape: [5], data: delta }])]);
    const want = Array.from(quantize(delta)).map((q) => Math.fround(q / SCALE));
    expect(Array.from(r.adapter[0].data)).to.deep.equal(want);
    expect(r.adapter[0].data[3]).to.equal(1 / SCALE);
    expect(r.weights).to.deep.equal({ solo: 1 });
  });

  it('weights ∝ examples: scaling every count by k, or splitting a client in two, changes no bit', () => {
    const rng = new Prng(7, 1);
    const global = [
      t(
        'w0',
        Array.from({ length: 64 }, () => rng.nextFloat() - 0.5),
      ),
    ];
    const us = [randomUpdate(rng, 'a', [64], 0.5, 3), randomUpdate(rng, 'b', [64], 0.5, 5), randomUpdate(rng, 'c', [64], 0.5, 11)];
    const ref = avg(global, us);
    for (const k of [2, 3, 7, 1000]) {
      const scaled = avg(
        global,
        us.map((u) => ({ ...u, numExamples: u.numExamples * k })),
      );
      expect(hex(scaled.adapter), `k=${k}`).to.equal(hex(ref.adapter));
      expect(scaled.weights).to.deep.equal(ref.weights);
    }
    // c (11 examples) as c1 (4) + c2 (7) with the same delta.
    const split = avg(global, [us[0], us[1], { ...us[2], clientId: 'c1', numExamples: 4 }, { ...us[2], clientId: 'c2', numExamples: 7 }]);
    expect(hex(split.adapter)).to.equal(hex(ref.adapter));
    // Doubling one client's count moves the mean towards it, and the recorded weights follow.
    const heavier = avg(global, [us[0], us[1], { ...us[2], numExamples: 22 }]);
    expect(heavier.weights).to.deep.equal({ a: 3 / 30, b: 5 / 30, c: 22 / 30 });
    const dist = (x: Float32Array): number => x.reduce((s, v, i) => s + Math.abs(v - (global[0].data[i] + us[2].delta[0].data[i])), 0);
    expect(dist(heavier.adapter[0].data)).to.be.below(dist(ref.adapter[0].data));
  });

  it('gives byte-identical Float32 output for all 120 orders of 5 random updates, equal to the exact reference', () => {
    const rng = new Prng(2024, 9);
    const sizes = [333, 7, 64];
    const global = sizes.map((n, k) =>
      t(
        `w${k}`,
        Array.from({ length: n }, () => (rng.nextFloat() - 0.5) * 4),
      ),
    );
    const updates = [0, 1, 2, 3, 4].map((k) => randomUpdate(rng, `client-${k}`, sizes, [0.9, 1e-3, 3, 0.05, 100][k], 1 + Math.floor(rng.nextFloat() * 5000)));
    const perms = permutations(updates);
    expect(perms).to.have.length(120);
    const ref = avg(global, updates);
    const refHex = hex(ref.adapter);
    for (const p of perms) {
      const r = avg(global, p);
      expect(hex(r.adapter)).to.equal(refHex);
      expect(r.weights).to.deep.equal(ref.weights);
    }
    const exact = referenceFedAvg(global, updates);
    ref.adapter.forEach((x, k) => expect(Buffer.from(x.data.buffer).equals(Buffer.from(exact[k].buffer)), x.name).to.equal(true));
    // Plain float32 accumulation, by contrast, does depend on the order (which is why the grid exists).
    const naive = (us: ClientUpdate[]): string => {
      const total = us.reduce((s, u) => s + u.numExamples, 0);
      const acc = new Float32Array(sizes[0]);
      for (const u of us) for (let i = 0; i < acc.length; i++) acc[i] = Math.fround(acc[i] + Math.fround((u.numExamples / total) * u.delta[0].data[i]));
      return Buffer.from(acc.buffer).toString('hex');
    };
    expect(new Set(perms.map(naive)).size).to.be.greaterThan(1);
  });

  it('matches the float64 weighted mean within 2^-24 per element', () => {
    const rng = new Prng(99, 3);
    const n = 4096;
    const global = [t('w0', new Array(n).fill(0))];
    const updates = [0, 1, 2, 3, 4, 5].map((k) => randomUpdate(rng, `c${k}`, [n], 0.999, 1 + k * 97));
    const total = updates.reduce((s, u) => s + u.numExamples, 0);
    const out = avg(global, updates).adapter[0].data;
    let worst = 0;
    for (let i = 0; i < n; i++) {
      const mean = updates.reduce((s, u) => s + u.numExamples * u.delta[0].data[i], 0) / total;
      worst = Math.max(worst, Math.abs(out[i] - mean));
    }
    expect(worst).to.be.at.most(2 ** -24);
    expect(worst).to.be.above(0); // the grid is visible: this is not a tautology
    // With a non-zero global the grid error stays within 2^-24 before the final float32 rounding.
    const g2 = [
      t(
        'w0',
        Array.from({ length: n }, () => rng.nextFloat() * 8 - 4),
      ),
    ];
    const out2 = avg(g2, updates).adapter[0].data;
    for (let i = 0; i < n; i++) {
      const exact = g2[0].data[i] + updates.reduce((s, u) => s + u.numExamples * u.delta[0].data[i], 0) / total;
      const halfUlp = 2 ** (Math.floor(Math.log2(Math.abs(exact) || 1)) - 24);
      expect(Math.abs(out2[i] - exact)).to.be.at.most(2 ** -24 + halfUlp);
    }
  });

  it('does not modify the global adapter or the updates', () => {
    const global = [t('a', [1, 2])];
    const d = [t('a', [0.5, 0.25])];
    const before = hex(global) + hex(d);
    const r = avg(global, [upd('x', 2, d)]);
    expect(hex(global) + hex(d)).to.equal(before);
    expect(r.adapter[0].data).to.not.equal(global[0].data);
  });

  it('refuses an empty round', () => {
    expect(() => avg([t('a', [0])], [])).to.throw(Error, 'FedAvg: no updates to aggregate');
  });

  it('refuses out-of-range and non-finite deltas, naming client, tensor and index', () => {
    const g = [t('a', [0, 0]), t('b', [0, 0, 0])];
    const ok = upd('ok', 1, [t('a', [0, 0]), t('b', [0, 0, 0])]);
    for (const bad of [128, -128, 1e6, NaN, Infinity, -Infinity]) {
      expect(() => avg(g, [ok, upd('evil', 3, [t('a', [0, 0]), t('b', [0, 0, bad])])]), String(bad)).to.throw(
        FixedPointRangeError,
        `evil:b[2] = ${Math.fround(bad)} is outside the fixed-point range (|x| < 128)`,
      );
    }
    // The largest float32 below the limit, from every client at the bound, is fine.
    const edge = Math.fround(128 - 2 ** -17);
    const r = avg([t('a', [0, 0])], [upd('p', 5, [t('a', [edge, -edge])]), upd('q', 9, [t('a', [edge, -edge])])]);
    expect(Array.from(r.adapter[0].data)).to.deep.equal([edge, -edge]);
  });

  it('refuses layout mismatches: names, order, shapes, tensor count', () => {
    const g = [t('a', [0, 0]), t('b', [0, 0, 0])];
    const cases: [NamedTensor[], string][] = [
      [[t('a', [0, 0]), t('c', [0, 0, 0])], 'layout mismatch at 1: b vs c'],
      [[t('b', [0, 0, 0]), t('a', [0, 0])], 'layout mismatch at 0: a vs b'],
      [[t('a', [0, 0]), t('b', [0, 0, 0], [3, 1])], 'shape mismatch for b: [3] vs [3,1]'],
      [[t('a', [0, 0, 0]), t('b', [0, 0, 0])], 'shape mismatch for a: [2] vs [3]'],
      [[t('a', [0, 0])], 'layout mismatch: 2 tensors vs 1'],
      [[t('a', [0, 0]), t('b', [0, 0, 0]), t('c', [0])], 'layout mismatch: 2 tensors vs 3'],
    ];
    for (const [delta, msg] of cases) expect(() => avg(g, [upd('x', 1, delta)]), msg).to.throw(Error, msg);
    // Data shorter than its declared shape is caught by the accumulator.
    const short: NamedTensor = { name: 'b', dtype: 'float32', shape: [3], data: new Float32Array(2) };
    expect(() => avg(g, [upd('x', 1, [t('a', [0, 0]), short])])).to.throw(RangeError, 'x:b: 2 values, accumulator has 3');
  });

  it('refuses two updates from one client, whatever their position', () => {
    const g = [t('a', [0])];
    const d = [t('a', [0.5])];
    expect(() => avg(g, [upd('x', 1, d), upd('y', 1, d), upd('x', 2, d)])).to.throw(Error, 'FedAvg: two updates from x');
  });

  it('refuses example counts that are not positive safe integers', () => {
    const g = [t('a', [0])];
    for (const n of [0, -1, 1.5, NaN, Infinity, 2 ** 53]) {
      expect(() => avg(g, [upd('x', n, [t('a', [0])])]), String(n)).to.throw(Error, `FedAvg: x reports ${n} examples; need a positive integer`);
    }
  });

  it('bounds the total weight: exactly MAX_TOTAL_WEIGHT is exact at extreme values, one more is refused', () => {
    const edge = Math.fround(128 - 2 ** -17);
    const tiny = 1 / SCALE;
    const values = (sign: number): number[] => [edge * sign, -edge * sign, tiny * sign, 0.5 * sign];
    const g = [t('a', [0, 0, 0, 0])];
    const a = 2 ** 21;
    const updates = [upd('a', a, [t('a', values(1))]), upd('b', MAX_TOTAL_WEIGHT - a - 1, [t('a', values(-1))]), upd('c', 1, [t('a', values(1))])];
    expect(updates.reduce((s, u) => s + u.numExamples, 0)).to.equal(MAX_TOTAL_WEIGHT);
    const r = avg(g, updates);
    expect(Buffer.from(r.adapter[0].data.buffer).equals(Buffer.from(referenceFedAvg(g, updates)[0].buffer))).to.equal(true);
    // Net weight a + 1 − b = 3 out of MAX_TOTAL_WEIGHT, on the edge value.
    expect(r.adapter[0].data[0]).to.equal(Math.fround((3 * (2 ** 31 - 2 ** 7)) / (MAX_TOTAL_WEIGHT * SCALE)));
    for (const p of permutations(updates)) expect(hex(avg(g, p).adapter)).to.equal(hex(r.adapter));
    const over = [...updates.slice(0, 2), upd('c', 2, [t('a', values(1))])];
    expect(() => avg(g, over)).to.throw(Error, `FedAvg: ${MAX_TOTAL_WEIGHT + 1} examples in one round exceed the exact-sum bound ${MAX_TOTAL_WEIGHT}`);
  });
});
