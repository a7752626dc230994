// privacy.targetEpsilon: an ε the run is meant to end within, from which the coordinator derives z (what Opacus's
// make_private_with_epsilon does), instead of the operator choosing z by hand. z is the smallest on a 0.001 grid whose
// ε at privacy.delta after rounds.total rounds, each charged at the run's q (privacy.samplingRate under Poisson
// sampling, else 1), stays within the target (plan.ts noiseForEpsilon). Why: z depends on q, the rounds and δ through
// the accountant, and a z picked for the wrong q is off by ten times (q = 1 against 50/1,156 at ε 8: 7.81 against
// 0.749); deriving it removes that mistake. The target also becomes the budget when none is set, so a run whose rounds
// end with fewer SecAgg survivors than selected (each such round charged less noise) stops before passing it.
// loadConfig resolves it (privacy.noiseMultiplier is then the derived z, and giving both is refused); a
// configuration built in code is checked when the coordinator starts (privacy/wrap.ts).
import type { CoordinatorConfig } from '../config-types';
import { MAX_NOISE_MULTIPLIER } from '../../proto/secagg/config';
import { isSmallestNoise, noiseForEpsilon } from './plan';
import { chargedSamplingRate } from './sampling';

type TargetKeys = Pick<CoordinatorConfig, 'privacy' | 'rounds'>;

/** z for the configuration's target ε (privacy.targetEpsilon > 0); throws when none up to the bound reaches it. */
export function targetNoiseMultiplier(cfg: TargetKeys): number {
  const p = cfg.privacy;
  const z = noiseForEpsilon({ samplingRate: chargedSamplingRate(cfg), delta: p.delta }, cfg.rounds.total, p.targetEpsilon);
  if (z > MAX_NOISE_MULTIPLIER) throw new RangeError(`it needs z ${z}, above the bound ${MAX_NOISE_MULTIPLIER}`);
  return z;
}

/**
 * The configuration with privacy.targetEpsilon resolved (z derived, the budget set to the target when 0), or the
 * problems that stop it; `given(key)` says whether a source set `key` (not its default).
 */
export function resolvePrivacyTarget<C extends TargetKeys>(cfg: C, given: (key: string) => boolean): { cfg: C; problems: string[] } {
  const p = cfg.privacy;
  if (!(p.targetEpsilon > 0)) return { cfg, problems: [] };
  const problems: string[] = [];
  if (!p.enabled) problems.push(`privacy.targetEpsilon (${p.targetEpsilon}) needs privacy.enabled`);
  if (given('privacy.noiseMultiplier'))
    problems.push('set privacy.noiseMultiplier or privacy.targetEpsilon, not both: the target derives z (`fedtune privacy plan` shows it)');
  if (problems.length) return { cfg, problems };
  let z: number;
  try {
    z = targetNoiseMultiplier(cfg);
  } catch (e) {
    return { cfg, problems: [`privacy.targetEpsilon ${p.targetEpsilon} by rounds.total ${cfg.rounds.total} cannot be met: ${(e as Error).message}`] };
  }
  const epsilonBudget = p.epsilonBudget > 0 ? p.epsilonBudget : p.targetEpsilon;
  return { cfg: { ...cfg, privacy: { ...p, noiseMultiplier: z, epsilonBudget } }, problems: [] };
}

/**
 * A configuration built in code must carry the z its target derives (loadConfig sets it). Checked at start without
 * searching again (plan.ts isSmallestNoise); the search runs only to name the right z in a refusal.
 */
export function targetProblems(cfg: TargetKeys): string[] {
  const p = cfg.privacy;
  if (!(p.targetEpsilon > 0)) return [];
  const regime = { samplingRate: chargedSamplingRate(cfg), delta: p.delta };
  try {
    if (isSmallestNoise(regime, cfg.rounds.total, p.targetEpsilon, p.noiseMultiplier)) return [];
    return [
      `privacy.targetEpsilon ${p.targetEpsilon} derives privacy.noiseMultiplier ${targetNoiseMultiplier(cfg)}; the configuration has ${p.noiseMultiplier} (loadConfig resolves it)`,
    ];
  } catch (e) {
    return [`privacy.targetEpsilon ${p.targetEpsilon} cannot be met: ${(e as Error).message}`];
  }
}
