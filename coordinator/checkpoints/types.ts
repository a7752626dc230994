// What a committed version is, and the store that keeps versions. The filesystem store (fs-store.ts) is the
// embedded default; the interface is small so object storage can implement it later.
import type { PieceList } from '../../proto/pieces';
import type { NamedTensor } from '../../proto/tensors';
import type { AdaptiveClipRound } from '../privacy/adaptive-clip';

export interface Participant {
  readonly clientId: string;
  readonly clientName: string;
  /** Examples the client trained on; null under secure aggregation (individual weights stay hidden). */
  readonly numExamples: number | null;
  /** Normalised FedAvg weight (sums to 1 over participants); null under secure aggregation. */
  readonly weight: number | null;
  /** Seed the client trained with this round. */
  readonly seed: number;
  readonly backend: string;
  readonly metrics: Record<string, number>;
  /** The LoRA rank the site trained, when below the adapter's (zero-padded to it); absent: the adapter's rank. */
  readonly loraRank?: number;
}

export interface Manifest {
  readonly format: 'fedtune.checkpoint/1';
  readonly runId: string;
  readonly version: number;
  /** null for version 0 (the initial adapter). */
  readonly parent: { readonly version: number; readonly manifestSha256: string } | null;
  /** Round that produced this version (0 for the initial adapter). */
  readonly round: number;
  readonly attempt: number;
  readonly createdAt: string;
  readonly strategy: string;
  readonly participants: readonly Participant[];
  /** Aggregated client metrics and server-side evaluation of this version. */
  readonly metrics: Record<string, number>;
  /** The full training configuration the run uses (coordinator config, minus secrets). */
  readonly config: Record<string, unknown>;
  /** Every seed: run, selection of this round, LoRA init, data split, per-client training seeds. */
  readonly seeds: Record<string, number | Record<string, number>>;
  readonly baseModel: { readonly name: string; readonly sha256: string };
  readonly protocolVersion: number;
  /** How the round was aggregated under SecAgg (absent for plain FedAvg rounds). */
  readonly secureAggregation?: SecureAggregationRecord;
  /** The server optimiser's hyper-parameters in effect (η, β…; absent for FedAvg and in older runs). */
  readonly serverOptimizer?: Readonly<Record<string, number>>;
  /**
   * What the round's sites were told to train with: its scheduled learning rate, FedProx μ and LoRA dropout
   * (rounds ≥ 1), and the local optimiser (absent in older runs, which all trained with AdamW) with SGD's momentum.
   */
  readonly clientTraining?: ClientTrainingRecord;
  /** Federated evaluation of this version by sites, before it was committed (absent when none ran). */
  readonly evaluation?: FederatedEvaluationRecord;
  /** The best version so far by earlyStopping.metric, this one included (absent until a version has the metric). */
  readonly best?: BestVersionRecord;
  /** Differential privacy of the run up to this version (absent when privacy.enabled is off). */
  readonly privacy?: PrivacyRecord;
  /** sha256 (hex) of every other file in the version directory. */
  readonly files: Record<string, string>;
  /**
   * SHA-256 of each piece of the adapter's download stream (proto/pieces.ts), so that a site can receive it over
   * several connections and check it on several threads; absent in versions committed before they existed, which
   * are downloaded whole.
   */
  readonly pieces?: PieceList;
}

/** One stretch of rounds with the same sampling rate and effective noise multiplier (the accountant's input). */
/** Manifest.clientTraining: the task plan's training settings that can change a site's update. */
export interface ClientTrainingRecord {
  readonly learningRate: number;
  readonly proximalMu: number;
  /** LoRA dropout (absent in runs from before the task plan carried it). */
  readonly loraDropout?: number;
  /** 'adamw' or 'sgd' (proto/model/client-optimizer.ts); absent in runs from before the choice existed. */
  readonly optimizer?: string;
  /** SGD's momentum (present with optimizer 'sgd'). */
  readonly momentum?: number;
}

export interface PrivacySegment {
  readonly samplingRate: number;
  readonly noiseMultiplier: number;
  readonly rounds: number;
}

/** DP-FedAvg's public record in each manifest (the noise itself is never recorded). */
export interface PrivacyRecord {
  readonly mechanism: 'dp-fedavg-gaussian';
  /** Who added this version's noise: the coordinator (plain rounds), the sites (SecAgg), or nobody (version 0). */
  readonly noiseAddedBy: 'coordinator' | 'sites' | 'none';
  /** C: each site's update clipped to this L2 norm; every site weighs 1. */
  readonly clipNorm: number;
  /** z as configured. */
  readonly noiseMultiplier: number;
  /** z this round actually had: under SecAgg, z·√(survivors/selected) when sites dropped out (0 for version 0). */
  readonly effectiveNoiseMultiplier: number;
  /**
   * Standard deviation of the noise in this round's sum, per value (effectiveNoiseMultiplier·C; under adaptive
   * clipping the update's share of it, adaptiveClipping.updateNoiseMultiplier·C).
   */
  readonly sigma: number;
  /** privacy.adaptiveClipping's round: C_t clipped to (also clipNorm above), the noised unclipped fraction, C_{t+1}. */
  readonly adaptiveClipping?: AdaptiveClipRound;
  /**
   * q this round was charged at: 1 when its participants are public (privacy.sampling 'selection'); the configured
   * rate for a Poisson-sampled round, whose manifest names nobody (privacy/sampling.ts).
   */
  readonly samplingRate: number;
  /** A Poisson-sampled round: q, the population N drawn from and the mean's fixed denominator q·N (no names, no sample size). */
  readonly sampling?: { readonly method: 'poisson'; readonly rate: number; readonly population: number; readonly denominator: number };
  /** Noised rounds so far, this one included. */
  readonly rounds: number;
  readonly delta: number;
  /** ε at delta spent so far (RDP accountant, coordinator/privacy/accountant.ts); null when unbounded. */
  readonly epsilon: number | null;
  /** The configured budget (0: none). */
  readonly epsilonBudget: number;
  /** Every round so far, grouped: what ε is computed from, and where a restarted coordinator resumes from. */
  readonly history: readonly PrivacySegment[];
}

/** A SecAgg round's public record: who was in the sum, who dropped, and the parameters the sum was made with. */
export interface SecureAggregationRecord {
  readonly sessionId: string;
  readonly graph: string;
  readonly threshold: number;
  readonly selected: readonly string[];
  /** Clients whose updates are in the sum (U3). */
  readonly survivors: readonly string[];
  /** Clients that shared keys but sent no masked input (their masks were removed). */
  readonly dropped: readonly string[];
  /** Σ of the survivors' weights min(n, cap)/cap: the only weight information the coordinator learns. */
  readonly totalWeight: number;
  readonly clipNorm: number;
  readonly weightCap: number;
  readonly maxClients: number;
}

/**
 * Sites' evaluation of a version on their validation splits: figures are the example-weighted means of the
 * reports (in client-id order). Individual reports are not recorded (under SecAgg they are the only per-site
 * figures the coordinator sees; the manifest keeps only the aggregate).
 */
export interface FederatedEvaluationRecord {
  readonly loss: number;
  /** Present when every counted report carried an accuracy. */
  readonly accuracy?: number;
  /** Σ of the counted reports' examples (the weights). */
  readonly examples: number;
  /** Sites whose reports were counted. */
  readonly sites: number;
  /** Sites asked to evaluate. */
  readonly selected: number;
}

/** Early stopping's view of the chain: the best version by `metric` so far, and evaluations without improvement since. */
export interface BestVersionRecord {
  readonly metric: string;
  readonly mode: 'min' | 'max';
  readonly version: number;
  readonly value: number;
  /** Versions carrying the metric committed since the best one without improving on it by more than minDelta. */
  readonly sinceBest: number;
  /**
   * earlyStopping.window (absent: 1): `value` is then the mean of the metric over that many versions carrying it,
   * and `version` the middle one of them.
   */
  readonly window?: number;
  /** Under a window: the last `window` figures of the metric (oldest first), the newest version's included. */
  readonly recent?: readonly { readonly version: number; readonly value: number }[];
}

/** What the coordinator hands the store to commit; the store adds hashes, parent link and files. */
export interface VersionInput {
  readonly adapter: readonly NamedTensor[];
  /** PEFT adapter_config.json contents. */
  readonly adapterConfig: Record<string, unknown>;
  readonly manifest: Omit<Manifest, 'format' | 'version' | 'parent' | 'files' | 'createdAt'>;
  /** The server optimiser's state after this version's step (server-state.safetensors); none or empty: no file. */
  readonly serverState?: readonly NamedTensor[];
}

export interface Checkpoint {
  readonly manifest: Manifest;
  /** sha256 (hex) of manifest.json as written; the next version's parent link. */
  readonly manifestSha256: string;
  readonly adapter: NamedTensor[];
  readonly adapterConfig: Record<string, unknown>;
  /** The server optimiser's state saved with this version (absent or [] when it has none). */
  readonly serverState?: NamedTensor[];
}

export interface CheckpointStore {
  /** The version the `latest` pointer names, verified against its hashes; null for an empty run. */
  latest(): Promise<Checkpoint | null>;
  /** Atomically writes the next version (latest + 1, or 0) and then moves `latest`. */
  commit(input: VersionInput): Promise<Checkpoint>;
  read(version: number): Promise<Checkpoint>;
  /** Manifests of all complete versions, oldest first. */
  list(): Promise<Manifest[]>;
}
