// DP-FedAvg's adaptive clipping (privacy.adaptiveClipping; coordinator/privacy/adaptive-clip.ts, strategy/dp.ts):
// C's trajectory over three rounds against values computed here from the paper's rule with the round's seeded draws,
// the noise split z_Δ = (z^−2 − (2σ_b)^−2)^−1/2 on the sum (bit for bit, from the same stream after the count's
// draw), the fixed denominator of a Poisson-sampled round, the accountant still charging z, and the configurations
// refused naming their keys.
import { ConfigError, loadConfig } from '../coordinator/config';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { CLIP_NORM_KEY, MIN_ADAPTIVE_CLIP_NORM, adaptiveClipProblems, nextClipNorm, updateNoiseMultiplier } from '../coordinator/privacy/adaptive-clip';
import { PrivacyLedger } from '../coordinator/privacy/ledger';
import { withPrivacy } from '../coordinator/privacy/wrap';
import { CLIP_MARGIN, DpStrategy, MAX_CLIP_NORM } from '../coordinator/strategy/dp';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { SCALE } from '../coordinator/strategy/fixed-point';
import type { ServerState, WeightedSum } from '../coordinator/strategy/strategy';
import { GaussianStream } from '../proto/gaussian';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { PREFIX } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const LEN = 64;
const adapter = (): NamedTensor[] => [{ name: `${PREFIX}.lora_B.weight`, dtype: 'float32', shape: [8, 8], data: new Float32Array(LEN) }];
/** An update of L2 norm `norm` (every value norm/8; norm a multiple of 1/8 so the values are exact in float32). */
const ofNorm = (norm: number): TensorList => [{ ...adapter()[0], data: new Float32Array(LEN).fill(norm / 8) }];
const seed = (r: number): Uint8Array => new Uint8Array(32).fill(40 + r);

/** FedAvg that keeps the sum it was handed (the noised one, with its noiseStd). */
class Recording extends FedAvg {
  last: WeightedSum | undefined;
  lastValues: Float64Array | undefined;
  override aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[] {
    this.last = sum;
    this.lastValues = Float64Array.from(sum.tensors.get(global[0].name)!);
    return super.aggregate(global, sum, state);
  }
}

const Z = 1;
const SIGMA_B = 2;
const ADAPTIVE = { targetQuantile: 0.5, learningRate: 0.2, countNoise: SIGMA_B };

/** One plain round through the strategy: updates of the given norms, the base state in, the next state out. */
function round(dp: DpStrategy, norms: readonly number[], state: ServerState, denominator?: number): NamedTensor[] {
  const global = adapter();
  const agg = dp.begin(global, state);
  norms.forEach((n, i) => {
    const u = { clientId: `s${i}`, numExamples: 10 * (i + 1), delta: ofNorm(n) };
    agg.admit(u);
    agg.add(u);
  });
  const sum = agg.sum();
  return dp.aggregate(global, denominator === undefined ? sum : { ...sum, totalWeight: denominator }, state);
}

/** The round's count draw: the first normal of its stream, times σ_b. */
function countDraw(r: number): number {
  const g = new Float64Array(1);
  new GaussianStream(seed(r)).into(g, SIGMA_B);
  return g[0];
}

describe('DP-FedAvg adaptive clipping (privacy.adaptiveClipping)', () => {
  it("C follows the paper's geometric rule over three rounds: C_{t+1} = C_t·exp(−η(b̄ − γ)), b̄ = (Σ(b_i − ½) + N(0, σ_b²))/m + ½, stored as float32", () => {
    let r = 0;
    const inner = new Recording();
    const dp = new DpStrategy(inner, { clipNorm: 2, noiseMultiplier: Z, adaptive: ADAPTIVE }, () => new GaussianStream(seed(++r)));
    // Round 1 at C 2: norms 0.5, 1, 3, 5 → 2 under C of 4. Round 2 at C_1: all four under a C near 2 → 4 of 4.
    // Round 3 (below) with three updates: m follows the round.
    const state: ServerState = { tensors: [], round: 1 };
    const bits: [number[], number][] = [
      [[0.5, 1, 3, 5], 2],
      [[0.25, 0.5, 0.75, 1], 4],
    ];
    let c = 2;
    const seen: number[] = [];
    for (const [norms, under] of bits) {
      round(dp, norms, state);
      const bbar = (under + countDraw(r) - 4 / 2) / 4 + 0.5;
      const want = Math.fround(c * Math.exp(-0.2 * (bbar - 0.5)));
      expect(state.adaptiveClip).to.deep.equal({
        targetQuantile: 0.5,
        learningRate: 0.2,
        countNoise: SIGMA_B,
        updateNoiseMultiplier: updateNoiseMultiplier(Z, SIGMA_B),
        clipNorm: c,
        unclippedFraction: bbar,
        nextClipNorm: want,
      });
      expect(state.tensors.map((t) => [t.name, Array.from(t.data)])).to.deep.equal([[CLIP_NORM_KEY, [want]]]);
      expect(dp.clipNormAt(state)).to.equal(want);
      seen.push(want);
      c = want;
    }
    // Round 3: three updates, one under C_2.
    round(dp, [0.125, 10 * c, 10 * c], state);
    const bbar3 = (1 + countDraw(r) - 3 / 2) / 3 + 0.5;
    expect(state.adaptiveClip!.unclippedFraction).to.equal(bbar3);
    expect(state.adaptiveClip!.nextClipNorm).to.equal(Math.fround(c * Math.exp(-0.2 * (bbar3 - 0.5))));
    // Two different draws move C two different ways; each is the configured round's own.
    expect(seen[0]).to.not.equal(seen[1]);
  });

  it('noises the sum with σ = z_Δ·C_t from the round’s stream after the count’s draw, and hands z_Δ·C_t on as noiseStd', () => {
    const inner = new Recording();
    const dp = new DpStrategy(inner, { clipNorm: 1.5, noiseMultiplier: Z, adaptive: ADAPTIVE }, () => new GaussianStream(seed(7)));
    const zDelta = updateNoiseMultiplier(Z, SIGMA_B);
    expect(zDelta).to.be.closeTo(4 / Math.sqrt(15), 1e-15); // (1 − 1/16)^−1/2
    // The base state holds C_t = 0.75: the round clips to it, not to the configured 1.5.
    const state: ServerState = { tensors: [{ name: CLIP_NORM_KEY, dtype: 'float32', shape: [1], data: Float32Array.of(0.75) }], round: 2 };
    round(dp, [2, 0.5], state);
    expect(inner.last!.noiseStd).to.equal(zDelta * 0.75);
    const stream = new GaussianStream(seed(7));
    stream.into(new Float64Array(1), SIGMA_B);
    const noise = new Float64Array(LEN);
    stream.roundedInto(noise, zDelta * 0.75 * SCALE);
    const f2 = ((0.75 * CLIP_MARGIN) / 2) * SCALE; // the norm-2 update clipped to 0.75
    const want = Array.from({ length: LEN }, (_, i) => Math.trunc(f2 * Math.fround(2 / 8)) + Math.trunc(SCALE * Math.fround(0.5 / 8)) + noise[i]);
    expect(Array.from(inner.lastValues!)).to.deep.equal(want);
    expect(state.adaptiveClip!.clipNorm).to.equal(0.75);
  });

  it('divides the count by the round’s fixed denominator (q·N under Poisson sampling), not by how many were sampled', () => {
    const dp = new DpStrategy(new FedAvg(), { clipNorm: 1, noiseMultiplier: Z, adaptive: ADAPTIVE }, () => new GaussianStream(seed(3)));
    const state: ServerState = { tensors: [], round: 1 };
    round(dp, [0.5, 0.5, 4], state, 5);
    expect(state.adaptiveClip!.unclippedFraction).to.equal((2 + countDraw(3) - 3 / 2) / 5 + 0.5);
  });

  it('keeps C inside [MIN_ADAPTIVE_CLIP_NORM, MAX_CLIP_NORM], and a turned-off option drops the stored C (the configured one applies)', () => {
    expect(nextClipNorm(MAX_CLIP_NORM, 0, ADAPTIVE, MAX_CLIP_NORM)).to.equal(MAX_CLIP_NORM);
    expect(nextClipNorm(MIN_ADAPTIVE_CLIP_NORM, 1, ADAPTIVE, MAX_CLIP_NORM)).to.equal(MIN_ADAPTIVE_CLIP_NORM);
    const state: ServerState = { tensors: [{ name: CLIP_NORM_KEY, dtype: 'float32', shape: [1], data: Float32Array.of(0.3) }], round: 4 };
    const fixed = new DpStrategy(new FedAvg(), { clipNorm: 1, noiseMultiplier: Z }, () => new GaussianStream(seed(1)));
    expect(fixed.clipNormAt(state)).to.equal(1);
    round(fixed, [0.5, 0.5], state);
    expect(state.tensors).to.deep.equal([]);
    expect(state.adaptiveClip).to.equal(undefined);
    const bad: ServerState = { tensors: [{ name: CLIP_NORM_KEY, dtype: 'float32', shape: [1], data: Float32Array.of(0) }] };
    const adaptive = new DpStrategy(new FedAvg(), { clipNorm: 1, noiseMultiplier: Z, adaptive: ADAPTIVE });
    expect(() => adaptive.clipNormAt(bad)).to.throw(/clip\/norm \(0\) is out of range/);
  });

  it('the accountant charges z, not z_Δ: ε after rounds with adaptive clipping equals the fixed-clip run’s at the same z', () => {
    const cfg = { clipNorm: 2, noiseMultiplier: 0.749, delta: 1e-5, epsilonBudget: 0 };
    const ledger = new PrivacyLedger(cfg, null);
    const clip = {
      ...ADAPTIVE,
      countNoise: 2.5,
      updateNoiseMultiplier: updateNoiseMultiplier(0.749, 2.5),
      clipNorm: 2,
      unclippedFraction: 0.4,
      nextClipNorm: 2.1,
    };
    ledger.charge(0.749, 'coordinator', { method: 'poisson', rate: 50 / 1156, population: 1156, denominator: 50 }, clip);
    const rec = ledger.charge(0.749, 'coordinator', { method: 'poisson', rate: 50 / 1156, population: 1156, denominator: 50 }, { ...clip, clipNorm: 2.1 });
    expect(rec.epsilon).to.equal(epsilonSpent([{ q: 50 / 1156, z: 0.749, steps: 2 }], 1e-5));
    expect(rec.history).to.deep.equal([{ samplingRate: 50 / 1156, noiseMultiplier: 0.749, rounds: 2 }]);
    // The paper's advice for run 22's e4m50 regime: σ_b = m/20 = 2.5 leaves the update z_Δ ≈ 0.7575 for z 0.749.
    expect(updateNoiseMultiplier(0.749, 2.5)).to.be.closeTo(0.75755, 1e-5);
    expect(rec.clipNorm).to.equal(2.1);
    expect(rec.sigma).to.equal(updateNoiseMultiplier(0.749, 2.5) * 2.1);
    expect(rec.adaptiveClipping).to.deep.equal({ ...clip, clipNorm: 2.1 });
  });

  it('refuses configurations naming the keys: count noise that would spend all of z, bad γ or η, no privacy', () => {
    const base = { rounds: { minUpdates: 1 } };
    const refused = (privacy: Record<string, unknown>): string => {
      try {
        loadConfig({ overrides: { ...base, privacy } });
      } catch (e) {
        expect(e).to.be.instanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    expect(refused({ enabled: true, adaptiveClipping: true, noiseMultiplier: 2, clipCountNoise: 1 })).to.match(
      /privacy\.clipCountNoise \(1\) must exceed privacy\.noiseMultiplier \/ 2 \(1\)/,
    );
    expect(refused({ adaptiveClipping: true })).to.match(/privacy\.adaptiveClipping needs privacy\.enabled/);
    expect(refused({ enabled: true, adaptiveClipping: true, clipTargetQuantile: 1 })).to.match(/privacy\.clipTargetQuantile/);
    expect(refused({ enabled: true, adaptiveClipping: true, clipLearningRate: 0 })).to.match(/privacy\.clipLearningRate/);
    expect(adaptiveClipProblems({ noiseMultiplier: 1, clipTargetQuantile: 0.5, clipLearningRate: 2, clipCountNoise: NaN })).to.deep.equal([
      'privacy.clipLearningRate (2) must be a number in (0, 1]: C moves by up to e^η a round',
      'privacy.clipCountNoise (NaN) must be a finite number > 0',
    ]);
    // Accepted: the default σ_b (2.5) with z 1; off, the keys are not checked against z at all.
    const ok = loadConfig({ overrides: { ...base, privacy: { enabled: true, adaptiveClipping: true } } });
    expect(ok.privacy).to.deep.include({ adaptiveClipping: true, clipTargetQuantile: 0.5, clipLearningRate: 0.2, clipCountNoise: 2.5 });
    expect(() => loadConfig({ overrides: { ...base, privacy: { enabled: true, noiseMultiplier: 8, clipCountNoise: 1 } } })).to.not.throw();
    // A configuration built in code is checked again where the strategy is wrapped.
    const bad = { ...ok, privacy: { ...ok.privacy, noiseMultiplier: 6 } };
    expect(() => withPrivacy(bad, new FedAvg())).to.throw(/privacy\.clipCountNoise \(2\.5\) must exceed privacy\.noiseMultiplier \/ 2 \(3\)/);
    expect(() => new DpStrategy(new FedAvg(), { clipNorm: 1, noiseMultiplier: 2, adaptive: { ...ADAPTIVE, countNoise: 0.5 } })).to.throw(
      /privacy\.clipCountNoise/,
    );
  });
});
