// Run 24a's arms (for the lead's GPU run; bench/QUALITY.md): run 22's e4m50 pair (bench/quality-configs-run22.ts:
// 1,156 sites of four e-mails, Poisson cohort q 50/1,156, noise-aware FedAdam, EMA 0.95, ε 8 at δ 1e-5 by round 150)
// with DP-FedAvg's adaptive clipping on (privacy.adaptiveClipping, coordinator/privacy/adaptive-clip.ts): C starts at
// run 22's 2 and follows the median update norm (γ 0.5) by the paper's geometric step (η_C 0.2); the count's noise
// is σ_b = m/20 = 2.5 for the expected cohort m = 50, the paper's advice (Andrew et al. 2021, §3). ε is unchanged:
// the accountant still charges z 0.749 and the update's noise takes z_Δ = (z^−2 − (2σ_b)^−2)^−1/2 = 0.7575. The twin
// keeps run 22's z 1e-6 (z_Δ ≈ 1e-6): C adapts there too, from a count noised alike, so the pair still differs in
// the update's noise alone. Run through bench/quality-run22-cell.ts with "prefix":"x24a" (Q22_PREFIX=x24a).
import { updateNoiseMultiplier } from '../coordinator/privacy/adaptive-clip';
import type { QualityConfig } from './quality-configs';
import { RUN22_CONFIGS, RUN22_REGIMES, RUN22_Z8, type Run22RegimeName } from './quality-configs-run22';

/** The paper's adaptive clipping for a regime: γ 0.5, η_C 0.2, σ_b = expected cohort / 20, C from run 22's 2. */
export function run24aAdaptive(name: Run22RegimeName): {
  adaptiveClipping: true;
  clipTargetQuantile: number;
  clipLearningRate: number;
  clipCountNoise: number;
} {
  return { adaptiveClipping: true, clipTargetQuantile: 0.5, clipLearningRate: 0.2, clipCountNoise: RUN22_REGIMES[name].cohort / 20 };
}

function arm(name: Run22RegimeName, dp: boolean): QualityConfig & { regime: Run22RegimeName } {
  const c = RUN22_CONFIGS[`x22-${name}-${dp ? 'dp8' : 'clip'}`];
  const privacy = { ...(c.overrides.privacy as Record<string, unknown>), ...run24aAdaptive(name) };
  const a = run24aAdaptive(name);
  const zDelta = dp ? updateNoiseMultiplier(RUN22_Z8[name], a.clipCountNoise) : undefined;
  return {
    ...c,
    overrides: { ...c.overrides, privacy },
    note: `${c.note}; adaptive clipping from C 2 (γ ${a.clipTargetQuantile}, η_C ${a.clipLearningRate}, σ_b ${a.clipCountNoise}${zDelta ? `: update noise z_Δ ${zDelta.toFixed(4)}` : ''})`,
  };
}

export const RUN24A_CONFIGS: Readonly<Record<string, QualityConfig & { regime: Run22RegimeName }>> = {
  'x24a-e4m50-dp8': arm('e4m50', true),
  'x24a-e4m50-clip': arm('e4m50', false),
};
