// Strategies by their configured name (`strategy.name`): every name in names.ts has its constructor here, given
// the strategy.* hyper-parameters (each strategy reads those it uses).
import { FedAvg } from './fedavg';
import { FedAvgM } from './fedavgm';
import { FedAdagrad, FedAdam, FedYogi } from './fedopt';
import { Scaffold } from './scaffold';
import { STRATEGY_NAMES, type StrategyName } from './names';
import { DEFAULT_SERVER_OPTIMIZER, type ServerOptimizerSettings } from './settings';
import type { Strategy } from './strategy';

export const STRATEGIES: Readonly<Record<StrategyName, (s?: ServerOptimizerSettings) => Strategy>> = {
  fedavg: () => new FedAvg(),
  fedavgm: (s = DEFAULT_SERVER_OPTIMIZER) => new FedAvgM(s),
  fedadam: (s = DEFAULT_SERVER_OPTIMIZER) => new FedAdam(s),
  fedyogi: (s = DEFAULT_SERVER_OPTIMIZER) => new FedYogi(s),
  fedadagrad: (s = DEFAULT_SERVER_OPTIMIZER) => new FedAdagrad(s),
  scaffold: (s = DEFAULT_SERVER_OPTIMIZER) => new Scaffold({ serverLearningRate: s.serverLearningRate, population: s.population ?? 0 }),
};

export function strategyNamed(name: string, settings: ServerOptimizerSettings = DEFAULT_SERVER_OPTIMIZER): Strategy {
  if (!(STRATEGY_NAMES as readonly string[]).includes(name)) throw new Error(`unknown strategy ${JSON.stringify(name)}; known: ${STRATEGY_NAMES.join(', ')}`);
  return STRATEGIES[name as StrategyName](settings);
}

export { STRATEGY_NAMES, type StrategyName } from './names';
export { DEFAULT_SERVER_OPTIMIZER, type ServerOptimizerSettings } from './settings';
export type { Aggregation, ClientUpdate, ServerState, Strategy, WeightedSum } from './strategy';
export { AdmissionError } from './strategy';
