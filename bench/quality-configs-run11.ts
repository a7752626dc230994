// Run 11's configurations (bench/QUALITY.md, "Run 11"): what run 10 left open.
//
// 1. A 50-site federation that learns without noise, so DP can be judged against it. Run 9's `ffa-r2-n50`
//    (FFA rank 2, AdamW 0.002 cosine, 10 local steps) was still learning the answer's format at round 15 (held-out
//    loss 5.4 → 0.69, never under the 0.63 of the calibrated prior): 30 rounds of 10 Adam steps at 0.002, decayed,
//    move each B value at most ~0.4, and the mean of 50 label-skewed sites' normalised steps far less. Here: 5× the
//    rate, held constant (a client schedule that decays the signal while DP's noise per round stays z·C is the
//    wrong way round), and the server's step decayed instead (FedAvgM β 0, η 1, serverSchedule 'cosine': plain
//    FedAvg early, and the late rounds' noise annealed with the signal). 4 local steps keep a 50-site round at
//    200 site-steps (run 9's 500 made its cells the slowest). FFA against FedIT at the same rank: FFA trains only B
//    (A frozen and random), which learns slowly; DP runs either.
// 2. `groups` and the vote: every AdamW federation stays at the prior because the mean of per-site Adam-normalised
//    steps is a vote of labels. Client SGD at a rate small enough that a round stays linear (5 steps at 0.01: the
//    update is 0.01 × the sum of 5 gradients) makes the example-weighted mean of the updates the pooled gradient
//    (FedSGD); FedAdam with τ far below every update value then takes Adam's normalised step on it, as the
//    centralized ceiling does on its own batches. One server step a round, so many cheap rounds; the server rate
//    decays by cosine (serverSchedule), which run 5's `sgd-adam-t6` lacked (it learned to 83.3% and collapsed).
// 3. serverSchedule 'cosine' on the steadiest recipe (`prox-avgm8-k50`, run 10): does annealing the server's
//    step remove the late 1-1.7-point drops on Dirichlet 0.1?
import type { QualityConfig } from './quality-configs';

export const RUN11_SITES = 50;
const N50 = { lr: 0.01, steps: 4 } as const;
const serverCos = { name: 'fedavgm', serverLearningRate: 1, momentum: 0, serverSchedule: 'cosine' } as const;
const lora = (aggregation: 'ffa' | 'fedit') => ({ r: 2, alpha: 4, aggregation }) as const;

function n50(aggregation: 'ffa' | 'fedit', noise?: { z: number; eps: number }): QualityConfig {
  const tag = aggregation === 'ffa' ? 'FFA-LoRA' : 'FedIT';
  return {
    mode: 'federated',
    overrides: {
      lora: lora(aggregation),
      strategy: serverCos,
      ...(noise ? { privacy: { enabled: true, clipNorm: DP_CLIP, noiseMultiplier: noise.z, delta: 1e-5 } } : {}),
    },
    note: `${RUN11_SITES} sites, ${tag} rank 2, AdamW ${N50.lr} constant, ${N50.steps} local steps, FedAvg with cosine server rate${
      noise ? `, DP ε ≈ ${noise.eps} by round 20 (z ${noise.z}, C ${DP_CLIP})` : ' (no noise)'
    }`,
    learningRate: N50.lr,
    localSteps: N50.steps,
    clients: RUN11_SITES,
  };
}

/**
 * C: below the sites' update norms (4 Adam steps at 0.01 move each of the 9,216 B values up to 0.04, norm up to
 * ~4), so clipping keeps each site's direction and the sum's sensitivity is C.
 */
export const DP_CLIP = 0.5;
// Noise multipliers for 20 rounds, q = 1, δ 1e-5 (coordinator/privacy/accountant.ts): ε 7.97, 4.00, 1.00.
export const DP20 = { 8: 2.86, 4: 5.18, 1: 18.1 } as const;

const fedSgd = (eta: number): QualityConfig => ({
  mode: 'federated',
  overrides: {
    training: { optimizer: 'sgd', schedule: 'constant' },
    strategy: { name: 'fedadam', serverLearningRate: eta, tau: 1e-8, beta1: 0.9, beta2: 0.99, serverSchedule: 'cosine' },
  },
  note: `client SGD 0.01 constant, 5 local steps (a round is linear: the mean update is the pooled gradient), FedAdam η ${eta} τ 1e-8 decayed by cosine`,
  learningRate: 0.01,
  localSteps: 5,
});

// Run 12 (after run 11's cut cells: the 50-site cells managed 12-13 rounds of 20 in 395 s, FedIT ahead of FFA, the
// DP twins at the prior): the FedIT pair over 12 rounds, so that both finish inside one call, at a constant server
// rate (plain FedAvg: a cosine over 12 rounds would halve the mean step of a baseline that learns slowly already).
// z for ε ≈ 8 after 12 rounds, q = 1, δ 1e-5: 2.21 (ε 7.995).
export const DP12_EPS8 = 2.21;
function n50Plain(noise: boolean): QualityConfig {
  return {
    mode: 'federated',
    overrides: {
      lora: lora('fedit'),
      ...(noise ? { privacy: { enabled: true, clipNorm: DP_CLIP, noiseMultiplier: DP12_EPS8, delta: 1e-5 } } : {}),
    },
    note: `${RUN11_SITES} sites, FedIT rank 2, AdamW ${N50.lr} constant, ${N50.steps} local steps, FedAvg${
      noise ? `, DP ε ≈ 8 by round 12 (z ${DP12_EPS8}, C ${DP_CLIP})` : ' (no noise)'
    }`,
    learningRate: N50.lr,
    localSteps: N50.steps,
    clients: RUN11_SITES,
  };
}

export const RUN11_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  'n50-fedit2-c': n50Plain(false),
  'dp8-n50-fedit2-c': n50Plain(true),
  'n50-ffa2': n50('ffa'),
  'n50-fedit2': n50('fedit'),
  'dp8-n50-ffa2': n50('ffa', { z: DP20[8], eps: 8 }),
  'dp8-n50-fedit2': n50('fedit', { z: DP20[8], eps: 8 }),
  'dp4-n50-ffa2': n50('ffa', { z: DP20[4], eps: 4 }),
  'dp4-n50-fedit2': n50('fedit', { z: DP20[4], eps: 4 }),
  'dp1-n50-ffa2': n50('ffa', { z: DP20[1], eps: 1 }),
  'dp1-n50-fedit2': n50('fedit', { z: DP20[1], eps: 1 }),
  'fedsgd-adam1': fedSgd(0.01),
  'fedsgd-adam2': fedSgd(0.02),
  'fedsgd-adam05': fedSgd(0.005),
};
