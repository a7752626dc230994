// The configurations the learning-quality benchmark compares (issue 11, bench/QUALITY.md). Each is a set of
// coordinator config overrides applied on top of the cell's common settings, plus how sites are formed:
//   federated    the usual N sites, one slice each;
//   centralized  one site holding every site's training data, N × localSteps a round (same total steps): the ceiling;
//   local        each site alone in its own one-site federation: what a site gets without federating.
// Configurations whose feature has not landed in this tree are refused by loadConfig (unknown key or strategy
// name), and the driver reports the cell as failed rather than silently running something else.

export type SiteMode = 'federated' | 'centralized' | 'local';

export interface QualityConfig {
  readonly mode: SiteMode;
  /** Deep-merged into the coordinator's config overrides (not training.learningRate/localSteps: see below). */
  readonly overrides: Readonly<Record<string, unknown>>;
  readonly note: string;
  /**
   * The client learning rate (the schedule's peak) and local steps of this configuration, replacing the driver's
   * --lr / --local-steps for its cells (centralized still multiplies the steps by the number of sites). The cell
   * records the values it ran with.
   */
  readonly learningRate?: number;
  readonly localSteps?: number;
}

// Noise multipliers for ε ≈ 8, 4, 1 at δ = 1e-5 after 30 rounds with every site in every round (q = 1), from
// coordinator/privacy/accountant.ts: z = 3.5 → 7.98, z = 6.4 → 3.96, z = 22 → 1.01.
const dp = (noiseMultiplier: number): QualityConfig => ({
  mode: 'federated',
  overrides: { privacy: { enabled: true, clipNorm: 0.5, noiseMultiplier, delta: 1e-5 } },
  note: `DP-FedAvg, clip 0.5, noise multiplier ${noiseMultiplier}`,
});

// Run 3 (bench/QUALITY.md, "Run 3 plan"): client SGD under the server optimisers, schedules, fewer local steps,
// a FedProx μ that binds. SGD's rate is calibrated on the task (SGD_LR, see the plan); AdamW's stays 0.002.
const SGD_LR = 0.1;
const sgd = (momentum = 0): Record<string, unknown> => ({ optimizer: 'sgd', momentum });
const cosine = (floorShare: number, lr: number): Record<string, unknown> => ({ schedule: 'cosine', minLearningRate: lr * floorShare });
const fedadam = (eta: number): Record<string, unknown> => ({ name: 'fedadam', serverLearningRate: eta, tau: 1e-3 });
const fedavgm = (eta: number): Record<string, unknown> => ({ name: 'fedavgm', serverLearningRate: eta, momentum: 0.9 });
const fed = (overrides: Record<string, unknown>, note: string, lr?: number, localSteps?: number): QualityConfig => ({
  mode: 'federated',
  overrides,
  note,
  ...(lr !== undefined ? { learningRate: lr } : {}),
  ...(localSteps !== undefined ? { localSteps } : {}),
});

export const RUN3_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  sgd: fed({ training: sgd() }, `client SGD lr ${SGD_LR}, FedAvg`, SGD_LR),
  'sgd-m9': fed({ training: sgd(0.9) }, 'client SGD lr 0.03 momentum 0.9, FedAvg', 0.03),
  'sgd-cos': fed({ training: { ...sgd(), ...cosine(0.1, 0.2) } }, 'client SGD lr 0.2 cosine to 0.02, FedAvg', 0.2),
  'sgd-k3': fed({ training: sgd() }, 'client SGD lr 0.2, 3 local steps, FedAvg', 0.2, 3),
  'sgd-avgm': fed({ training: sgd(), strategy: fedavgm(0.3) }, `client SGD lr ${SGD_LR}, FedAvgM η 0.3 β 0.9`, SGD_LR),
  'sgd-avgm1': fed({ training: sgd(), strategy: fedavgm(1) }, 'client SGD lr 0.05, FedAvgM η 1 β 0.9', 0.05),
  'sgd-adam': fed({ training: sgd(), strategy: fedadam(0.01) }, `client SGD lr ${SGD_LR}, FedAdam η 0.01 τ 1e-3`, SGD_LR),
  'sgd-adam3': fed({ training: sgd(), strategy: fedadam(0.03) }, `client SGD lr ${SGD_LR}, FedAdam η 0.03 τ 1e-3`, SGD_LR),
  'sgd-adam-cos': fed(
    { training: { ...sgd(), ...cosine(0.1, SGD_LR) }, strategy: fedadam(0.01) },
    `client SGD lr ${SGD_LR} cosine to ${SGD_LR / 10}, FedAdam η 0.01`,
    SGD_LR,
  ),
  'sgd-adam-ffa': fed({ training: sgd(), strategy: fedadam(0.01), lora: { aggregation: 'ffa' } }, `client SGD lr ${SGD_LR}, FedAdam η 0.01, FFA-LoRA`, SGD_LR),
  prox1: fed({ training: { proximalMu: 1 } }, 'FedProx μ 1 (AdamW lr 0.002)'),
  'adam-cos': fed({ training: cosine(0.1, 0.002) }, 'AdamW lr 0.002 cosine to 0.0002, FedAvg', 0.002),
  'adam-k3': fed({}, 'AdamW lr 0.002, 3 local steps, FedAvg', 0.002, 3),
  'centralized-sgd': { mode: 'centralized', overrides: { training: sgd() }, note: `centralized, SGD lr ${SGD_LR}`, learningRate: SGD_LR },
  'centralized-cos': {
    mode: 'centralized',
    overrides: { training: cosine(0.1, 0.002) },
    note: 'centralized, AdamW lr 0.002 cosine to 0.0002',
    learningRate: 0.002,
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
  'dp-eps8': dp(3.5),
  'dp-eps4': dp(6.4),
  'dp-eps1': dp(22),
  ...RUN3_CONFIGS,
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
