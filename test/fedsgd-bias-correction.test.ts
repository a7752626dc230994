// strategy.biasCorrection (coordinator/strategy/fedopt.ts): Adam's bias correction on the adaptive server
// optimisers, so that FedSGD (one client SGD step a round: the mean update is −λ times the pooled gradient) under
// FedAdam is Adam on the pooled data (bench/QUALITY.md, run 14). Two rounds against hand values (β1 0.5, β2 0.75:
// exact binary fractions), one-step rounds against an independent float64 transcription of PyTorch's Adam (state
// rounded to float32 between rounds, as the strategy stores it), and the configuration's checks.
import { aggregateUpdates } from '../coordinator/strategy/fedavg';
import { FedAdam, FedAdagrad } from '../coordinator/strategy/fedopt';
import { strategyNamed } from '../coordinator/strategy';
import { loadConfig } from '../coordinator/config';
import type { ServerState } from '../coordinator/strategy/strategy';
import { Prng } from '../proto/prng';
import { GLOBAL, ROUND1, ROUND2, f, t, upd, values } from './server-rounds-fixture';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const TAU = 2 ** -10;

describe('FedAdam with bias correction (strategy.biasCorrection; FedSGD, run 14)', () => {
  it('two rounds against hand values: m/(1 − β1^t), v/(1 − β2^t), v from 0', () => {
    const s = new FedAdam({ serverLearningRate: 0.125, beta1: 0.5, beta2: 0.75, tau: TAU, biasCorrection: true });
    const state: ServerState = { tensors: [], round: 1 };
    const w1 = aggregateUpdates(s, GLOBAL, ROUND1, state).adapter;
    // Round 1: m = 0.5·Δ1 and v = 0.25·Δ1² (v starts at 0), so m/0.5 = Δ1 and √(v/0.25) = |Δ1|: each value moves by
    // η·Δ/(|Δ| + τ), nearly η·sign(Δ), as Adam's first step does; the third (Δ = 0) does not move.
    expect(values(state.tensors, 'm/w')).to.deep.equal([0.15625, 0.25, 0]);
    expect(values(state.tensors, 'v/w')).to.deep.equal([0.0244140625, 0.0625, 0]);
    expect(values(w1, 'w')).to.deep.equal([f(0.5 + 0.0390625 / 0.3134765625), f(-1 + 0.0625 / 0.5009765625), 0.125]);
    expect(values(w1, 'w')[0]).to.be.closeTo(0.62461, 1e-5);
    // Round 2: m = 0.5·m + 0.5·Δ2 = [−0.046875, 0.25, 0.0625]; v = 0.75·v + 0.25·Δ2² = [0.033935546875, 0.0625,
    // 0.00390625]; bc1 = 1 − 0.25 = 0.75, bc2 = 1 − 0.5625 = 0.4375.
    const w2 = aggregateUpdates(s, w1, ROUND2, { ...state, round: 2 }).adapter;
    const m2 = [-0.046875, 0.25, 0.0625];
    const v2 = [0.033935546875, 0.0625, 0.00390625];
    const expected = values(w1, 'w').map((w, i) => f(w + (0.125 * (m2[i] / 0.75)) / (Math.sqrt(v2[i] / 0.4375) + TAU)));
    expect(values(w2, 'w')).to.deep.equal(expected);
    // Third value by hand: 0.125 + 0.125·0.08333…/(0.0944911… + 0.0009765625) = 0.125 + 0.109112…
    expect(values(w2, 'w')[2]).to.be.closeTo(0.234112, 1e-6);
  });

  it('one-step rounds: the steps of PyTorch Adam (lr η, eps ε) on the example-weighted pooled gradient, bit for bit', () => {
    const rng = new Prng(23);
    const n = 40;
    const lambda = 0.5; // the client SGD rate (a power of two: Δ = −λ·g stays on the 2^-24 grid)
    const eta = 0.01;
    const eps = 1e-8;
    const s = new FedAdam({ serverLearningRate: eta, beta1: 0.9, beta2: 0.999, tau: lambda * eps, biasCorrection: true });
    const grid = (x: number): number => Math.round(x * 2 ** 20) / 2 ** 20;
    let global = [
      t(
        'w',
        Array.from({ length: n }, () => rng.nextFloat() - 0.5),
      ),
    ];
    const ref = Array.from(global[0].data);
    let m = new Array<number>(n).fill(0);
    let v = new Array<number>(n).fill(0);
    let tensors: ServerState['tensors'] = [];
    for (let round = 1; round <= 6; round++) {
      // Three sites of 5, 11 and 16 examples, each with its batch's gradient g_k; the pooled gradient is Σ n_k·g_k / Σ n_k.
      const sites = [5, 11, 16].map((nk, k) => ({ nk, id: `s${k}`, g: Array.from({ length: n }, () => grid((rng.nextFloat() - 0.5) * 0.2)) }));
      const total = sites.reduce((a, x) => a + x.nk, 0);
      const ups = sites.map((x) =>
        upd(
          x.id,
          x.nk,
          x.g.map((gi) => -lambda * gi),
        ),
      );
      const state: ServerState = { tensors, round };
      global = aggregateUpdates(s, global, ups, state).adapter;
      tensors = state.tensors;
      // Reference: Adam on the pooled gradient of the mean update Δ = −λ·ḡ (its value as the strategy sees it).
      const bc1 = 1 - 0.9 ** round;
      const bc2 = 1 - 0.999 ** round;
      // Δ: the integer sum of n_k·(−λ·g_k·2^24) over (Σ n_k·2^24), exact in float64 whatever the order.
      const d = ref.map((_, i) => sites.reduce((a, x) => a + x.nk * (-lambda * x.g[i] * 2 ** 24), 0) / (total * 2 ** 24));
      const m64 = m.map((mi, i) => 0.9 * mi + (1 - 0.9) * d[i]);
      const v64 = v.map((vi, i) => 0.999 * vi + (1 - 0.999) * d[i] * d[i]);
      for (let i = 0; i < n; i++) ref[i] = f(ref[i] + (eta * (m64[i] / bc1)) / (Math.sqrt(v64[i] / bc2) + lambda * eps));
      m = m64.map(f);
      v = v64.map(f);
      expect(values(global, 'w'), `round ${round}`).to.deep.equal(ref);
    }
  });

  it('without it, FedAdam is unchanged and records no biasCorrection; with it, the manifest records 1', () => {
    const off = strategyNamed('fedadam', { serverLearningRate: 0.1, momentum: 0, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
    expect(off.hyperParameters).to.deep.equal({ serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
    const on = strategyNamed('fedadam', { serverLearningRate: 0.1, momentum: 0, beta1: 0.9, beta2: 0.99, tau: 1e-3, biasCorrection: true });
    expect(on.hyperParameters).to.deep.equal({ serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3, biasCorrection: 1 });
  });

  it('FedAdagrad corrects m only (it has no β2)', () => {
    const s = new FedAdagrad({ serverLearningRate: 0.125, beta1: 0.5, tau: TAU, biasCorrection: true });
    const state: ServerState = { tensors: [], round: 1 };
    const w1 = aggregateUpdates(s, GLOBAL, ROUND1, state).adapter;
    // v = Δ1² (from 0), m/0.5 = Δ1: the same first step as FedAdam's.
    expect(values(w1, 'w')).to.deep.equal([f(0.5 + 0.0390625 / 0.3134765625), f(-1 + 0.0625 / 0.5009765625), 0.125]);
  });

  it('needs the round being aggregated', () => {
    const s = new FedAdam({ serverLearningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3, biasCorrection: true });
    expect(() => aggregateUpdates(s, GLOBAL, ROUND1, { tensors: [] })).to.throw(/biasCorrection needs the round/);
  });

  it('the configuration refuses it with a strategy that has no Adam moments', () => {
    expect(() => loadConfig({ overrides: { strategy: { name: 'fedavgm', biasCorrection: true } } })).to.throw(/strategy.biasCorrection/);
    expect(loadConfig({ overrides: { strategy: { name: 'fedadam', biasCorrection: true } } }).strategy.biasCorrection).to.equal(true);
  });
});
