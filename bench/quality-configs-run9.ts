// Run 9's configurations (bench/QUALITY.md, "Run 9"): what runs 6-8 left open, on the recipe that came closest
// (AdamW 0.002, cosine by round to 0, 50 local steps; FedProx μ 0.1 the best on Dirichlet 0.1).
//   - Late swings and a pick within 0.5 point: smooth the global trajectory (server momentum, FedAvgM η 0.5 β 0.5:
//     steady-state step = FedAvg's, each round's noise averaged with the last ones; η 0.2 β 0.8 averages longer),
//     or average more gradient samples per round at the same distance (100 local steps at half the rate).
//   - Dirichlet 0.1 still climbing at round 30: more progress per round (100 steps at 0.002; a server rate of 1.5
//     after 2 warm-up rounds, run 6's η 2 having helped on 0.1 but flip-flopped early on 0.5).
//   - groups (one label per site): a proximal term strong enough that each site settles where its label's pull
//     equals μ·drift; the mean drift is then the pooled gradient over μ (FedProx as an implicit proximal-point step).
//     μ 1 keeps that step at 1 (run 6's μ 0.1 flip-flopped round to round: a step of 10); μ 0.3 with 100 steps to
//     get there.
//   - DP at ε ≈ 8: noise on the mean is z·C/n per value against a signal of at most C/√d, so n = 50 sites and a
//     rank-2 FFA adapter (d 4× smaller than rank 8); the same federation without noise is the comparison.
import type { QualityConfig } from './quality-configs';

const COS = { schedule: 'cosine' } as const;
const prox = (mu: number, more: Record<string, unknown> = {}): Record<string, unknown> => ({ ...COS, proximalMu: mu, ...more });
const fedavgm = (eta: number, beta: number): Record<string, unknown> => ({ name: 'fedavgm', serverLearningRate: eta, momentum: beta });

// 50 sites, FFA-LoRA at rank 2, 10 local steps: the DP pair differs only in privacy.
const DP_SITES = 50;
const dpBase = { lora: { r: 2, alpha: 4, aggregation: 'ffa' }, training: COS } as const;

export const RUN9_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  'prox-avgm-k50': {
    mode: 'federated',
    overrides: { training: prox(0.1), strategy: fedavgm(0.5, 0.5) },
    note: 'FedProx μ 0.1, FedAvgM η 0.5 β 0.5, 50 local steps, cosine',
    localSteps: 50,
  },
  'prox-avgm8-k50': {
    mode: 'federated',
    overrides: { training: prox(0.1), strategy: fedavgm(0.2, 0.8) },
    note: 'FedProx μ 0.1, FedAvgM η 0.2 β 0.8, 50 local steps, cosine',
    localSteps: 50,
  },
  'prox-k100-lr1': {
    mode: 'federated',
    overrides: { training: prox(0.1) },
    note: 'FedProx μ 0.1, 100 local steps at 0.001, cosine',
    localSteps: 100,
    learningRate: 0.001,
  },
  'prox-k100': {
    mode: 'federated',
    overrides: { training: prox(0.1) },
    note: 'FedProx μ 0.1, 100 local steps at 0.002, cosine',
    localSteps: 100,
  },
  'prox-eta15-k50': {
    mode: 'federated',
    overrides: { training: prox(0.1, { warmupRounds: 2 }), strategy: fedavgm(1.5, 0) },
    note: 'FedProx μ 0.1, server rate 1.5 (FedAvgM β 0), 2 warm-up rounds, 50 local steps, cosine',
    localSteps: 50,
  },
  'prox1-k50': { mode: 'federated', overrides: { training: prox(1) }, note: 'FedProx μ 1, 50 local steps, cosine', localSteps: 50 },
  // μ 1 alone is, at the equilibrium, a pooled-gradient step of size 1: client SGD at lr 1, which runs 4-5 found too
  // slow on lora_A. FedAdam on the server then normalises that pooled step per value, as centralized Adam does;
  // τ 1e-6 so that lora_A's small drifts are normalised too.
  'prox1-adam-k50': {
    mode: 'federated',
    overrides: { training: prox(1), strategy: { name: 'fedadam', serverLearningRate: 0.01, tau: 1e-6 } },
    note: 'FedProx μ 1, FedAdam η 0.01 τ 1e-6, 50 local steps, cosine',
    localSteps: 50,
  },
  'prox03-k100': { mode: 'federated', overrides: { training: prox(0.3) }, note: 'FedProx μ 0.3, 100 local steps, cosine', localSteps: 100 },
  // Not yet measured (GPU budget): the server learning rate decayed by round (strategy.serverSchedule 'cosine') on
  // the steadiest recipe, and FedAdam, whose normalised steps only a server schedule anneals (run 5's FedAdam cell
  // learned, then collapsed).
  'prox-avgm8-k50-scos': {
    mode: 'federated',
    overrides: { training: prox(0.1), strategy: { ...fedavgm(0.2, 0.8), serverSchedule: 'cosine' } },
    note: 'FedProx μ 0.1, FedAvgM η 0.2 β 0.8 decayed by cosine, 50 local steps, cosine',
    localSteps: 50,
  },
  'fedadam-scos-k50': {
    mode: 'federated',
    overrides: { training: COS, strategy: { name: 'fedadam', serverLearningRate: 0.01, serverSchedule: 'cosine' } },
    note: 'FedAdam η 0.01 decayed by cosine, 50 local steps, cosine',
    localSteps: 50,
  },
  'ffa-r2-n50': {
    mode: 'federated',
    overrides: dpBase,
    note: `${DP_SITES} sites, FFA-LoRA rank 2, cosine, no noise (the DP cell's comparison)`,
    clients: DP_SITES,
  },
  'dp8-r2-n50': {
    mode: 'federated',
    // z 3.5 at q = 1 over 30 rounds: ε 7.98 at δ 1e-5 (coordinator/privacy/accountant.ts, as run 2's dp-eps8).
    overrides: { ...dpBase, privacy: { enabled: true, clipNorm: 1, noiseMultiplier: 3.5, delta: 1e-5 } },
    note: `DP-FedAvg ε ≈ 8 (z 3.5, C 1), ${DP_SITES} sites, FFA-LoRA rank 2, cosine`,
    clients: DP_SITES,
  },
};
