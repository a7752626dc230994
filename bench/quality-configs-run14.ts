// Run 14's configurations (bench/QUALITY.md, "Run 14"): FedSGD under FedAdam with Adam's bias correction, built to
// be the centralized ceiling's optimiser on the pooled data, for `groups` and Dirichlet 0.1.
//
// Why it should reach the ceiling by construction. Each round every site takes ONE client SGD step of rate λ from
// the global adapter on a batch of its own data, so its update is −λ·g_k (g_k: its batch's gradient), and the
// example-weighted mean of the updates (FedAvg's weights are the sites' training-set sizes) is −λ times an unbiased
// estimate of the pooled data's gradient, from a batch stratified by site (5 × the per-site batch). FedAdam with
// strategy.biasCorrection steps w ← w + η·m̂/(√v̂ + τ) on it: with τ = λ·ε this is Adam (lr η, β 0.9 / 0.999, eps ε)
// on the pooled data — not a vote of per-site Adam steps, which is what keeps every AdamW federation on `groups` at
// the prior. The price is communication: one server step per round, so hundreds of rounds (the ceiling takes 1,500
// Adam steps of 16; a pooled batch of 160 needs fewer, bench/QUALITY.md says how many and why).
//
// The details that could break the equivalence, and how each is held:
// - Fixed-point aggregation (2^-24 grid, |value| < 128): λ = 1, so an update is the gradient itself: its values
//   (run 4's calibration: max 1.76 at the LoRA init, RMS 0.06 on lora_B, ~0.002 on lora_A) sit 3-7 orders above the grid and ~70× under
//   the bound. ε = 1e-8 (Adam's, the ceiling's tfjs Adam) is below the grid: a value the grid rounds to 0 does not
//   move, as a zero gradient does not under Adam.
// - Bias correction: without it (Reddi et al.'s Algorithm 2) the early steps are up to 6.5× Adam's at β2 0.999.
// - Weight decay 0 (the schema default, the ceiling's), LoRA dropout 0 (the harness sets it for every cell), no
//   gradient clipping (neither the engine nor tfjs clips unless asked).
// - Client schedule 'constant' (λ is a scale, not a step size); the server's η decays by cosine over the run, as
//   the ceiling's client rate does over its 30 rounds.
// - The float32 client step and subtraction (w − λ·g) − w round at ~2^-24·|w| (|w| < 0.1 on lora_A): below the grid.
import type { QualityConfig } from './quality-configs';

/** The client's SGD rate λ: the update is −λ·g. */
export const FEDSGD_CLIENT_RATE = 1;
/** Adam's ε (tfjs's and PyTorch's default, the ceiling's); FedAdam's τ is λ·ε. */
export const ADAM_EPS = 1e-8;

export function fedSgdAdam(eta: number): QualityConfig {
  return {
    mode: 'federated',
    overrides: {
      training: { optimizer: 'sgd', momentum: 0, schedule: 'constant', weightDecay: 0 },
      strategy: {
        name: 'fedadam',
        serverLearningRate: eta,
        beta1: 0.9,
        beta2: 0.999,
        tau: FEDSGD_CLIENT_RATE * ADAM_EPS,
        biasCorrection: true,
        serverSchedule: 'cosine',
      },
    },
    note: `FedSGD (1 client SGD step at ${FEDSGD_CLIENT_RATE} a round) under FedAdam with bias correction, η ${eta} decayed by cosine, β 0.9/0.999, τ ${FEDSGD_CLIENT_RATE * ADAM_EPS}: Adam on the pooled data`,
    learningRate: FEDSGD_CLIENT_RATE,
    localSteps: 1,
  };
}

export const RUN14_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  'fedsgd-adambc-5e3': fedSgdAdam(0.005),
  'fedsgd-adambc-3e3': fedSgdAdam(0.003),
};
