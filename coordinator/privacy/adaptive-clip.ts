// Adaptive clipping for DP-FedAvg (privacy.adaptiveClipping; Andrew, Thakkar, McMahan & Ramaswamy 2021,
// "Differentially Private Learning with Adaptive Clipping", NeurIPS): instead of a fixed C, the clip norm follows a
// target quantile γ of the sites' update norms, estimated privately each round and moved by a geometric step:
//   b_i = 1[‖Δ_i‖ ≤ C_t]                          (each counted site's bit: was it under the clip?)
//   b̄   = (Σ (b_i − ½) + N(0, σ_b²)) / m + ½      (m: the round's fixed denominator, as DP-FedAvg's mean's)
//   C_{t+1} = C_t · exp(−η_C · (b̄ − γ))
// b̄ is the paper's (Σ b_i + N(0, σ_b²))/m written with centred bits: the two are equal when m is the number of
// counted sites (privacy.sampling 'selection', where the manifest names them), and the centred form is the one
// whose sensitivity to one site is ½ also when that number is secret (a Poisson-sampled round divides by q·N).
//
// Privacy (the paper's §3, Theorem 1): a round releases the noised sum of clipped updates, σ = z_Δ·C per value
// (sensitivity C to adding or removing one site), and the noised centred count, σ_b (sensitivity ½). Dividing each
// by its own σ is a public rescaling, so the pair is one Gaussian mechanism with unit noise on the concatenated
// vector [Σ clip(Δ_i)/(z_Δ·C), Σ (b_i − ½)/σ_b], whose sensitivity to one site is at most √(z_Δ^−2 + (2σ_b)^−2):
// the Gaussian mechanism with noise multiplier z = (z_Δ^−2 + (2σ_b)^−2)^−1/2. So with the configured z and σ_b the
// update's multiplier is z_Δ = (z^−2 − (2σ_b)^−2)^−1/2 and the accountant keeps charging z, sampled or not (the
// subsampled Gaussian's analysis sees only the multiplier of a unit-sensitivity query). The count is paid from z:
// ε is unchanged, the update's noise a little larger (z_Δ > z; σ_b = m/20 at m = 50 and z = 0.749: z_Δ = 0.7575).
// Under SecAgg (proto/secagg/encoding.ts) each site appends its bit and its share of the count's noise,
// N(0, σ_b²/n) for the n selected, to its vector before masking, as it adds its share of the update's noise at z_Δ:
// the coordinator reads the noised count from the unmasked sum and never sees a site's norm or bit; m is then the
// survivors (public, in the record), for which the two forms of b̄ agree. With k of n surviving, both noises are
// √(k/n) of theirs: the Gaussian at z·√(k/n), the effective z the ledger charges such a round anyway.
// C_t lives in the server state (CLIP_NORM_KEY, rounded to float32 once when stored, like the optimisers' state):
// what is saved is what the next round clips with, so a restarted coordinator resumes it bit for bit.

/** The server-state scalar holding the clip norm the next round uses. */
export const CLIP_NORM_KEY = 'clip/norm';
/** The least clip norm the step may reach (the most is strategy/dp.ts's MAX_CLIP_NORM): C never collapses to 0. */
export const MIN_ADAPTIVE_CLIP_NORM = 2 ** -20;

export interface AdaptiveClipSettings {
  /** γ: the fraction of sites' updates meant to fall under the clip (0.5: the median norm). */
  readonly targetQuantile: number;
  /** η_C: the geometric step; C moves by at most a factor e^η_C a round (when |b̄ − γ| = 1). */
  readonly learningRate: number;
  /** σ_b: the count's noise, in sites. */
  readonly countNoise: number;
}

/** What a round of adaptive clipping was and measured (the manifest's privacy.adaptiveClipping). */
export interface AdaptiveClipRound {
  readonly targetQuantile: number;
  readonly learningRate: number;
  readonly countNoise: number;
  /** z_Δ: the noise multiplier on the update sum (σ = z_Δ·C). */
  readonly updateNoiseMultiplier: number;
  /** C_t: what this round's updates were clipped to. */
  readonly clipNorm: number;
  /** b̄: the noised fraction of counted updates under C_t (the noised count itself is not kept). */
  readonly unclippedFraction: number;
  /** C_{t+1}: what the next round clips to. */
  readonly nextClipNorm: number;
}

const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * z_Δ = (z^−2 − (2σ_b)^−2)^−1/2: the update's noise multiplier that leaves the round's privacy at z once the count's
 * noise σ_b is counted (NaN when the count's noise alone would spend all of z).
 */
export function updateNoiseMultiplier(z: number, countNoise: number): number {
  const rest = z ** -2 - (2 * countNoise) ** -2;
  return rest > 0 ? rest ** -0.5 : NaN;
}

/** Problems with privacy.adaptiveClipping's settings, each naming its key (empty when valid). */
export function adaptiveClipProblems(p: {
  readonly noiseMultiplier: unknown;
  readonly clipTargetQuantile: unknown;
  readonly clipLearningRate: unknown;
  readonly clipCountNoise: unknown;
}): string[] {
  const out: string[] = [];
  if (!(num(p.clipTargetQuantile) && p.clipTargetQuantile > 0 && p.clipTargetQuantile < 1))
    out.push(`privacy.clipTargetQuantile (${String(p.clipTargetQuantile)}) must be a number in (0, 1)`);
  if (!(num(p.clipLearningRate) && p.clipLearningRate > 0 && p.clipLearningRate <= 1))
    out.push(`privacy.clipLearningRate (${String(p.clipLearningRate)}) must be a number in (0, 1]: C moves by up to e^η a round`);
  if (!(num(p.clipCountNoise) && p.clipCountNoise > 0)) out.push(`privacy.clipCountNoise (${String(p.clipCountNoise)}) must be a finite number > 0`);
  else if (num(p.noiseMultiplier) && p.noiseMultiplier > 0 && !(updateNoiseMultiplier(p.noiseMultiplier, p.clipCountNoise) > 0))
    out.push(
      `privacy.clipCountNoise (${p.clipCountNoise}) must exceed privacy.noiseMultiplier / 2 (${p.noiseMultiplier / 2}): the count's noise is paid from z, and z^−2 ≤ (2σ_b)^−2 leaves the update none`,
    );
  return out;
}

/**
 * b̄ from the noised count Σ b_i + N(0, σ_b²) of the `counted` sites' bits and the round's denominator m: the
 * coordinator's sum of the bits and its draw in plain rounds, the sites' sum of bits and shares under SecAgg.
 */
export function unclippedFraction(noisedCount: number, counted: number, denominator: number): number {
  if (!(denominator > 0)) throw new RangeError(`adaptive clipping: the round's denominator ${denominator} must be positive`);
  return (noisedCount - counted / 2) / denominator + 0.5;
}

/** C_{t+1} = C_t·exp(−η_C·(b̄ − γ)), kept within [MIN_ADAPTIVE_CLIP_NORM, maxClipNorm] and rounded to float32 (what is stored). */
export function nextClipNorm(clipNorm: number, fraction: number, s: AdaptiveClipSettings, maxClipNorm: number): number {
  const next = clipNorm * Math.exp(-s.learningRate * (fraction - s.targetQuantile));
  return Math.fround(Math.min(maxClipNorm, Math.max(MIN_ADAPTIVE_CLIP_NORM, next)));
}

interface AdaptiveClipKeys {
  readonly privacy: {
    readonly enabled: boolean;
    readonly adaptiveClipping: boolean;
    readonly noiseMultiplier: number;
    readonly clipTargetQuantile: number;
    readonly clipLearningRate: number;
    readonly clipCountNoise: number;
  };
}

/** privacy.adaptiveClipping's problems with the rest of the configuration, each naming its keys (empty when valid or off). */
export function adaptiveClipConfigProblems(cfg: AdaptiveClipKeys): string[] {
  const p = cfg.privacy;
  if (!p.adaptiveClipping) return [];
  const out: string[] = [];
  if (!p.enabled) out.push('privacy.adaptiveClipping needs privacy.enabled: it adapts DP-FedAvg’s clip norm');
  return [...out, ...adaptiveClipProblems(p)];
}
