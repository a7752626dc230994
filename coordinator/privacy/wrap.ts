// privacy.enabled → the configured strategy wrapped in DP-FedAvg (strategy/dp.ts); otherwise the strategy as is.
import type { CoordinatorConfig } from '../config-types';
import { DpStrategy, dpProblems } from '../strategy/dp';
import type { Strategy } from '../strategy/strategy';

export function withPrivacy(cfg: CoordinatorConfig, strategy: Strategy): Strategy {
  if (!cfg.privacy.enabled || strategy instanceof DpStrategy) return strategy;
  // Checked again here (loadConfig checks too): a configuration built in code must not start with a NaN budget.
  const problems = dpProblems(cfg.privacy);
  if (problems.length) throw new Error(`invalid configuration: ${problems.join('; ')}`);
  return new DpStrategy(strategy, { clipNorm: cfg.privacy.clipNorm, noiseMultiplier: cfg.privacy.noiseMultiplier });
}
