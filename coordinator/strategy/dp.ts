// DP-FedAvg (McMahan et al. 2018, "Learning differentially private recurrent language models") as a decorator
// over any Strategy: client-level differential privacy for the committed adapter.
//   * Every site weighs the same (w = 1). Example-count weights would let one site's weight, and with it the
//     sum's sensitivity to that site, grow with its data; with w = 1 and each update clipped to L2 norm C, adding
//     or removing one site's update moves the sum by at most C.
//   * Plain rounds: the coordinator clips each update as it folds it into the exact running sum (this file's
//     ClippedSum; a streamed update is checked and its norm summed as its chunks arrive, then folded, clipped, on
//     a second pass read back from the spool once it is accepted: the factor needs the whole update), then adds Gaussian noise N(0, σ²), σ = z·C, ONCE per round to the sum on the fixed-point grid,
//     then hands the noised sum to the inner strategy (FedAvg divides by the number of updates, which is public:
//     the manifest names the participants; a Poisson-sampled round divides by its fixed expected cohort q·N instead,
//     privacy/sampling.ts). Noise comes from GaussianStream (ChaCha20 keyed by node:crypto); the
//     draw is never recorded, its σ is.
//   * SecAgg rounds: each site clips and adds its share of the noise before masking (proto/secagg/encoding.ts),
//     so the sum arrives noised (WeightedSum.noised) and nothing is added here. A sum that is neither this
//     strategy's own nor marked noised is refused: a DP run never commits an un-noised sum.
//   * Adaptive clipping (settings.adaptive, privacy/adaptive-clip.ts): a plain round clips to C_t read from the base
//     version's server state (the configured C before any), counts the updates under it, noises that count (σ_b)
//     and the sum (σ = z_Δ·C_t) from the round's stream, and stores C_{t+1} in the state it hands back. Under SecAgg
//     the sites clip to the same C_t (their round config carries it) and count; the sum brings their noised count.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { assertSameLayout } from '../../proto/tensors';
import { GaussianStream } from '../../proto/gaussian';
import { AdmissionError, type Aggregation, type ClientUpdate, type ServerState, type Strategy, type UpdateFold, type WeightedSum } from './strategy';
import { foldKernel, type FoldKernel } from './fold-kernel';
import { LayoutIndex, StreamedFold } from './stream-fold';
import { MAX_NOISE_MULTIPLIER } from '../../proto/secagg/config';
import { MAX_TOTAL_WEIGHT, SCALE } from './fixed-point';
import { wrappedName } from './names';
import {
  CLIP_NORM_KEY,
  MIN_ADAPTIVE_CLIP_NORM,
  adaptiveClipProblems,
  nextClipNorm,
  unclippedFraction,
  updateNoiseMultiplier,
  type AdaptiveClipRound,
  type AdaptiveClipSettings,
} from '../privacy/adaptive-clip';

export interface DpSettings {
  /** C: L2 clip norm of each site's update. */
  readonly clipNorm: number;
  /** z: σ = z·C on the sum (under adaptive clipping, what the accountant charges: σ = z_Δ·C_t, adaptive-clip.ts). */
  readonly noiseMultiplier: number;
  /** privacy.adaptiveClipping: C follows a quantile of the update norms, clipNorm being the first round's. */
  readonly adaptive?: AdaptiveClipSettings;
}

/** Largest clip norm: C·2^24 must stay far inside float64's exact integers once n updates and noise are summed. */
export const MAX_CLIP_NORM = 128;
// Largest noise multiplier (shared with SecAgg's grid): σ·2^24 < 2^42 keeps the noise far from 2^53, where the
// exact float64 sum would end.
export { MAX_NOISE_MULTIPLIER };
/**
 * Clipping aims a hair inside C: the norm is computed in float64 with relative error below d·2^-53, so targeting
 * C·(1 − 2^-20) keeps the true norm ≤ C for any adapter under 2^33 values. Rounding toward zero on the grid then
 * never lengthens the vector, so every site's contribution has norm ≤ C exactly (checked in integers by the test).
 */
export const CLIP_MARGIN = 1 - 2 ** -20;

/** Problems with privacy settings, each naming its key (empty when valid). */
export function dpProblems(p: { clipNorm: unknown; noiseMultiplier: unknown; delta?: unknown; epsilonBudget?: unknown }): string[] {
  const out: string[] = [];
  const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (!(num(p.clipNorm) && p.clipNorm > 0 && p.clipNorm <= MAX_CLIP_NORM))
    out.push(`privacy.clipNorm (${String(p.clipNorm)}) must be a number in (0, ${MAX_CLIP_NORM}]`);
  if (!(num(p.noiseMultiplier) && p.noiseMultiplier > 0 && p.noiseMultiplier <= MAX_NOISE_MULTIPLIER))
    out.push(`privacy.noiseMultiplier (${String(p.noiseMultiplier)}) must be a number in (0, ${MAX_NOISE_MULTIPLIER}]`);
  if (p.delta !== undefined && !(num(p.delta) && p.delta > 0 && p.delta < 1)) out.push(`privacy.delta (${String(p.delta)}) must be a number in (0, 1)`);
  if (p.epsilonBudget !== undefined && !(num(p.epsilonBudget) && p.epsilonBudget >= 0))
    out.push(`privacy.epsilonBudget (${String(p.epsilonBudget)}) must be a finite number ≥ 0 (0: no budget)`);
  return out;
}

/** The factor c = min(1, C'/‖x‖) that clips an update to norm C (C' = C·CLIP_MARGIN), from Σx² in float64. */
export function clipFactor(sumSquares: number, clipNorm: number): number {
  const norm = Math.sqrt(sumSquares);
  const target = clipNorm * CLIP_MARGIN;
  return norm > target ? target / norm : 1;
}

/**
 * The C a round over the base version's server state (`tensors`) clips to: under adaptive clipping the C_t stored
 * there (the configured C before any), else the configured C. Both tiers read it here: the plain round's sum and a
 * SecAgg round's config (coordinator/secagg-attempt.ts).
 */
export function roundClipNorm(s: DpSettings, tensors?: readonly NamedTensor[]): number {
  if (!s.adaptive) return s.clipNorm;
  const t = tensors?.find((x) => x.name === CLIP_NORM_KEY);
  if (!t) return s.clipNorm;
  const c = t.data.length === 1 ? t.data[0] : NaN;
  if (!(c >= MIN_ADAPTIVE_CLIP_NORM && c <= MAX_CLIP_NORM))
    throw new Error(`DP-FedAvg: the stored clip norm ${CLIP_NORM_KEY} (${t.data.length === 1 ? c : `${t.data.length} values`}) is out of range`);
  return c;
}

export class DpStrategy implements Strategy {
  readonly name: string;
  /** Any finite value is accepted: clipping bounds what reaches the sum. */
  readonly maxAbsDelta = Number.MAX_VALUE;
  /**
   * Sums of this strategy's own rounds that still await their noise, by their tensors (a Poisson-sampled round hands
   * the same sum over with its fixed denominator as totalWeight, round-outcome.ts: a new object on the same values),
   * with the C they were clipped to and how many of their updates were under it.
   */
  private readonly unnoised = new WeakMap<object, RoundClip>();

  constructor(
    readonly inner: Strategy,
    readonly settings: DpSettings,
    /** Where noise comes from (default: a fresh CSPRNG stream per round). Tests may pass a seeded one. */
    private readonly noiseSource: () => GaussianStream = () => new GaussianStream(),
  ) {
    const a = settings.adaptive;
    const problems = [
      ...dpProblems(settings),
      ...(a
        ? adaptiveClipProblems({
            noiseMultiplier: settings.noiseMultiplier,
            clipTargetQuantile: a.targetQuantile,
            clipLearningRate: a.learningRate,
            clipCountNoise: a.countNoise,
          })
        : []),
    ];
    if (problems.length) throw new Error(`invalid privacy settings: ${problems.join('; ')}`);
    this.name = wrappedName(inner.name, 'dp');
  }

  /** The inner strategy's (a server optimiser's η, β…), recorded in the manifest. */
  get hyperParameters(): Readonly<Record<string, number>> | undefined {
    return this.inner.hyperParameters;
  }

  /** z_Δ: the noise multiplier on the update sum; z itself without adaptive clipping. */
  get updateNoiseMultiplier(): number {
    const a = this.settings.adaptive;
    return a ? updateNoiseMultiplier(this.settings.noiseMultiplier, a.countNoise) : this.settings.noiseMultiplier;
  }

  /** σ of the noise on the sum, in the adapter's units, for a round clipped to `clipNorm` (default: the configured C). */
  sigma(clipNorm = this.settings.clipNorm): number {
    return this.updateNoiseMultiplier * clipNorm;
  }

  /** The C a round over the base version's server state clips to (roundClipNorm). */
  clipNormAt(state?: ServerState): number {
    return roundClipNorm(this.settings, state?.tensors);
  }

  /** Adaptive clipping's record of a round clipped to C_t whose `counted` updates gave `noisedCount`, over m. */
  private step(a: AdaptiveClipSettings, clipNorm: number, noisedCount: number, counted: number, denominator: number): AdaptiveClipRound {
    const fraction = unclippedFraction(noisedCount, counted, denominator);
    return {
      targetQuantile: a.targetQuantile,
      learningRate: a.learningRate,
      countNoise: a.countNoise,
      updateNoiseMultiplier: this.updateNoiseMultiplier,
      clipNorm,
      unclippedFraction: fraction,
      nextClipNorm: nextClipNorm(clipNorm, fraction, a, MAX_CLIP_NORM),
    };
  }

  begin(global: TensorList, state?: ServerState): Aggregation {
    const clipNorm = this.clipNormAt(state);
    const agg = new ClippedSum(global, clipNorm);
    agg.onSum = (s, unclipped) => this.unnoised.set(s.tensors, { clipNorm, unclipped, counted: s.totalWeight });
    return agg;
  }

  /** Noise once, then the inner strategy's step; a server optimiser's state passes through (`state`). */
  aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[] {
    const a = this.settings.adaptive;
    const own = this.unnoised.get(sum.tensors);
    let clip: AdaptiveClipRound | undefined;
    let clipNorm = this.settings.clipNorm;
    if (own) {
      this.unnoised.delete(sum.tensors); // once: a second aggregate of the same sum adds nothing more
      clipNorm = own.clipNorm;
      const noise = this.noiseSource();
      if (a) {
        if (!state) throw new Error("DP-FedAvg's adaptive clipping keeps C between rounds: aggregate() needs the base version's state");
        // The count's draw first, then the sum's, from the round's one stream.
        const g = new Float64Array(1);
        noise.into(g, a.countNoise);
        // m: the round's fixed denominator, the one its mean divides by (the updates, or q·N when Poisson-sampled).
        clip = this.step(a, clipNorm, own.unclipped + g[0], own.counted, sum.totalWeight);
      }
      const sigmaGrid = this.sigma(clipNorm) * sum.scale;
      for (const acc of sum.tensors.values()) {
        const x = acc as Float64Array;
        const n = new Float64Array(x.length);
        noise.roundedInto(n, sigmaGrid);
        for (let i = 0; i < x.length; i++) x[i] += n[i];
      }
    } else if (!sum.noised) {
      throw new Error('differential privacy: the sum carries no noise (neither this round’s clipped sum nor noised by the sites)');
    } else if (a) {
      // Sites clipped to C_t (the same base state gave the round's SecAgg config its clip norm) and counted.
      if (sum.noisedCount === undefined) throw new Error('differential privacy: adaptive clipping needs the sites’ noised count of unclipped updates');
      if (!state) throw new Error("DP-FedAvg's adaptive clipping keeps C between rounds: aggregate() needs the base version's state");
      clipNorm = this.clipNormAt(state);
      clip = this.step(a, clipNorm, sum.noisedCount, sum.totalWeight, sum.totalWeight);
    }
    // The noise's σ travels with the sum, for an optimiser that discounts its variance (strategy.noiseAware). The
    // inner strategy sees only its own state; the clip norm is this decorator's.
    const noiseStd = this.sigma(clipNorm);
    if (!state) return this.inner.aggregate(global, { ...sum, noiseStd });
    const innerState: ServerState = { tensors: state.tensors.filter((t) => t.name !== CLIP_NORM_KEY), round: state.round };
    const next = this.inner.aggregate(global, { ...sum, noiseStd }, innerState);
    const mine: NamedTensor[] = clip ? [{ name: CLIP_NORM_KEY, dtype: 'float32', shape: [1], data: Float32Array.of(clip.nextClipNorm) }] : [];
    state.tensors = [...innerState.tensors, ...mine].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    if (clip) state.adaptiveClip = clip;
    return next;
  }
}

/** What DpStrategy keeps of a round's own sum until it noises it. */
interface RoundClip {
  readonly clipNorm: number;
  /** Counted updates whose norm was at most clipNorm. */
  readonly unclipped: number;
  /** Counted updates. */
  readonly counted: number;
}

/** A plain round's Σ of clipped updates, each with weight 1, on the 2^-24 grid (exact integers in float64). */
class ClippedSum implements Aggregation {
  private readonly k: FoldKernel;
  private readonly index: LayoutIndex;
  private readonly acc: Map<string, Float64Array>;
  /** Clip factor of each admitted update; `added` marks those already in the sum. */
  private readonly factor = new Map<string, number>();
  /** Admitted updates whose norm is at most C (adaptive clipping's bits b_i = 1). */
  private readonly under = new Set<string>();
  private readonly added = new Set<string>();
  /** Called once with the sum and how many of its updates were under C. */
  onSum: (s: WeightedSum, unclipped: number) => void = () => undefined;
  private made: WeightedSum | undefined;

  constructor(
    private readonly global: TensorList,
    private readonly clipNorm: number,
  ) {
    this.index = new LayoutIndex(global);
    this.k = foldKernel(this.index.total);
    this.acc = new Map();
    let off = 0;
    for (const g of global) {
      this.acc.set(g.name, this.k.acc.subarray(off, off + g.data.length));
      off += g.data.length;
    }
  }

  get count(): number {
    return this.added.size;
  }

  admit(u: ClientUpdate): void {
    if (this.factor.has(u.clientId)) throw new AdmissionError(`DP-FedAvg: two updates from ${u.clientId}`);
    if (this.factor.size + 1 > MAX_TOTAL_WEIGHT) throw new AdmissionError(`DP-FedAvg: more than ${MAX_TOTAL_WEIGHT} updates in one round`);
    assertSameLayout(this.global, u.delta);
    // One pass: finiteness and Σx² in float64 (finite float32 squares cannot overflow it).
    let sq = 0;
    for (let k = 0; k < this.global.length; k++) {
      const x = u.delta[k].data;
      if (x.length !== this.global[k].data.length)
        throw new RangeError(`${u.clientId}:${this.global[k].name}: ${x.length} values, accumulator has ${this.global[k].data.length}`);
      for (let i = 0; i < x.length; i++) sq += x[i] * x[i];
      if (!Number.isFinite(sq)) {
        const i = x.findIndex((v) => !Number.isFinite(v));
        throw new AdmissionError(`DP-FedAvg: ${u.clientId}:${this.global[k].name}[${i}] = ${x[i]} is not finite`);
      }
    }
    this.clipped(u.clientId, sq);
  }

  /** Records an update's clip factor and bit from its Σx² (the same float64 sum on both paths). */
  private clipped(clientId: string, sumSquares: number): number {
    const c = clipFactor(sumSquares, this.clipNorm);
    this.factor.set(clientId, c);
    if (Math.sqrt(sumSquares) <= this.clipNorm) this.under.add(clientId);
    return c;
  }

  release(clientId: string): void {
    if (this.added.has(clientId)) return;
    this.factor.delete(clientId);
    this.under.delete(clientId);
  }

  /**
   * Streaming: the first pass checks finiteness and sums x² in the update's order (the same float64 sum as admit,
   * so the same clip factor); the values are folded on the replay, clipped, once the factor is known.
   */
  open(clientId: string, _numExamples: number): UpdateFold {
    if (this.factor.has(clientId)) throw new AdmissionError(`DP-FedAvg: two updates from ${clientId}`);
    if (this.factor.size + 1 > MAX_TOTAL_WEIGHT) throw new AdmissionError(`DP-FedAvg: more than ${MAX_TOTAL_WEIGHT} updates in one round`);
    this.factor.set(clientId, NaN); // reserved; the factor is known at finish()
    const { k, index } = this;
    const acc = k.acc;
    let sq = 0;
    let f = NaN;
    return new StreamedFold(k, index.total, {
      foldsOnPush: false,
      push: (_start, n) => {
        const x = k.staged;
        for (let i = 0; i < n; i++) sq += x[i] * x[i];
        if (Number.isFinite(sq)) return n;
        for (let i = 0; i < n; i++) if (!Number.isFinite(x[i])) return i;
        return n;
      },
      refuse: (i, value) => {
        const at = index.locate(i);
        return new AdmissionError(`DP-FedAvg: ${clientId}:${at.name}[${at.index}] = ${value} is not finite`);
      },
      finish: () => {
        f = this.clipped(clientId, sq) * SCALE;
        return true;
      },
      replay: (start, n) => {
        const x = k.staged;
        for (let i = 0; i < n; i++) acc[start + i] += Math.trunc(f * x[i]);
        return n;
      },
      takeBack: (start, n) => {
        const x = k.staged;
        for (let i = 0; i < n; i++) acc[start + i] += Math.trunc(-f * x[i]);
      },
      commit: () => void this.added.add(clientId),
      abandon: () => {
        this.factor.delete(clientId);
        this.under.delete(clientId);
      },
      undone: () => undefined,
    });
  }

  add(u: ClientUpdate): void {
    const c = this.factor.get(u.clientId);
    if (c === undefined || this.added.has(u.clientId)) throw new Error(`DP-FedAvg: update of ${u.clientId} was not admitted`);
    for (let k = 0; k < this.global.length; k++) addClipped(this.acc.get(this.global[k].name)!, u.delta[k].data, c * SCALE);
    this.added.add(u.clientId);
  }

  sum(): WeightedSum {
    if (!this.made) {
      this.made = { tensors: this.acc, totalWeight: this.added.size, scale: SCALE };
      this.onSum(this.made, [...this.added].filter((id) => this.under.has(id)).length);
    }
    return this.made;
  }

  weights(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const id of [...this.added].sort()) out[id] = 1 / this.added.size;
    return out;
  }
}

/** acc += trunc(f·x): rounding toward zero never lengthens the clipped vector. */
export function addClipped(acc: Float64Array, x: Float32Array, f: number): void {
  for (let i = 0; i < x.length; i++) acc[i] += Math.trunc(f * x[i]);
}
