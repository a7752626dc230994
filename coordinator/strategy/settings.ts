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
  /**
   * FedAdam under DP-FedAvg (privacy.enabled): subtract the known variance of the noise on the mean update,
   * (σ/n)² per value (σ = z·C on the sum of n updates), from Adam's second moment before the step (DP-AdamBC, Tang
   * et al. 2024), so that the steps on the signal are the noiseless optimiser's in expectation (fedopt.ts).
   */
  readonly noiseAware?: boolean;
  /** The corrected second moment's floor, as a fraction of the noise's variance on the mean (default NOISE_FLOOR). */
  readonly noiseFloor?: number;
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

/**
 * The default floor of the noise-corrected second moment, as a fraction of the noise's variance on the mean: a value
 * whose signal the noise hides (v − ν under 0.25·ν) steps as if its signal were half the noise's standard deviation,
 * so its noise is amplified at most 2× against an uncorrected Adam whose √v is the noise's.
 */
export const NOISE_FLOOR = 0.25;

/** strategy.noiseAware corrects FedAdam's second moment for DP-FedAvg's noise: without both it is refused. */
export function noiseAwareProblems(cfg: Pick<CoordinatorConfig, 'strategy' | 'privacy'>): string[] {
  const s = cfg.strategy;
  const out: string[] = [];
  if (!(s.noiseFloor > 0 && s.noiseFloor <= 1)) out.push(`strategy.noiseFloor (${s.noiseFloor}) must be in (0, 1]`);
  if (!s.noiseAware) return out;
  if (s.name !== 'fedadam') out.push(`strategy.noiseAware corrects fedadam's second moment; strategy.name is '${s.name}'`);
  if (!cfg.privacy.enabled) out.push('strategy.noiseAware subtracts the variance of differential privacy noise: it needs privacy.enabled');
  return out;
}

/** strategy.biasCorrection belongs to the adaptive optimisers: set with any other strategy it would do nothing, so it is refused. */
export function biasCorrectionProblems(cfg: Pick<CoordinatorConfig, 'strategy'>): string[] {
  const s = cfg.strategy;
  if (!s.biasCorrection || ['fedadam', 'fedyogi', 'fedadagrad'].includes(s.name)) return [];
  return [`strategy.biasCorrection is Adam's bias correction of fedadam, fedyogi, fedadagrad; strategy.name is '${s.name}'`];
}
