// privacy.enabled → the configured strategy wrapped in DP-FedAvg (strategy/dp.ts); otherwise the strategy as is.
import type { CoordinatorConfig } from '../config-types';
import { DpStrategy, dpProblems, type DpSettings } from '../strategy/dp';
import type { Strategy } from '../strategy/strategy';
import { samplingProblems } from './sampling';
import { adaptiveClipConfigProblems } from './adaptive-clip';
import { targetProblems } from './target';

export function withPrivacy(cfg: CoordinatorConfig, strategy: Strategy): Strategy {
  if (!cfg.privacy.enabled) return strategy;
  // Checked again here (loadConfig checks too): a configuration built in code must not start with a NaN budget,
  // nor with a Poisson sampling the run cannot make honest.
  const problems = [...dpProblems(cfg.privacy), ...samplingProblems(cfg), ...adaptiveClipConfigProblems(cfg), ...targetProblems(cfg)];
  if (problems.length) throw new Error(`invalid configuration: ${problems.join('; ')}`);
  if (strategy instanceof DpStrategy) return strategy;
  return new DpStrategy(strategy, dpSettingsOf(cfg));
}

/** DP-FedAvg's settings from the privacy section (the strategy's, and a SecAgg round's clip and noise). */
export function dpSettingsOf(cfg: Pick<CoordinatorConfig, 'privacy'>): DpSettings {
  const p = cfg.privacy;
  const adaptive = p.adaptiveClipping ? { targetQuantile: p.clipTargetQuantile, learningRate: p.clipLearningRate, countNoise: p.clipCountNoise } : undefined;
  return { clipNorm: p.clipNorm, noiseMultiplier: p.noiseMultiplier, ...(adaptive ? { adaptive } : {}) };
}
