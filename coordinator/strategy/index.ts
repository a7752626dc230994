// Strategies by their configured name (`strategy.name`): every name in names.ts has its constructor here.
import { FedAvg } from './fedavg';
import { STRATEGY_NAMES, type StrategyName } from './names';
import type { Strategy } from './strategy';

export const STRATEGIES: Readonly<Record<StrategyName, () => Strategy>> = { fedavg: () => new FedAvg() };

export function strategyNamed(name: string): Strategy {
  if (!(STRATEGY_NAMES as readonly string[]).includes(name)) throw new Error(`unknown strategy ${JSON.stringify(name)}; known: ${STRATEGY_NAMES.join(', ')}`);
  return STRATEGIES[name as StrategyName]();
}

export { STRATEGY_NAMES, type StrategyName } from './names';
export type { Aggregation, ClientUpdate, Strategy, WeightedSum } from './strategy';
export { AdmissionError } from './strategy';
