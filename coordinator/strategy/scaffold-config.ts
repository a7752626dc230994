// What SCAFFOLD (scaffold.ts) cannot run with, said at configuration load like every other problem.
import type { CoordinatorConfig } from '../config-types';

export function scaffoldProblems(cfg: Pick<CoordinatorConfig, 'strategy' | 'secagg' | 'privacy'>): string[] {
  if (cfg.strategy.name !== 'scaffold') return [];
  const out: string[] = [];
  if (cfg.secagg.enabled) {
    // Δc would have to ride in the masked vector (twice its length) and the SecAgg gate's norm bound would have to
    // cover it: not built. Refused rather than run with c frozen at zero.
    out.push("strategy.name 'scaffold' cannot run with secagg.enabled: the sites' control-variate updates (Δc) are not carried in the masked vector");
  }
  if (cfg.privacy.enabled) {
    // DP-FedAvg clips and noises the update; Δc would leak the site's mean gradient un-noised, or be clipped with it.
    out.push("strategy.name 'scaffold' cannot run with privacy.enabled: differential privacy does not cover the sites' control-variate updates (Δc)");
  }
  return out;
}
