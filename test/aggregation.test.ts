// FedAvg on the fixed-point grid: exact arithmetic, weights by example count, and bit-identical output
// under every arrival order.
import { FedAvg } from '../coordinator/strategy/fedavg';
import { FixedPointRangeError, MAX_TOTAL_WEIGHT, SCALE, quantize } from '../coordinator/strategy/fixed-point';
import type { ClientUpdate } from '../coordinator/strategy/strategy';
import type { NamedTensor } from '../proto/tensors';
import { deriveSeed, selectClients } from '../coordinator/selection';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const t = (name: string, values: number[]): NamedTensor => ({ name, dtype: 'float32', shape: [values.length], data: Float32Array.from(values) });

function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

function randomUpdate(id: string, n: number, seed: number, examples: number): ClientUpdate {
  let s = seed;
  const rnd = (): number => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 4294967296) * 2 - 1;
  };
  return { clientId: id, numExamples: examples, delta: [t('a', Array.from({ length: n }, () => rnd() * 0.3)), t('b', Array.from({ length: 7 }, () => rnd() * 1e-3))] };
}

describe('FedAvg (fixed point)', () => {
  const fedavg = new FedAvg();

  it('computes the example-weighted mean exactly on hand-checked values', () => {
    const global = [t('a', [1, 2]), t('b', [0])];
    const r = fedavg.aggregate(global, [
      { clientId: 'x', numExamples: 1, delta: [t('a', [0.5, -1]), t('b', [0.25])] },
      { clientId: 'y', numExamples: 3, delta: [t('a', [-0.5, 1]), t('b', [0.75])] },
    ]);
    // a: 1 + (0.5·1 − 0.5·3)/4 = 0.75, 2 + (−1 + 3)/4 = 2.5; b: (0.25 + 2.25)/4 = 0.625
    expect(Array.from(r.adapter[0].data)).to.deep.equal([0.75, 2.5]);
    expect(Array.from(r.adapter[1].data)).to.deep.equal([0.625]);
    expect(r.weights).to.deep.equal({ x: 0.25, y: 0.75 });
  });

  it('gives byte-identical output for all 120 arrival orders of 5 updates', () => {
    const global = [t('a', new Array(301).fill(0.1)), t('b', new Array(7).fill(-0.2))];
    const updates = [0, 1, 2, 3, 4].map((k) => randomUpdate(`c${k}`, 301, 100 + k, 10 + 37 * k));
    const ref = fedavg.aggregate(global, updates);
    const bytes = (xs: NamedTensor[]): string => xs.map((x) => Buffer.from(x.data.buffer).toString('hex')).join('|');
    for (const p of permutations(updates)) expect(bytes(fedavg.aggregate(global, p).adapter)).to.equal(bytes(ref.adapter));
    // Within one grid step (2^-24) of the float64 weighted mean, before the final float32 rounding.
    const total = updates.reduce((s, u) => s + u.numExamples, 0);
    for (let i = 0; i < 301; i++) {
      const exact = 0.1 + updates.reduce((s, u) => s + (u.numExamples / total) * u.delta[0].data[i], 0);
      expect(Math.abs(ref.adapter[0].data[i] - exact)).to.be.below(2 ** -24 + 2 ** -26);
    }
  });

  it('rejects empty rounds, duplicate clients, bad weights, mismatched layouts and out-of-range deltas', () => {
    const g = [t('a', [0, 0])];
    const u = (id: string, vals: number[], n = 1, name = 'a'): ClientUpdate => ({ clientId: id, numExamples: n, delta: [t(name, vals)] });
    expect(() => fedavg.aggregate(g, [])).to.throw('no updates');
    expect(() => fedavg.aggregate(g, [u('x', [0, 0]), u('x', [0, 0])])).to.throw('two updates from x');
    expect(() => fedavg.aggregate(g, [u('x', [0, 0], 0)])).to.throw('positive integer');
    expect(() => fedavg.aggregate(g, [u('x', [0, 0], 1.5)])).to.throw('positive integer');
    expect(() => fedavg.aggregate(g, [u('x', [0, 0, 0])])).to.throw('shape mismatch');
    expect(() => fedavg.aggregate(g, [u('x', [0, 0], 1, 'z')])).to.throw('layout mismatch');
    expect(() => fedavg.aggregate(g, [u('x', [0, 200])])).to.throw(FixedPointRangeError, 'x:a[1] = 200');
    expect(() => fedavg.aggregate(g, [u('x', [0, 0], MAX_TOTAL_WEIGHT), u('y', [0, 0], 1)])).to.throw('exact-sum bound');
  });

  it('quantises with round-half-away-from-zero on the 2^-24 grid', () => {
    const q = quantize(Float32Array.from([1.5 / SCALE, -1.5 / SCALE, 2.5 / SCALE, 0.25, -127.5]));
    expect(Array.from(q)).to.deep.equal([2, -2, 3, 0.25 * SCALE, -127.5 * SCALE]);
    expect(() => quantize(Float32Array.from([NaN]))).to.throw(FixedPointRangeError);
  });
});

describe('seeded selection', () => {
  it('depends only on the set of ids and the seed', () => {
    const ids = Array.from({ length: 20 }, (_, i) => `c${i}`);
    const a = selectClients(ids, 5, 2, 123);
    expect(a).to.have.length(5);
    expect(selectClients([...ids].reverse(), 5, 2, 123)).to.deep.equal(a);
    expect(a).to.deep.equal([...a].sort());
    expect(selectClients(ids, 5, 2, 124)).to.not.deep.equal(a);
  });

  it('takes counts and fractions, never fewer than minUpdates, never more than connected', () => {
    const ids = ['a', 'b', 'c', 'd', 'e'];
    expect(selectClients(ids, 0.4, 1, 1)).to.have.length(2);
    expect(selectClients(ids, 0.1, 3, 1)).to.have.length(3);
    expect(selectClients(ids, 100, 1, 1)).to.have.length(5);
    expect(deriveSeed(1, 'train', 2, 1, 'c')).to.equal(deriveSeed(1, 'train', 2, 1, 'c'));
    expect(deriveSeed(1, 'train', 2, 1, 'c')).to.not.equal(deriveSeed(1, 'train', 2, 2, 'c'));
  });
});
