// What every phase of a round (round-open.ts, round-collect.ts, round-commit.ts) reaches: the engine's
// dependencies, the round spool and the engine's shared switches. Defined here, not in rounds.ts, so the phase
// modules import downwards only (rounds.ts imports them; none imports rounds.ts).
import type { CoordinatorBoxSecret } from '../proto/crypto/sealed-upload';
import type { NamedTensor, TensorList } from '../proto/tensors';
import type { Checkpoint, CheckpointStore } from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import type { ClientRegistry } from './registry';
import type { RoundPhase } from './round-events';
import type { RoundSpool, SpooledRound } from './round-spool';
import { reopenSpooled, type ReopenedUpdate } from './spool-reopen';
import type { Strategy } from './strategy/strategy';
import { isSampled } from './privacy/sampling';

export type Evaluator = (adapter: TensorList, version: number) => Promise<Record<string, number>>;
export type LogFn = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface RoundEngineDeps {
  readonly config: CoordinatorConfig;
  readonly store: CheckpointStore;
  readonly strategy: Strategy;
  readonly registry: ClientRegistry;
  readonly initialAdapter: () => NamedTensor[] | Promise<NamedTensor[]>;
  readonly adapterConfig: Record<string, unknown>;
  readonly baseModel: { readonly name: string; readonly sha256: string };
  readonly evaluator?: Evaluator;
  /** Seeds decided outside the coordinator (e.g. the data split), recorded in every manifest. */
  readonly extraSeeds?: Record<string, number>;
  /** The coordinator's box key: reopens spooled updates after a restart. */
  readonly boxKey: CoordinatorBoxSecret;
  /** Whether a site's key is still enrolled; a revoked site's spooled or accepted update is dropped (default: all are). */
  readonly enrolled?: (name: string, publicKey: Uint8Array) => boolean;
  readonly log: LogFn;
}

/** Where the next attempt of a round starts: its number, failures so far, and what a crashed process left. */
export interface RoundResume {
  attempt: number;
  failed: number;
  spooled: SpooledRound | null;
}

/** The engine as its phases see it. */
export interface RoundContext {
  readonly d: RoundEngineDeps;
  readonly spool: RoundSpool;
  stopping(): boolean;
  setPhase(p: RoundPhase): void;
}

/**
 * Reopens one spooled update (read from disk now, not before: one at a time, so memory does not grow with the
 * number of spooled updates); null, logged, when it no longer counts for this round (spool-reopen.ts).
 */
export function reopenUpdate(ctx: RoundContext, round: number, file: string, base: Checkpoint, clientId: string): Promise<ReopenedUpdate | null> {
  return reopenSpooled(
    {
      spool: ctx.spool,
      boxKey: ctx.d.boxKey,
      maxUploadBytes: ctx.d.config.transport.maxUploadBytes,
      runId: ctx.d.config.run.id,
      enrolled: ctx.d.enrolled ?? (() => true),
      log: ctx.d.log,
      sampled: isSampled(ctx.d.config),
    },
    file,
    round,
    base,
    clientId,
  );
}
