// Which files of which versions a run keeps (checkpoints.keepServerState, keepAdapters, keepEvery): a pure rule,
// applied by prune.ts after each durable commit and by `fedtune checkpoints prune` to older runs.
//
// Every version keeps its manifest, its signature and adapter_config.json, so the chain verifies end to end. The
// latest version keeps everything (a restart resumes from its adapter and server state). The release and best
// versions keep everything too (what is shipped, and what `fedtune recover --to` would resume from). Besides those:
//  - the adapter (and under strategy.ema its average in ema/) of the newest keepAdapters versions and of every
//    keepEvery-th version (its number a multiple of keepEvery); 0 keeps every version's;
//  - the server optimiser's state of the newest keepServerState versions; 0 keeps every version's. A version
//    whose adapter goes loses its state with it: the state is of no use without the adapter it steps from.
import { ADAPTER_WEIGHTS } from './pruned-record';
import { SERVER_STATE_FILE } from './server-state';

export interface RetentionPolicy {
  /** Newest versions whose server-state.safetensors is kept (0: every version's). */
  readonly keepServerState: number;
  /** Newest versions whose adapter files are kept (0: every version's). */
  readonly keepAdapters: number;
  /** Also keep the adapter of every version whose number is a multiple of this (0: none besides the newest). */
  readonly keepEvery: number;
}

export const KEEP_ALL: RetentionPolicy = { keepServerState: 0, keepAdapters: 0, keepEvery: 0 };

export const keepsAll = (p: RetentionPolicy): boolean => p.keepServerState === 0 && p.keepAdapters === 0;

/** The policy in words, for a pruned.json's reason and the CLI. */
export function describePolicy(p: RetentionPolicy): string {
  const state = p.keepServerState === 0 ? 'every version' : `the newest ${p.keepServerState}`;
  const adapters = p.keepAdapters === 0 ? 'every version' : `the newest ${p.keepAdapters}${p.keepEvery > 0 ? ` and every ${p.keepEvery}th version` : ''}`;
  return `server state kept for ${state}, adapters for ${adapters}, and both for latest, release and best`;
}

/**
 * The prunable files (pruned-record.ts PRUNABLE) version `v` goes without under `p` once `latest` is committed;
 * `kept` are the versions that keep everything (latest, release, best). Only names the manifest lists are removed.
 */
export function filesToPrune(p: RetentionPolicy, v: number, latest: number, kept: ReadonlySet<number>): string[] {
  if (v >= latest || kept.has(v)) return [];
  const newest = (n: number): boolean => n === 0 || v > latest - n;
  const adapter = newest(p.keepAdapters) || (p.keepEvery > 0 && v % p.keepEvery === 0);
  if (!adapter) return [...ADAPTER_WEIGHTS, SERVER_STATE_FILE];
  return newest(p.keepServerState) ? [] : [SERVER_STATE_FILE];
}
