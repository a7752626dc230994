// strategy.noiseAware (coordinator/strategy/fedopt.ts; DP-AdamBC, Tang et al. 2024): FedAdam under DP-FedAvg takes
// the noise's known variance on the mean update, ν = (σ/n)², out of its bias-corrected second moment, floored at
// noiseFloor·ŝ, its running average s of ν checkpointed beside m and v. Two rounds against values worked by hand
// (every moment an exact binary fraction), the σ DP-FedAvg hands its inner strategy, and the refusals.
import { FedAdam, NOISE_KEY } from '../coordinator/strategy/fedopt';
import { DpStrategy } from '../coordinator/strategy/dp';
import { loadConfig } from '../coordinator/config';
import type { ServerState, WeightedSum } from '../coordinator/strategy/strategy';
import { GLOBAL, f, values } from './server-rounds-fixture';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SETTINGS = { serverLearningRate: 0.1, beta1: 0.5, beta2: 0.5, tau: 1e-3, biasCorrection: true, noiseAware: true, noiseFloor: 0.25 };
/** A round's sum of two updates (scale 1) whose mean is `mean`, carrying noise of σ 0.5: ν = (0.5/2)² = 0.0625. */
const sum = (mean: number[], noiseStd: number | null = 0.5): WeightedSum => ({
  tensors: new Map([['w', Float64Array.from(mean.map((x) => 2 * x))]]),
  totalWeight: 2,
  scale: 1,
  ...(noiseStd === null ? {} : { noiseStd }),
});

describe('noise-aware FedAdam (strategy.noiseAware; DP-AdamBC)', () => {
  it('two rounds against hand values: v̂ − ŝ floored at 0.25·ŝ, the noise average checkpointed as a scalar', () => {
    const s = new FedAdam(SETTINGS);
    // Round 1 (bc1 = bc2 = 0.5), Δ = [0.5, 0.25, 0]: m = [0.25, 0.125, 0], v = [0.125, 0.03125, 0], s = 0.5·ν = 0.03125.
    // m̂ = [0.5, 0.25, 0]; v̂ = [0.25, 0.0625, 0]; ŝ = 0.0625; v̂ − ŝ = [0.1875, 0, −0.0625]; floor 0.015625.
    const s1: ServerState = { tensors: [], round: 1 };
    const w1 = s.aggregate(GLOBAL, sum([0.5, 0.25, 0]), s1);
    const st1 = s1.tensors;
    expect(values(w1, 'w')).to.deep.equal([f(0.5 + (0.1 * 0.5) / (Math.sqrt(0.1875) + 1e-3)), f(-1 + (0.1 * 0.25) / (0.125 + 1e-3)), 0.125]);
    expect(values(st1, 'm/w')).to.deep.equal([0.25, 0.125, 0]);
    expect(values(st1, 'v/w')).to.deep.equal([0.125, 0.03125, 0]);
    expect(values(st1, NOISE_KEY)).to.deep.equal([0.03125]);
    expect(st1.map((t) => t.name)).to.deep.equal(['m/w', NOISE_KEY, 'v/w']);
    // Round 2 (bc1 = bc2 = 0.75), Δ = [−0.25, 0.25, 0.125]: m = [0, 0.1875, 0.0625], v = [0.09375, 0.046875, 0.0078125],
    // s = 0.5·0.03125 + 0.5·0.0625 = 0.046875. m̂ = [0, 0.25, 0.0625/0.75]; v̂ = [0.125, 0.0625, 0.0078125/0.75];
    // ŝ = 0.0625; v̂ − ŝ = [0.0625, 0, < 0] → [0.0625, 0.015625, 0.015625].
    const st: ServerState = { tensors: st1, round: 2 };
    const w2 = s.aggregate(w1, sum([-0.25, 0.25, 0.125]), st);
    const [a, b, c] = values(w1, 'w');
    expect(values(w2, 'w')).to.deep.equal([f(a + 0 / (0.25 + 1e-3)), f(b + (0.1 * 0.25) / (0.125 + 1e-3)), f(c + (0.1 * (0.0625 / 0.75)) / (0.125 + 1e-3))]);
    expect(values(st.tensors, 'm/w')).to.deep.equal([0, 0.1875, 0.0625]);
    expect(values(st.tensors, 'v/w')).to.deep.equal([0.09375, 0.046875, 0.0078125]);
    expect(values(st.tensors, NOISE_KEY)).to.deep.equal([0.046875]);
    expect(s.hyperParameters).to.deep.equal({ serverLearningRate: 0.1, beta1: 0.5, beta2: 0.5, tau: 1e-3, biasCorrection: 1, noiseAware: 1, noiseFloor: 0.25 });
  });

  it('a noise far under the signal leaves the steps those of FedAdam; off, nothing is stored beside m and v', () => {
    const plain = new FedAdam({ ...SETTINGS, noiseAware: false });
    const aware = new FedAdam(SETTINGS);
    const sp: ServerState = { tensors: [], round: 1 };
    const sa: ServerState = { tensors: [], round: 1 };
    const wp = plain.aggregate(GLOBAL, sum([0.5, 0.25, -0.125], null), sp);
    const wa = aware.aggregate(GLOBAL, sum([0.5, 0.25, -0.125], 2e-6), sa);
    values(wa, 'w').forEach((x, i) => expect(x).to.be.closeTo(values(wp, 'w')[i], 1e-6));
    expect(sp.tensors.map((t) => t.name)).to.deep.equal(['m/w', 'v/w']);
    expect(plain.hyperParameters).to.not.have.property('noiseAware');
  });

  it('DP-FedAvg hands its inner strategy the noise σ = z·C with the sum', () => {
    const seen: (number | undefined)[] = [];
    const inner = new FedAdam(SETTINGS);
    const spy = Object.assign(Object.create(inner) as FedAdam, {
      aggregate: (g: typeof GLOBAL, s: WeightedSum, st?: ServerState) => (seen.push(s.noiseStd), inner.aggregate(g, s, st)),
    });
    const dp = new DpStrategy(spy, { clipNorm: 2, noiseMultiplier: 0.75 });
    const noised = { ...sum([0.5, 0.25, 0], null), noised: true };
    dp.aggregate(GLOBAL, noised, { tensors: [], round: 1 });
    expect(seen).to.deep.equal([1.5]);
  });

  it('refuses a sum without known noise, other optimisers, a floor outside (0, 1], and a configuration without DP', () => {
    expect(() => new FedAdam(SETTINGS).aggregate(GLOBAL, sum([0.5, 0, 0], null), { tensors: [], round: 1 })).to.throw(
      /noiseAware needs a sum that carries differential privacy noise of known σ/,
    );
    expect(() => new FedAdam({ ...SETTINGS, noiseFloor: 0 })).to.throw(/noiseFloor = 0; must be in \(0, 1\]/);
    const load = (strategy: Record<string, unknown>, privacy = true): Error | undefined => {
      try {
        loadConfig({ overrides: { strategy, privacy: { enabled: privacy, clipNorm: 1, noiseMultiplier: 1 } } });
        return undefined;
      } catch (e) {
        return e as Error;
      }
    };
    expect(load({ name: 'fedadam', noiseAware: true })).to.equal(undefined);
    expect(load({ name: 'fedyogi', noiseAware: true })?.message).to.contain("strategy.noiseAware corrects fedadam's second moment; strategy.name is 'fedyogi'");
    expect(load({ name: 'fedadam', noiseAware: true }, false)?.message).to.contain(
      'strategy.noiseAware subtracts the variance of differential privacy noise: it needs privacy.enabled',
    );
    expect(load({ name: 'fedadam', noiseAware: true, noiseFloor: 1.5 })?.message).to.contain('strategy.noiseFloor (1.5) must be in (0, 1]');
  });
});
