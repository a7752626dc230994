// The configurations the learning-quality benchmark compares (issue 11, bench/QUALITY.md). Each is a set of
// coordinator config overrides applied on top of the cell's common settings, plus how sites are formed:
//   federated    the usual N sites, one slice each;
//   centralized  one site holding every site's training data, N × localSteps a round (same total steps): the ceiling;
//   local        each site alone in its own one-site federation: what a site gets without federating.
// Configurations whose feature has not landed in this tree are refused by loadConfig (unknown key or strategy
// name), and the driver reports the cell as failed rather than silently running something else.

import { RUN9_CONFIGS } from './quality-configs-run9';
import { RUN11_CONFIGS } from './quality-configs-run11';
import { RUN14_CONFIGS } from './quality-configs-run14';
import { RUN15_CONFIGS } from './quality-configs-run15';
import { RUN16_CONFIGS } from './quality-configs-run16';
import { RUN17_CONFIGS } from './quality-configs-run17';
import { RUN18_CONFIGS } from './quality-configs-run18';
import { RUN19_CONFIGS } from './quality-configs-run19';
import type { CohortSpec } from './quality-cohort';

export type SiteMode = 'federated' | 'centralized' | 'local';

export interface QualityConfig {
  readonly mode: SiteMode;
  /** Deep-merged into the coordinator's config overrides. */
  readonly overrides: Readonly<Record<string, unknown>>;
  readonly note: string;
  /**
   * The client learning rate (the schedule's peak) and local steps of this configuration, replacing the driver's
   * --lr / --local-steps for its cells (centralized still multiplies the steps by the number of sites), as
   * training.learningRate / localSteps in `overrides` also do (configTraining). The cell records what ran.
   */
  readonly learningRate?: number;
  readonly localSteps?: number;
  /** Sites in the federation, replacing the driver's --clients (run 9's DP cells: noise on the mean shrinks as 1/n). */
  readonly clients?: number;
  /**
   * Cross-device cells (bench/quality-cohort.ts, run 15): a population of small sites and a cohort sampled each
   * round, trained through `clients` = cohort.slots federation clients.
   */
  readonly cohort?: CohortSpec;
}

// Noise multipliers for ε ≈ 8, 4, 1 at δ = 1e-5 after 30 rounds with every site in every round (q = 1), from
// coordinator/privacy/accountant.ts: z = 3.5 → 7.98, z = 6.4 → 3.96, z = 22 → 1.01.
const dp = (noiseMultiplier: number): QualityConfig => ({
  mode: 'federated',
  overrides: { privacy: { enabled: true, clipNorm: 0.5, noiseMultiplier, delta: 1e-5 } },
  note: `DP-FedAvg, clip 0.5, noise multiplier ${noiseMultiplier}`,
});

// Run 4 (bench/QUALITY.md, "Run 4 plan"): client SGD under FedAvg and the server optimisers, with run 3's cosine
// schedule (to 0 by the last round) that steadied the centralized recipe. SGD_LR is calibrated on the task (the
// plan): SGD at 0.1 learns about as fast as AdamW at 0.002.
const SGD_LR = 0.1;
const sgdCos = (momentum = 0): Record<string, unknown> => ({ optimizer: 'sgd', momentum, schedule: 'cosine' });
const fedadam = (eta: number): Record<string, unknown> => ({ name: 'fedadam', serverLearningRate: eta, tau: 1e-3 });
const fedavgm = (eta: number): Record<string, unknown> => ({ name: 'fedavgm', serverLearningRate: eta, momentum: 0.9 });
const sgdFed = (note: string, lr: number, more: Record<string, unknown> = {}, localSteps?: number, momentum = 0): QualityConfig => ({
  mode: 'federated',
  overrides: deepMerge({ training: sgdCos(momentum) }, more),
  note,
  learningRate: lr,
  ...(localSteps !== undefined ? { localSteps } : {}),
});

export const CLIENT_SGD_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  sgd: { mode: 'federated', overrides: { training: { optimizer: 'sgd' } }, note: `client SGD ${SGD_LR} constant, FedAvg`, learningRate: SGD_LR },
  'sgd-cos': sgdFed(`client SGD ${SGD_LR} cosine, FedAvg`, SGD_LR),
  'sgd-cos2': sgdFed('client SGD 0.2 cosine, FedAvg', 0.2),
  'sgd-k3': sgdFed('client SGD 0.2 cosine, 3 local steps, FedAvg', 0.2, {}, 3),
  'sgd-m9': sgdFed('client SGD 0.015 momentum 0.9 cosine, FedAvg', 0.015, {}, undefined, 0.9),
  'sgd-avgm': sgdFed(`client SGD ${SGD_LR} cosine, FedAvgM η 0.3 β 0.9`, SGD_LR, { strategy: fedavgm(0.3) }),
  'sgd-avgm1': sgdFed('client SGD 0.05 cosine, FedAvgM η 1 β 0.9', 0.05, { strategy: fedavgm(1) }),
  'sgd-adam': sgdFed(`client SGD ${SGD_LR} cosine, FedAdam η 0.01 τ 1e-3`, SGD_LR, { strategy: fedadam(0.01) }),
  'sgd-adam3': sgdFed(`client SGD ${SGD_LR} cosine, FedAdam η 0.03 τ 1e-3`, SGD_LR, { strategy: fedadam(0.03) }),
  'sgd-adam-ffa': sgdFed(`client SGD ${SGD_LR} cosine, FedAdam η 0.01, FFA-LoRA`, SGD_LR, { strategy: fedadam(0.01), lora: { aggregation: 'ffa' } }),
  'sgd-prox1': sgdFed(`client SGD ${SGD_LR} cosine, FedProx μ 1`, SGD_LR, { training: { proximalMu: 1 } }),
  // After run 4 (SGD at 0.1 never left the 67.5% prior, even centralized): 10× and 30× the rate with a 3-round
  // warm-up, and FedAdam with τ = 1e-6 so that the server normalises every coordinate whatever the client's scale.
  'sgd-lr1': sgdFed('client SGD 1.0 cosine, 3 warm-up rounds, FedAvg', 1, { training: { warmupRounds: 3 } }),
  'sgd-lr3': sgdFed('client SGD 3.0 cosine, 3 warm-up rounds, FedAvg', 3, { training: { warmupRounds: 3 } }),
  'sgd-adam-t6': sgdFed(`client SGD ${SGD_LR} cosine, FedAdam η 0.01 τ 1e-6`, SGD_LR, { strategy: { ...fedadam(0.01), tau: 1e-6 } }),
  'central-sgd-lr1': {
    mode: 'centralized',
    overrides: { training: { ...sgdCos(), warmupRounds: 3 } },
    note: 'centralized, SGD 1.0 cosine, 3 warm-up rounds',
    learningRate: 1,
  },
  prox1: { mode: 'federated', overrides: { training: { schedule: 'cosine', proximalMu: 1 } }, note: 'FedProx μ 1, AdamW 0.002 cosine' },
  'central-sgd': { mode: 'centralized', overrides: { training: sgdCos() }, note: `centralized, SGD ${SGD_LR} cosine`, learningRate: SGD_LR },
  'local-sgd': { mode: 'local', overrides: { training: sgdCos() }, note: `each site alone, SGD ${SGD_LR} cosine`, learningRate: SGD_LR },
};

/**
 * The client learning rate and local steps a configuration runs with, when it sets them: its own fields, or
 * training.learningRate / training.localSteps in its overrides (run 3's entries); the driver's flags otherwise.
 */
export function configTraining(c: QualityConfig): { learningRate?: number; localSteps?: number } {
  const t = (c.overrides.training ?? {}) as { learningRate?: number; localSteps?: number };
  const learningRate = c.learningRate ?? t.learningRate;
  const localSteps = c.localSteps ?? t.localSteps;
  return { ...(learningRate !== undefined ? { learningRate } : {}), ...(localSteps !== undefined ? { localSteps } : {}) };
}

/** The overrides a cell applies: without training.learningRate/localSteps, which the cell's own values carry. */
export function cellOverrides(c: QualityConfig): Record<string, unknown> {
  const { training, ...rest } = c.overrides as { training?: Record<string, unknown> };
  if (!training) return rest;
  const { learningRate: _lr, localSteps: _steps, ...t } = training;
  return { ...rest, training: t };
}

// SCAFFOLD (coordinator/strategy/scaffold.ts): control variates against client drift, the suspected cause of the
// gap under label skew (groups stays near 70% whatever the step count, run 6). The client recipe of the best cells
// at each step count (AdamW 0.002 cosine: run 6's `fedavg-cos-k50` / `fedprox-cos-k50` at 50 local steps, run 3's
// `fedavg-cos` / `fedprox-0.1` at 10), η_g = 1 and every site in every round (population 0: |S|/N = 1), so the
// difference is the control variates alone. Client SGD is not tried (dropped from the search after run 5).
export const SCAFFOLD_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  'scaffold-cos-k50': {
    mode: 'federated',
    overrides: { strategy: { name: 'scaffold' }, training: { schedule: 'cosine' } },
    note: 'SCAFFOLD η_g 1, 50 local steps, AdamW 0.002 cosine',
    localSteps: 50,
  },
  'scaffold-cos': {
    mode: 'federated',
    overrides: { strategy: { name: 'scaffold' }, training: { schedule: 'cosine' } },
    note: 'SCAFFOLD η_g 1, AdamW 0.002 cosine',
  },
};

export const QUALITY_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  centralized: { mode: 'centralized', overrides: {}, note: 'all training data at one site, same total steps' },
  local: { mode: 'local', overrides: {}, note: 'each site trains alone' },
  fedavg: { mode: 'federated', overrides: {}, note: 'FedAvg (A and B averaged separately)' },
  fedavgm: { mode: 'federated', overrides: { strategy: { name: 'fedavgm' } }, note: 'FedAvg with server momentum' },
  fedadam: { mode: 'federated', overrides: { strategy: { name: 'fedadam' } }, note: 'FedAdam (Reddi et al. 2021)' },
  fedprox: { mode: 'federated', overrides: { training: { proximalMu: 0.01 } }, note: 'FedProx, mu 0.01' },
  ffa: { mode: 'federated', overrides: { lora: { aggregation: 'ffa' } }, note: 'FFA-LoRA (A frozen, B averaged: exact)' },
  'fedadam-ffa': {
    mode: 'federated',
    overrides: { strategy: { name: 'fedadam' }, lora: { aggregation: 'ffa' } },
    note: 'FedAdam + FFA-LoRA',
  },
  // Run 3: first tuning pass with the knobs that exist (client learning rate and its cosine schedule, local steps,
  // FedProx's mu, the server learning rates); each decays the client learning rate to 0 by round 30.
  'central-cos': { mode: 'centralized', overrides: { training: { schedule: 'cosine' } }, note: 'centralized, cosine client lr' },
  'fedavg-cos': { mode: 'federated', overrides: { training: { schedule: 'cosine' } }, note: 'FedAvg, cosine client lr' },
  'fedavg-lr1e3': {
    mode: 'federated',
    overrides: { training: { schedule: 'cosine', learningRate: 0.001 } },
    note: 'FedAvg, client lr 0.001 cosine',
  },
  'fedavg-s3': {
    mode: 'federated',
    overrides: { training: { schedule: 'cosine', localSteps: 3, learningRate: 0.004 } },
    note: 'FedAvg, 3 local steps at lr 0.004 cosine',
  },
  'fedprox-0.1': {
    mode: 'federated',
    overrides: { training: { schedule: 'cosine', proximalMu: 0.1 } },
    note: 'FedProx mu 0.1, cosine client lr',
  },
  'fedavgm-0.3': {
    mode: 'federated',
    overrides: { strategy: { name: 'fedavgm', serverLearningRate: 0.3, momentum: 0.9 }, training: { schedule: 'cosine' } },
    note: 'FedAvgM eta 0.3 beta 0.9, cosine client lr',
  },
  'fedadam-0.003': {
    mode: 'federated',
    overrides: { strategy: { name: 'fedadam', serverLearningRate: 0.003 }, training: { schedule: 'cosine' } },
    note: 'FedAdam eta 0.003, cosine client lr',
  },
  // Run 6: the same optimizer steps as the ceiling. The centralized cell runs N × localSteps steps a round while a
  // federated round averages N models of localSteps steps each, about localSteps steps of an N-times larger
  // batch: at 10 local steps FedAvg takes a fifth of the ceiling's steps. These give each site the ceiling's 50
  // (and 25), and a server rate above 1 (FedAvgM with β 0 is FedAvg with server learning rate η).
  'fedavg-cos-k25': {
    mode: 'federated',
    overrides: { training: { schedule: 'cosine' } },
    note: 'FedAvg, 25 local steps, cosine client lr',
    localSteps: 25,
  },
  'fedavg-cos-k50': {
    mode: 'federated',
    overrides: { training: { schedule: 'cosine' } },
    note: 'FedAvg, 50 local steps, cosine client lr',
    localSteps: 50,
  },
  'fedprox-cos-k50': {
    mode: 'federated',
    overrides: { training: { schedule: 'cosine', proximalMu: 0.1 } },
    note: 'FedProx mu 0.1, 50 local steps, cosine client lr',
    localSteps: 50,
  },
  'fedavg-eta2': {
    mode: 'federated',
    overrides: { strategy: { name: 'fedavgm', serverLearningRate: 2, momentum: 0 }, training: { schedule: 'cosine' } },
    note: 'FedAvg with server learning rate 2 (FedAvgM beta 0), cosine client lr',
  },
  'dp-eps8': dp(3.5),
  'dp-eps4': dp(6.4),
  'dp-eps1': dp(22),
  ...CLIENT_SGD_CONFIGS,
  ...SCAFFOLD_CONFIGS,
  ...RUN9_CONFIGS,
  ...RUN11_CONFIGS,
  ...RUN14_CONFIGS,
  ...RUN15_CONFIGS,
  ...RUN16_CONFIGS,
  ...RUN17_CONFIGS,
  ...RUN18_CONFIGS,
  ...RUN19_CONFIGS,
};

/** Plain-object deep merge (overrides win); arrays and non-objects replace. */
export function deepMerge(a: Readonly<Record<string, unknown>>, b: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const prev = out[k];
    out[k] = isPlainObject(prev) && isPlainObject(v) ? deepMerge(prev as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

function isPlainObject(x: unknown): boolean {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
