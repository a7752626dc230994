// Run 22's regimes and configurations (bench/QUALITY.md "Run 22"): run 21's DP arm and its twin (run 18's recipe
// with the product's Poisson sampling) in a regime where ε 8 costs less noise on the round's mean, chosen by the
// accountant before any GPU time.
//
// DP's noise on a value of the mean is z·C/m. At these rates z hardly grows with the rounds (q 50/1,156: 0.645 at 50
// rounds, 0.749 at 150; run22-regimes below), so the lever is the population: cutting the same 4,624 training
// e-mails into more, smaller sites lowers q at the same expected cohort m, and a larger m at the same q divides the
// same z by more. The price is what one site holds: a site of one e-mail's clipped update is one e-mail's gradient,
// noisier than the mean of four (bench/quality-run22-signal.ts measures how much signal survives per size). And it
// is a different promise: with one e-mail a site, "a site's data" is one e-mail, so ε 8 protects an e-mail's owner
// only if each owner holds one e-mail (example-level privacy), where run 21's protected four.
import { noiseForEpsilon } from '../coordinator/privacy/plan';
import type { QualityConfig } from './quality-configs';
import { RUN18_CONFIGS } from './quality-configs-run18';
import { productSampled } from './quality-sampled-cell';

/** A Poisson-sampled cross-device regime: N sites of `perSite` e-mails, m expected a round, T rounds. */
export interface SampledRegime {
  readonly sites: number;
  readonly perSite: number;
  readonly cohort: number;
  readonly rounds: number;
}

/** δ of every DP arm since run 9 (the README's default): fixed, not 1/N, so regimes of different N compare. */
export const RUN22_DELTA = 1e-5;

/** The smallest z on a 0.001 grid whose ε after the regime's rounds at q = m/N stays ≤ `epsilon` at δ (the product's planner). */
export function zForEpsilon(r: SampledRegime, epsilon = 8, delta = RUN22_DELTA): number {
  return noiseForEpsilon({ samplingRate: r.cohort / r.sites, delta }, r.rounds, epsilon);
}

/** The candidates tabulated (`node dist/bench/quality-run22-regimes.js`): 3 populations × 3 cohorts × 3 lengths. */
export const RUN22_CANDIDATES: readonly SampledRegime[] = [
  [1156, 4],
  [2312, 2],
  [4624, 1],
].flatMap(([sites, perSite]) => [50, 100, 200].flatMap((cohort) => [50, 100, 150].map((rounds) => ({ sites, perSite, cohort, rounds }))));

/**
 * The regimes run 22 can run (the recipe's 150 rounds, η schedule and C kept, so each twin is run 21's twin but for
 * the population and cohort), picked with the signal probe (QUALITY.md "Run 22"):
 *   'e1m100' 4,624 sites of one e-mail, m 100 (q 0.0216: z 0.609, z·C/m 0.0122), the first pick;
 *   'e4m100' run 21's 1,156 sites of four, m 100 (q 0.0865: z 1.016, 0.0203): the same privacy unit as run 21;
 *   'e4m50'  run 21's own regime (z 0.749, 0.030), for the paired comparison where run 21 was unpaired.
 */
export const RUN22_REGIMES = {
  e4m50: { sites: 1156, perSite: 4, cohort: 50, rounds: 150 },
  e4m100: { sites: 1156, perSite: 4, cohort: 100, rounds: 150 },
  e1m100: { sites: 4624, perSite: 1, cohort: 100, rounds: 150 },
} as const satisfies Record<string, SampledRegime>;
export type Run22RegimeName = keyof typeof RUN22_REGIMES;

/** z for ε ≤ 8 at δ 1e-5 by round 150 per regime (zForEpsilon; test/dp22-paired.test.ts checks each). */
export const RUN22_Z8: Readonly<Record<Run22RegimeName, number>> = { e4m50: 0.749, e4m100: 1.016, e1m100: 0.609 };

/**
 * Run 18's arm (`x18-dp8` with noise `z`, or its twin `x18-clip` when z is undefined) over regime `r`, sampled by the
 * coordinator; `tweak` changes the strategy where a later run varies the recipe (run 24: the EMA and the noise floor).
 */
export function sampledArm(r: SampledRegime, z: number | undefined, tweak: { ema?: number; noiseFloor?: number } = {}): QualityConfig {
  const c = productSampled(RUN18_CONFIGS[z !== undefined ? 'x18-dp8' : 'x18-clip'], r.sites, r.cohort / r.sites);
  const privacy = { ...(c.overrides.privacy as Record<string, unknown>), noiseMultiplier: z ?? 1e-6 };
  const strategy = { ...(c.overrides.strategy as Record<string, unknown>), ...tweak };
  const ema = strategy.ema as number;
  return {
    ...c,
    overrides: { ...c.overrides, privacy, strategy },
    note: `${r.sites} sites of ${r.perSite} e-mail${r.perSite > 1 ? 's' : ''}, Poisson cohort q ${r.cohort}/${r.sites} drawn by the coordinator (fixed denominator ${r.cohort}), FedIT rank 1 c_attn, FedSGD (one SGD step at 1 on the site's e-mails, batch ${r.perSite}), noise-aware FedAdam${tweak.noiseFloor !== undefined ? ` (floor ${tweak.noiseFloor})` : ''} η 0.02 cosine over ${r.rounds} rounds, EMA ${ema}, clip 2, ${z !== undefined ? `DP ε 8 at δ 1e-5 by round ${r.rounds} (z ${z})` : 'no noise (z 1e-6)'}`,
  };
}

const arm = (name: Run22RegimeName, dp: boolean): QualityConfig => sampledArm(RUN22_REGIMES[name], dp ? RUN22_Z8[name] : undefined);

export const RUN22_CONFIGS: Readonly<Record<string, QualityConfig & { regime: Run22RegimeName }>> = Object.fromEntries(
  (Object.keys(RUN22_REGIMES) as Run22RegimeName[]).flatMap((name) => [
    [`x22-${name}-dp8`, { ...arm(name, true), regime: name }],
    [`x22-${name}-clip`, { ...arm(name, false), regime: name }],
  ]),
);
