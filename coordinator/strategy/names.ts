// The strategies `strategy.name` may name: the configuration schema validates against this list and
// strategy/index.ts maps each name to its implementation (a name without one fails to compile there).
export const STRATEGY_NAMES = ['fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad', 'scaffold'] as const;
export type StrategyName = (typeof STRATEGY_NAMES)[number];

/**
 * The name a version records for a strategy a wrapper runs around (DP-FedAvg's clipping and noise, the EMA
 * average): what ran, innermost first, e.g. `fedadam+dp+ema`. The one place such a name is composed.
 */
export function wrappedName(inner: string, wrapper: 'dp' | 'ema'): string {
  return `${inner}+${wrapper}`;
}

/** The configured strategy of a recorded name (`fedadam+dp+ema` → `fedadam`). */
export function baseStrategyName(name: string): string {
  return name.split('+', 1)[0];
}
