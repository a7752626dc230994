// The server optimisers' hyper-parameters (strategy.* in the configuration), with the defaults each strategy
// falls back to. FedAvg uses none of them.
import type { CoordinatorConfig } from '../config-types';
import type { ServerScheduleSettings } from './server-schedule';

export interface ServerOptimizerSettings extends ServerScheduleSettings {
  /** Server learning rate η; 0 = the strategy's default (DEFAULT_SERVER_LEARNING_RATE). */
  readonly serverLearningRate: number;
  /** FedAvgM's momentum β. */
  readonly momentum: number;
  /** FedAdam/FedYogi/FedAdagrad: first-moment decay β1. */
  readonly beta1: number;
  /** FedAdam/FedYogi: second-moment decay β2. */
  readonly beta2: number;
  /** FedAdam/FedYogi/FedAdagrad: adaptivity τ (added to √v; v starts at τ²). */
  readonly tau: number;
  /**
   * FedAdam/FedYogi/FedAdagrad: Adam's bias correction (m/(1 − β1^t), v/(1 − β2^t) in round t; v starts at 0), so
   * that over one-step rounds (FedSGD: the mean update is the pooled gradient times the client rate) the server
   * runs Adam itself. Absent or false: Reddi et al.'s Algorithm 2 as it stands.
   */
  readonly biasCorrection?: boolean;
  /** SCAFFOLD: N, the sites in the federation, for c ← c + (|S|/N)·mean(Δc) (0 or absent: every site is in every round). */
  readonly population?: number;
}

export const DEFAULT_SERVER_OPTIMIZER: ServerOptimizerSettings = { serverLearningRate: 0, momentum: 0.9, beta1: 0.9, beta2: 0.99, tau: 1e-3 };

/**
 * η when strategy.serverLearningRate is 0. FedAvgM: 1 − β, so that the effective rate η/(1 − β) of Hsu et al. 2019
 * is 1: once the momentum has built up, a steady update moves the adapter as far as FedAvg would, and the momentum
 * only smooths the round-to-round swings (η = 1 with β = 0.9 would step ten times as far). The adaptive optimisers
 * move each value by about η per round (m/√v is near ±1 for a consistent update), so η must be of the order of one
 * round's change: 1e-2 (Flower's FedYogi default; Reddi et al. 2021 tune it per task over 10^-3…10^0).
 */
export const DEFAULT_SERVER_LEARNING_RATE = { fedavgm: (momentum: number): number => 1 - momentum, adaptive: 1e-2 } as const;

/** Every value finite and in range; throws naming the bad one (the configuration checks the same bounds). */
export function checkSettings(label: string, s: ServerOptimizerSettings): void {
  const bad = (k: string, v: number, want: string): Error => new RangeError(`${label}: ${k} = ${v}; must be ${want}`);
  if (!(Number.isFinite(s.serverLearningRate) && s.serverLearningRate >= 0)) throw bad('serverLearningRate', s.serverLearningRate, 'a finite number ≥ 0');
  for (const k of ['momentum', 'beta1', 'beta2'] as const) if (!(s[k] >= 0 && s[k] < 1)) throw bad(k, s[k], 'in [0, 1)');
  if (!(Number.isFinite(s.tau) && s.tau > 0)) throw bad('tau', s.tau, 'a finite number > 0');
}

/** strategy.biasCorrection belongs to the adaptive optimisers: set with any other strategy it would do nothing, so it is refused. */
export function biasCorrectionProblems(cfg: Pick<CoordinatorConfig, 'strategy'>): string[] {
  const s = cfg.strategy;
  if (!s.biasCorrection || ['fedadam', 'fedyogi', 'fedadagrad'].includes(s.name)) return [];
  return [`strategy.biasCorrection is Adam's bias correction of fedadam, fedyogi, fedadagrad; strategy.name is '${s.name}'`];
}
