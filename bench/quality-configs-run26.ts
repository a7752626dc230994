// Run 26's arms (bench/QUALITY.md "Run 26"): run 22's e4m50 DP arm (1,156 sites of four e-mails, Poisson cohort
// q 50/1,156, noise-aware FedAdam η 0.02 cosine over 150 rounds, EMA 0.95, C 2, ε 7.98 at δ 1e-5 by round 150) with
// the server's pull towards the starting adapter on (strategy.anchorDecay λ, coordinator/strategy/anchor.ts):
// after each step w ← a + (1 − λ·f_t)·(w − a), f_t the cosine's factor. ε is unchanged (post-processing). Why:
// on the seeds where DP fails (runs 24-25) the held-out loss climbs for a hundred rounds while accuracy sits at the
// prior — the noise's walk carries the iterate away into a region of larger gradients (DP's members are clipped
// 63-78% late against the twin's 43-53%) — and a mean-reverting pull bounds that walk. Each arm is scored against
// run 22's fixed-C twin (x22-e4m50-clip) of the same seed, which drew the same cohorts (runs 22 and 25 ran it on
// seeds 42-57). Run through bench/quality-run22-cell.ts with "prefix":"x26a2" or "x26a6" and "arm":"dp8".
import type { QualityConfig } from './quality-configs';
import { RUN22_CONFIGS, type Run22RegimeName } from './quality-configs-run22';

/** λ per prefix: two strengths a factor 3 apart, pulling back over ~50 and ~17 rounds at the schedule's full rate. */
export const RUN26_DECAY = { x26a2: 0.02, x26a6: 0.06 } as const;
export type Run26Prefix = keyof typeof RUN26_DECAY;

function arm(prefix: Run26Prefix, name: Run22RegimeName): QualityConfig & { regime: Run22RegimeName } {
  const c = RUN22_CONFIGS[`x22-${name}-dp8`];
  const decay = RUN26_DECAY[prefix];
  return {
    ...c,
    overrides: { ...c.overrides, strategy: { ...(c.overrides.strategy as Record<string, unknown>), anchorDecay: decay } },
    note: `${c.note}; pulled towards the starting adapter, λ ${decay} × the cosine's factor a round`,
  };
}

export const RUN26_CONFIGS: Readonly<Record<string, QualityConfig & { regime: Run22RegimeName }>> = Object.fromEntries(
  (Object.keys(RUN26_DECAY) as Run26Prefix[]).map((p) => [`${p}-e4m50-dp8`, arm(p, 'e4m50')]),
);
