// The coordinator's defaults are one measured recipe, docs/recipes/fedsgd-steady.json5 (bench/QUALITY.md run 16:
// FedSGD under FedAdam with bias correction, η 0.003 cosine, strategy.ema 0.99; the one configuration that met the
// 98%-of-centralized and the no-collapse goals on every split). Five of its defaults are FedAdam's settings. Under
// another strategy.name they would be refused (biasCorrection, a cosine server rate under fedavg) or silently
// wrong (η 0.003 for fedavgm or scaffold), so an operator who only changes the strategy gets, for each of those
// keys that no layer (file, variable, flag, code) sets, the value the coordinator defaulted to before the switch:
// the strategy's own rate, Reddi et al.'s β2 and τ, no bias correction, a constant server rate. A key that is
// set keeps its value, and the checks in config.ts still refuse what the strategy cannot use.
import type { CoordinatorConfig } from './config-types';

/** The default recipe's strategy. */
export const DEFAULT_RECIPE_STRATEGY = 'fedadam';

/** [key under strategy.*, its value under any other strategy when no layer sets it]. */
export const STRATEGY_NEUTRAL: readonly (readonly [keyof CoordinatorConfig['strategy'], number | boolean | string])[] = [
  ['serverLearningRate', 0],
  ['beta2', 0.99],
  ['tau', 1e-3],
  ['biasCorrection', false],
  ['serverSchedule', 'constant'],
];

/** `cfg` with the recipe's FedAdam defaults swapped for their neutral values under another strategy (see above). */
export function fitDefaultsToStrategy(cfg: CoordinatorConfig, given: (key: string) => boolean): CoordinatorConfig {
  if (cfg.strategy.name === DEFAULT_RECIPE_STRATEGY) return cfg;
  const strategy: Record<string, unknown> = { ...cfg.strategy };
  for (const [key, neutral] of STRATEGY_NEUTRAL) if (!given(`strategy.${key}`)) strategy[key] = neutral;
  return { ...cfg, strategy: strategy as CoordinatorConfig['strategy'] };
}
