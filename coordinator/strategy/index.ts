// Strategies by their configured name (`strategy.name`): the config's list of names and this table agree.
import { FedAvg } from './fedavg';
import type { Strategy } from './strategy';

export const STRATEGIES = { fedavg: () => new FedAvg() } as const satisfies Record<string, () => Strategy>;
export type StrategyName = keyof typeof STRATEGIES;

export function strategyNamed(name: string): Strategy {
  const make = (STRATEGIES as Record<string, () => Strategy>)[name];
  if (!make) throw new Error(`unknown strategy ${JSON.stringify(name)}; known: ${Object.keys(STRATEGIES).join(', ')}`);
  return make();
}

export type { Aggregation, ClientUpdate, Strategy, WeightedSum } from './strategy';
export { AdmissionError } from './strategy';
