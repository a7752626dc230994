// Run 15's configurations (bench/QUALITY.md, "Run 15"): DP-FedAvg in the cross-device regime user-level DP is
// designed for, against the same configuration without noise.
//
// Run 12 put 50 sites in every round: the noise on the round's mean, z·C·√d / n, was 5.7 times the largest signal C
// at ε 8 (z 2.21, d 16,384, n 50). Three things change here, each from that arithmetic:
//   * Many small sites, a sampled cohort: the 5-site split's 4,624 training e-mails cut into N = 1,156 sites of 4
//     (bench/quality-cohort.ts), a Poisson cohort of m = 50 expected sites a round (q = m/N = 0.0433). Subsampling
//     amplification lets z stay small for the same ε, and the sum is divided by a fixed number (the slots, K), so
//     the noise on the mean is z·C/K per value.
//   * Fewer trained values: LoRA rank 1 on c_attn only, d = 4 layers × (128 + 384) = 2,048 (run 12: 16,384).
//   * C from measured update norms (clients.update_norm of the noiseless arm: RUN15_CLIP's comment).
// The noiseless arm (`xd-clip`) is the DP arm with the noise taken out: the same cohorts (same seed), clipping,
// equal weights, fixed denominator and server rate; its z is 1e-6 (the config refuses 0), σ = 1e-6·C on the sum, far
// below one value of the 2^-24 grid's useful resolution of the signal: noise-free in effect, ε not meaningful.
// `xd-plain` is ordinary FedAvg on the same population (example-weighted, no clipping, a fixed-size cohort of 50):
// the non-private federation as one would run it without DP.
import type { CohortSpec } from './quality-cohort';
import type { QualityConfig } from './quality-configs';

/** Population and cohort (bench/quality-cohort.ts). K = m + 6·√(m(1−q)): no round of any seed overflows it. */
export const XD_POISSON: CohortSpec = { sites: 1156, perSite: 4, cohort: 50, sampling: 'poisson', slots: 92 };
export const XD_FIXED: CohortSpec = { sites: 1156, perSite: 4, cohort: 50, sampling: 'fixed', slots: 50 };
export const RUN15_ROUNDS = 40;

/** The client recipe (tuned on the noiseless arm): AdamW, constant rate, a few epochs of the site's 4 e-mails. */
const CLIENT = { lr: 0.01, steps: 4 } as const;
const LORA = { r: 1, alpha: 2, targetModules: ['c_attn'], aggregation: 'fedit' } as const;

/**
 * C: at or below every site's update norm (measured: RUN15 comment in QUALITY.md), so every real member's clipped
 * update has norm C and carries its direction.
 */
export const RUN15_CLIP = 0.5;
/**
 * z for ε at δ 1e-5 after RUN15_ROUNDS rounds at q = 50/1156 (coordinator/privacy/accountant.ts through
 * sampledEpsilon): see RUN15_Z's values; ε at these z is checked by test/dpscale-cohort.test.ts.
 */
export const RUN15_Z = { 8: 0.629, 4: 0.839, 1: 1.593 } as const;

/** Server rate K/m: the mean of the K slots' updates (zeros for the empty ones) scaled to the expected cohort's. */
const SERVER = { name: 'fedavgm', serverLearningRate: XD_POISSON.slots / XD_POISSON.cohort, momentum: 0 } as const;

function xd(noise: number | undefined, eps?: number): QualityConfig {
  return {
    mode: 'federated',
    overrides: {
      lora: LORA,
      strategy: SERVER,
      privacy: { enabled: true, clipNorm: RUN15_CLIP, noiseMultiplier: noise ?? 1e-6, delta: 1e-5 },
    },
    note: `${XD_POISSON.sites} sites of ${XD_POISSON.perSite} e-mails, Poisson cohort q ${XD_POISSON.cohort}/${XD_POISSON.sites} over ${XD_POISSON.slots} slots, FedIT rank 1 c_attn (d 2,048), AdamW ${CLIENT.lr} × ${CLIENT.steps} steps, clip ${RUN15_CLIP}, equal weights, server rate K/m${
      noise ? `, DP ε ${eps} by round ${RUN15_ROUNDS} (z ${noise})` : ', no noise (z 1e-6)'
    }`,
    learningRate: CLIENT.lr,
    localSteps: CLIENT.steps,
    clients: XD_POISSON.slots,
    cohort: XD_POISSON,
  };
}

export const RUN15_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  'xd-clip': xd(undefined),
  'xd-dp8': xd(RUN15_Z[8], 8),
  'xd-dp4': xd(RUN15_Z[4], 4),
  'xd-dp1': xd(RUN15_Z[1], 1),
  'xd-plain': {
    mode: 'federated',
    overrides: { lora: LORA },
    note: `${XD_FIXED.sites} sites of ${XD_FIXED.perSite} e-mails, a fixed cohort of ${XD_FIXED.cohort} a round, FedIT rank 1 c_attn, AdamW ${CLIENT.lr} × ${CLIENT.steps} steps, FedAvg (no DP)`,
    learningRate: CLIENT.lr,
    localSteps: CLIENT.steps,
    clients: XD_FIXED.slots,
    cohort: XD_FIXED,
  },
};
