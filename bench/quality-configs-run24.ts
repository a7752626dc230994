// Run 24's regime and configurations (bench/QUALITY.md "Run 24"): run 22's e4m50 pair (run 21's regime: 1,156 sites
// of 4 e-mails, a Poisson cohort of 50 expected, the noise-aware FedAdam, C 2) run twice as long and released as a
// longer average, each DP arm still differing from its twin in z alone and drawing the same cohorts.
//
// Why this and not another regime: at q 50/1,156 the accountant's z hardly grows with the rounds (0.749 at 150,
// 0.845 at 300: zForEpsilon), so doubling the rounds costs 13% more noise a round while the signal's steps add up
// linearly and the noise's walk only as √T. What is scored is the server's EMA: β 0.99 (a window of ~100 rounds, the
// default recipe's β) against run 22's 0.95 (~20) averages the noise's fast part over five times more rounds
// (post-processing: ε unchanged). The η schedule (cosine) spans the run's rounds, so the twin gets the same longer,
// slower descent; the comparison stays DP against its own twin.
import type { QualityConfig } from './quality-configs';
import { sampledArm, type SampledRegime } from './quality-configs-run22';

export const RUN24_REGIMES = {
  e4m50t300: { sites: 1156, perSite: 4, cohort: 50, rounds: 300 },
} as const satisfies Record<string, SampledRegime>;
export type Run24RegimeName = keyof typeof RUN24_REGIMES;

/** z for ε ≤ 8 at δ 1e-5 by round 300 (zForEpsilon; test/dp22-paired.test.ts checks it). */
export const RUN24_Z8: Readonly<Record<Run24RegimeName, number>> = { e4m50t300: 0.845 };

/** The EMA of every run 24 arm: the default recipe's β. */
export const RUN24_EMA = 0.99;

export const RUN24_CONFIGS: Readonly<Record<string, QualityConfig & { regime: SampledRegime }>> = Object.fromEntries(
  (Object.keys(RUN24_REGIMES) as Run24RegimeName[]).flatMap((name) => {
    const regime = RUN24_REGIMES[name];
    return [
      [`x24-${name}-dp8`, { ...sampledArm(regime, RUN24_Z8[name], { ema: RUN24_EMA }), regime }],
      [`x24-${name}-clip`, { ...sampledArm(regime, undefined, { ema: RUN24_EMA }), regime }],
    ];
  }),
);
