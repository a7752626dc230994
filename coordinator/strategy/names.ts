// The strategies `strategy.name` may name: the configuration schema validates against this list and
// strategy/index.ts maps each name to its implementation (a name without one fails to compile there).
export const STRATEGY_NAMES = ['fedavg', 'fedavgm', 'fedadam', 'fedyogi', 'fedadagrad', 'scaffold'] as const;
export type StrategyName = (typeof STRATEGY_NAMES)[number];
