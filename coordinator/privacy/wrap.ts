// privacy.enabled → the configured strategy wrapped in DP-FedAvg (strategy/dp.ts); otherwise the strategy as is.
import type { CoordinatorConfig } from '../config-types';
import { DpStrategy, dpProblems } from '../strategy/dp';
import type { Strategy } from '../strategy/strategy';
import { samplingProblems } from './sampling';

export function withPrivacy(cfg: CoordinatorConfig, strategy: Strategy): Strategy {
  if (!cfg.privacy.enabled) return strategy;
  // Checked again here (loadConfig checks too): a configuration built in code must not start with a NaN budget,
  // nor with a Poisson sampling the run cannot make honest.
  const problems = [...dpProblems(cfg.privacy), ...samplingProblems(cfg)];
  if (problems.length) throw new Error(`invalid configuration: ${problems.join('; ')}`);
  if (strategy instanceof DpStrategy) return strategy;
  return new DpStrategy(strategy, { clipNorm: cfg.privacy.clipNorm, noiseMultiplier: cfg.privacy.noiseMultiplier });
}
