// coordinator/strategy/: FedAvgM, FedAdam, FedYogi, FedAdagrad (Reddi et al. 2021) over two rounds on a tiny
// adapter, against values computed here by hand (literal numbers where they are exact binary fractions) or by an
// independent float64 transcription of the paper's Algorithm 2 (state rounded to float32 between rounds, as the
// strategies store it). Updates are chosen on the 2^-24 grid so that the mean delta is exact.
import { FedAvg, aggregateUpdates } from '../coordinator/strategy/fedavg';
import { FedAvgM } from '../coordinator/strategy/fedavgm';
import { FedAdagrad, FedAdam, FedYogi } from '../coordinator/strategy/fedopt';
import { strategyNamed, STRATEGY_NAMES } from '../coordinator/strategy';
import { DpStrategy } from '../coordinator/strategy/dp';
import type { ServerState, Strategy } from '../coordinator/strategy/strategy';
import type { NamedTensor } from '../proto/tensors';
import { Prng } from '../proto/prng';
import { D1, D2, GLOBAL, ROUND1, ROUND2, f, t, values } from './server-rounds-fixture';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const bits = (xs: readonly NamedTensor[]): string[] =>
  xs.map((x) => `${x.name}:${Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength).toString('hex')}`);

/** Two rounds through `s`; the adapter and the state after each. */
function twoRounds(s: Strategy): { w1: NamedTensor[]; s1: NamedTensor[]; w2: NamedTensor[]; s2: NamedTensor[] } {
  const state: ServerState = { tensors: [] };
  const w1 = aggregateUpdates(s, GLOBAL, ROUND1, state).adapter;
  const s1 = state.tensors as NamedTensor[];
  const w2 = aggregateUpdates(s, w1, ROUND2, state).adapter;
  return { w1, s1, w2, s2: state.tensors as NamedTensor[] };
}

/** Reddi et al. 2021, Algorithm 2, per coordinate in float64, for one of the three second-moment rules. */
function reference(rule: 'adagrad' | 'adam' | 'yogi', eta: number, b1: number, b2: number, tau: number) {
  const w = Array.from(GLOBAL[0].data);
  let m = [0, 0, 0];
  let v = [tau * tau, tau * tau, tau * tau];
  const out: { w: number[]; m: number[]; v: number[] }[] = [];
  for (const d of [D1, D2]) {
    const m64 = m.map((mi, i) => b1 * mi + (1 - b1) * d[i]);
    const v64 = v.map((vi, i) => {
      const d2 = d[i] * d[i];
      if (rule === 'adagrad') return vi + d2;
      if (rule === 'adam') return b2 * vi + (1 - b2) * d2;
      return vi - (1 - b2) * d2 * Math.sign(vi - d2);
    });
    for (let i = 0; i < 3; i++) w[i] = f(w[i] + (eta * m64[i]) / (Math.sqrt(v64[i]) + tau));
    // Stored between rounds as float32.
    m = m64.map(f);
    v = v64.map(f);
    out.push({ w: [...w], m: [...m], v: [...v] });
  }
  return out;
}

describe('server optimisers (strategy/fedavgm.ts, fedopt.ts, mean-delta.ts)', () => {
  it('FedAvgM: buf ← β·buf + Δ, w ← w + η·buf, two rounds against hand values', () => {
    const { w1, s1, w2, s2 } = twoRounds(new FedAvgM({ serverLearningRate: 0.5, momentum: 0.5 }));
    // Round 1: buf = Δ1 = [0.3125, 0.5, 0]; w = [0.5, −1, 0.125] + 0.5·buf.
    expect(values(w1, 'w')).to.deep.equal([0.65625, -0.75, 0.125]);
    expect(values(s1, 'momentum/w')).to.deep.equal([0.3125, 0.5, 0]);
    // Round 2: buf = 0.5·[0.3125, 0.5, 0] + [−0.25, 0.25, 0.125] = [−0.09375, 0.5, 0.125]; w += 0.5·buf.
    expect(values(s2, 'momentum/w')).to.deep.equal([-0.09375, 0.5, 0.125]);
    expect(values(w2, 'w')).to.deep.equal([0.609375, -0.5, 0.1875]);
    expect(s2.map((x) => x.name)).to.deep.equal(['momentum/w']);
  });

  it('FedAvgM with β = 0 and η = 1 is FedAvg, bit for bit, on random updates', () => {
    const rng = new Prng(17);
    const g = [
      t(
        'a',
        Array.from({ length: 64 }, () => rng.nextFloat() - 0.5),
      ),
      t(
        'b',
        Array.from({ length: 9 }, () => rng.nextFloat()),
      ),
    ];
    const ups = ['x', 'y', 'z'].map((id, k) => ({
      clientId: id,
      numExamples: 1 + k * 7,
      delta: g.map((x) => ({ ...x, data: x.data.map(() => (rng.nextFloat() - 0.5) * 0.01) })),
    }));
    const plain = aggregateUpdates(new FedAvg(), g, ups).adapter;
    const m = aggregateUpdates(new FedAvgM({ serverLearningRate: 1, momentum: 0 }), g, ups, { tensors: [] }).adapter;
    expect(bits(m)).to.deep.equal(bits(plain));
  });

  it('FedAdam: m ← β1·m + (1−β1)·Δ, v ← β2·v + (1−β2)·Δ², w ← w + η·m/(√v + τ), no bias correction', () => {
    const { w1, s1, w2, s2 } = twoRounds(new FedAdam({ serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 }));
    const r = reference('adam', 0.1, 0.9, 0.99, 1e-3);
    // Round 1 by hand, first value: m = 0.1·0.3125 = 0.03125; v = 0.99·1e-6 + 0.01·0.09765625 = 0.0009775525;
    // √v = 0.0312658…; w = 0.5 + 0.1·0.03125/(0.0312658… + 0.001) = 0.59685…
    expect(values(w1, 'w')[0]).to.be.closeTo(0.5 + (0.1 * 0.03125) / (Math.sqrt(0.0009775525) + 0.001), 1e-7);
    // The third value's Δ is 0 in round 1: it does not move (m = 0).
    expect(values(w1, 'w')[2]).to.equal(0.125);
    expect(values(w1, 'w')).to.deep.equal(r[0].w);
    expect(values(s1, 'm/w')).to.deep.equal(r[0].m);
    expect(values(s1, 'v/w')).to.deep.equal(r[0].v);
    expect(values(w2, 'w')).to.deep.equal(r[1].w);
    expect(values(s2, 'm/w')).to.deep.equal(r[1].m);
    expect(values(s2, 'v/w')).to.deep.equal(r[1].v);
    expect(s2.map((x) => x.name)).to.deep.equal(['m/w', 'v/w']);
  });

  it('FedYogi: v ← v − (1−β2)·Δ²·sign(v − Δ²), two rounds', () => {
    const { w1, s1, w2, s2 } = twoRounds(new FedYogi({ serverLearningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 }));
    const r = reference('yogi', 0.01, 0.9, 0.99, 1e-3);
    // Round 1, second value: v = 1e-6 − 0.01·0.25·sign(1e-6 − 0.25) = 1e-6 + 0.0025.
    expect(values(s1, 'v/w')[1]).to.equal(f(1e-6 + 0.0025));
    expect(values(w1, 'w')).to.deep.equal(r[0].w);
    expect(values(s1, 'm/w')).to.deep.equal(r[0].m);
    expect(values(s1, 'v/w')).to.deep.equal(r[0].v);
    expect(values(w2, 'w')).to.deep.equal(r[1].w);
    expect(values(s2, 'v/w')).to.deep.equal(r[1].v);
  });

  it('FedAdagrad: v ← v + Δ², two rounds; it records no β2', () => {
    const s = new FedAdagrad({ serverLearningRate: 0.1, beta1: 0, tau: 1e-3 });
    expect(s.hyperParameters).to.deep.equal({ serverLearningRate: 0.1, beta1: 0, tau: 1e-3 });
    const { w1, s1, w2, s2 } = twoRounds(s);
    const r = reference('adagrad', 0.1, 0, 0, 1e-3);
    // Round 2, second value by hand (β1 = 0: m = Δ): v = 1e-6 + 0.25 + 0.0625, w = w1 + 0.1·0.25/(√v + 0.001).
    const v2 = f(f(1e-6 + 0.25) + 0.0625);
    expect(values(s2, 'v/w')[1]).to.equal(v2);
    expect(values(w2, 'w')[1]).to.be.closeTo(values(w1, 'w')[1] + (0.1 * 0.25) / (Math.sqrt(1e-6 + 0.3125) + 0.001), 1e-6);
    expect(values(w1, 'w')).to.deep.equal(r[0].w);
    expect(values(s1, 'v/w')).to.deep.equal(r[0].v);
    expect(values(w2, 'w')).to.deep.equal(r[1].w);
    expect(values(s2, 'm/w')).to.deep.equal(r[1].m);
    expect(values(s2, 'v/w')).to.deep.equal(r[1].v);
  });

  it('the next adapter and state do not depend on the order updates arrive in', () => {
    for (const name of ['fedavgm', 'fedadam', 'fedyogi', 'fedadagrad']) {
      const runs = [ROUND1, [...ROUND1].reverse()].map((ups) => {
        const state: ServerState = { tensors: [] };
        return [...bits(aggregateUpdates(strategyNamed(name), GLOBAL, ups, state).adapter), ...bits(state.tensors)];
      });
      expect(runs[1], name).to.deep.equal(runs[0]);
    }
  });

  it('a tensor the sum lacks keeps its value and its state; a stateful strategy refuses to run without state', () => {
    const g = [t('p', [1, 2]), t('q', [3])];
    const s = new FedAdam({ serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
    const prior = [t('m/q', [0.5]), t('v/q', [0.25])];
    const state: ServerState = { tensors: prior };
    const out = s.aggregate(g, { tensors: new Map([['p', Float64Array.from([2 ** 24, -(2 ** 24)])]]), totalWeight: 1, scale: 2 ** 24 }, state);
    expect(Array.from(out[1].data)).to.deep.equal([3]);
    expect(state.tensors.map((x) => x.name)).to.deep.equal(['m/p', 'm/q', 'v/p', 'v/q']);
    expect(values(state.tensors, 'm/q')).to.deep.equal([0.5]);
    expect(values(state.tensors, 'v/q')).to.deep.equal([0.25]);
    expect(() => s.aggregate(g, { tensors: new Map(), totalWeight: 1, scale: 1 })).to.throw(/needs the base version's state/);
  });

  it('under DP-FedAvg (strategy/dp.ts) the server optimiser still gets and returns its state', () => {
    const sum = { tensors: new Map([['w', Float64Array.from([2 ** 23, -(2 ** 22), 0])]]), totalWeight: 1, scale: 2 ** 24, noised: true };
    const plain: ServerState = { tensors: [] };
    const wrapped: ServerState = { tensors: [] };
    const settings = { serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 };
    const want = new FedAdam(settings).aggregate(GLOBAL, sum, plain);
    const dp = new DpStrategy(new FedAdam(settings), { clipNorm: 1, noiseMultiplier: 1 });
    expect(bits(dp.aggregate(GLOBAL, sum, wrapped))).to.deep.equal(bits(want));
    expect(bits(wrapped.tensors)).to.deep.equal(bits(plain.tensors));
    expect(dp.hyperParameters).to.deep.equal(settings);
  });

  it('strategyNamed builds every configured name with its hyper-parameters and the per-strategy default η', () => {
    const settings = { serverLearningRate: 0, momentum: 0.8, beta1: 0.5, beta2: 0.9, tau: 1e-4 };
    const built = Object.fromEntries(STRATEGY_NAMES.map((n) => [n, strategyNamed(n, settings)]));
    expect(Object.values(built).map((s) => s.name)).to.deep.equal([...STRATEGY_NAMES]);
    expect(built.fedavg.hyperParameters).to.equal(undefined);
    // FedAvgM's default η = 1 − β: an effective rate η/(1 − β) of 1, FedAvg's step once the momentum has built up.
    expect(built.fedavgm.hyperParameters).to.deep.equal({ serverLearningRate: 1 - 0.8, momentum: 0.8 });
    expect(built.fedadam.hyperParameters).to.deep.equal({ serverLearningRate: 0.01, beta1: 0.5, beta2: 0.9, tau: 1e-4 });
    expect(built.fedyogi.hyperParameters).to.deep.equal({ serverLearningRate: 0.01, beta1: 0.5, beta2: 0.9, tau: 1e-4 });
    expect(() => new FedAdam({ serverLearningRate: 0.1, beta1: 1, beta2: 0.9, tau: 1e-3 })).to.throw(RangeError, 'FedAdam: beta1 = 1; must be in [0, 1)');
    expect(() => new FedYogi({ serverLearningRate: 0.1, beta1: 0.9, beta2: 0.9, tau: 0 })).to.throw(RangeError, 'tau = 0');
  });
});
