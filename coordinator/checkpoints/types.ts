// What a committed version is, and the store that keeps versions. The filesystem store (fs-store.ts) is the
// embedded default; the interface is small so object storage can implement it later.
import type { NamedTensor } from '../../proto/tensors';

export interface Participant {
  readonly clientId: string;
  readonly clientName: string;
  readonly numExamples: number;
  /** Normalised FedAvg weight (sums to 1 over participants). */
  readonly weight: number;
  /** Seed the client trained with this round. */
  readonly seed: number;
  readonly backend: string;
  readonly metrics: Record<string, number>;
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
  /** sha256 (hex) of every other file in the version directory. */
  readonly files: Record<string, string>;
}

/** What the coordinator hands the store to commit; the store adds hashes, parent link and files. */
export interface VersionInput {
  readonly adapter: readonly NamedTensor[];
  /** PEFT adapter_config.json contents. */
  readonly adapterConfig: Record<string, unknown>;
  readonly manifest: Omit<Manifest, 'format' | 'version' | 'parent' | 'files' | 'createdAt'>;
}

export interface Checkpoint {
  readonly manifest: Manifest;
  /** sha256 (hex) of manifest.json as written; the next version's parent link. */
  readonly manifestSha256: string;
  readonly adapter: NamedTensor[];
  readonly adapterConfig: Record<string, unknown>;
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
