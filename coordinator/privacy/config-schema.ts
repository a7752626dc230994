// The privacy section of the coordinator's configuration schema (DP-FedAvg, coordinator/strategy/dp.ts; the
// ledger and Poisson sampling, this folder), spread into config-schema.ts.
import { SAMPLING_MODES } from './sampling';

export const privacySchema = {
  privacy: {
    enabled: {
      doc: 'Client-level differential privacy (DP-FedAvg): each update clipped to privacy.clipNorm, sites weighted equally, Gaussian noise added once per round to the sum.',
      format: Boolean,
      default: false,
      env: 'FEDTUNE_PRIVACY_ENABLED',
      arg: 'privacy.enabled',
    },
    clipNorm: {
      doc: "C: the L2 norm every site update is clipped to (the sum's sensitivity to one site); under SecAgg it replaces secagg.clipNorm.",
      format: 'positive-number',
      default: 1,
      env: 'FEDTUNE_PRIVACY_CLIP_NORM',
      arg: 'privacy.clipNorm',
    },
    noiseMultiplier: {
      doc: "z: the noise added to each round's sum has standard deviation σ = z·C per value.",
      format: 'positive-number',
      default: 1,
      env: 'FEDTUNE_PRIVACY_NOISE_MULTIPLIER',
      arg: 'privacy.noiseMultiplier',
    },
    adaptiveClipping: {
      doc: "Adaptive clipping (Andrew et al. 2021): privacy.clipNorm is only the first round's C; each round every counted site's update adds a bit (its norm ≤ C), the coordinator noises their count with privacy.clipCountNoise and moves C toward privacy.clipTargetQuantile of the norms by a geometric step of privacy.clipLearningRate. The count's noise is paid from privacy.noiseMultiplier (ε unchanged; the update's noise multiplier becomes (z^-2 - (2σ_b)^-2)^-1/2). C is kept with each version. Under secagg.enabled each site appends its bit and its share of the count's noise to its masked vector: the coordinator sees only the noised count.",
      format: Boolean,
      default: false,
      env: 'FEDTUNE_PRIVACY_ADAPTIVE_CLIPPING',
      arg: 'privacy.adaptiveClipping',
    },
    clipTargetQuantile: {
      doc: 'γ: under privacy.adaptiveClipping, the fraction of updates C is meant to leave unclipped (0.5: C tracks the median update norm).',
      format: 'open-unit-interval',
      default: 0.5,
      env: 'FEDTUNE_PRIVACY_CLIP_TARGET_QUANTILE',
      arg: 'privacy.clipTargetQuantile',
    },
    clipLearningRate: {
      doc: 'η_C: under privacy.adaptiveClipping, C ← C·exp(-η_C·(b̄ - γ)) each round, b̄ the noised unclipped fraction (at most a factor e^η_C a round).',
      format: 'unit-fraction',
      default: 0.2,
      env: 'FEDTUNE_PRIVACY_CLIP_LEARNING_RATE',
      arg: 'privacy.clipLearningRate',
    },
    clipCountNoise: {
      doc: "σ_b: under privacy.adaptiveClipping, the standard deviation (in sites) of the noise on the round's count of unclipped updates; the paper advises the expected cohort / 20. Must exceed privacy.noiseMultiplier / 2.",
      format: 'positive-number',
      default: 2.5,
      env: 'FEDTUNE_PRIVACY_CLIP_COUNT_NOISE',
      arg: 'privacy.clipCountNoise',
    },
    delta: {
      doc: 'δ at which ε is reported in every manifest (well below 1/number of sites).',
      format: 'open-unit-interval',
      default: 1e-5,
      env: 'FEDTUNE_PRIVACY_DELTA',
      arg: 'privacy.delta',
    },
    targetEpsilon: {
      doc: "An ε at privacy.delta the run is to end within: when > 0 the coordinator derives z (privacy.noiseMultiplier, which must then not be set) as the smallest on a 0.001 grid keeping ε within it after rounds.total rounds at the run's q (privacy.samplingRate under Poisson sampling, else 1), and privacy.epsilonBudget defaults to it (0 = off: z is privacy.noiseMultiplier). `fedtune privacy plan` prints the z.",
      format: 'non-negative-number',
      default: 0,
      env: 'FEDTUNE_PRIVACY_TARGET_EPSILON',
      arg: 'privacy.targetEpsilon',
    },
    epsilonBudget: {
      doc: 'Stop the run before a round whose ε at privacy.delta would exceed this (0 = no budget).',
      format: 'non-negative-number',
      default: 0,
      env: 'FEDTUNE_PRIVACY_EPSILON_BUDGET',
      arg: 'privacy.epsilonBudget',
    },
    sampling: {
      doc: "How a round's sites are chosen under privacy.enabled. 'selection': rounds.clientsPerRound as usual; the manifest names the participants, so ε is charged at q = 1. 'poisson': each eligible connected site is in a round independently with probability privacy.samplingRate, drawn from a secret the coordinator keeps (<run.dir>/keys/privacy-sampling.json); the mean divides by the expected cohort q·N (N: sites connected at the draw), every round releases even when few or none were sampled, manifests name nobody, and ε is charged at q (amplification by subsampling). Not with secagg.enabled.",
      format: SAMPLING_MODES,
      default: 'selection',
      env: 'FEDTUNE_PRIVACY_SAMPLING',
      arg: 'privacy.sampling',
    },
    samplingRate: {
      doc: "q: each eligible site's probability of being in a round under privacy.sampling 'poisson' (1 under 'selection').",
      format: 'unit-fraction',
      default: 1,
      env: 'FEDTUNE_PRIVACY_SAMPLING_RATE',
      arg: 'privacy.samplingRate',
    },
    minPopulation: {
      doc: "Under privacy.sampling 'poisson', connected sites a round waits for before it draws; q × this must be at least rounds.minUpdates.",
      format: 'positive-int',
      default: 100,
      env: 'FEDTUNE_PRIVACY_MIN_POPULATION',
      arg: 'privacy.minPopulation',
    },
  },
} as const;
