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
  /** Deep-merged into the coordinator's config overrides. */
  readonly overrides: Readonly<Record<string, unknown>>;
  readonly note: string;
}

// Noise multipliers for ε ≈ 8, 4, 1 at δ = 1e-5 after 30 rounds with every site in every round (q = 1), from
// coordinator/privacy/accountant.ts: z = 3.5 → 7.98, z = 6.4 → 3.96, z = 22 → 1.01.
const dp = (noiseMultiplier: number): QualityConfig => ({
  mode: 'federated',
  overrides: { privacy: { enabled: true, clipNorm: 0.5, noiseMultiplier, delta: 1e-5 } },
  note: `DP-FedAvg, clip 0.5, noise multiplier ${noiseMultiplier}`,
});

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
  'dp-eps8': dp(3.5),
  'dp-eps4': dp(6.4),
  'dp-eps1': dp(22),
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
