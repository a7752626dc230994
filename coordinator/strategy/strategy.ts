// Aggregation as a small swappable interface (cf. Flower's Strategy), in two steps so that memory does not
// grow with the number of sites:
//   1. begin(global) opens a round's Aggregation; admit(update) checks an update (shape, finite, range, weight)
//      and reserves its place; add(update) folds it into a running weighted sum at once, in place, after
//      which the caller drops the update's plaintext.
//   2. aggregate(global, sum) turns a weighted sum into the next global adapter. The sum comes either from the
//      Aggregation (plain rounds) or from secure aggregation's unmasked sum (SecAgg rounds): one place decides
//      how a sum becomes an adapter, whichever workflow produced it.
//   A server optimiser (FedAvgM, FedAdam, … in this folder) also reads and replaces a ServerState: its
//   momentum or moments, saved with every committed version and restored from it, so a restart resumes exactly.
// Implementations must be deterministic and independent of the order in which updates arrive.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import type { AdaptiveClipRound } from '../privacy/adaptive-clip';

export interface ClientUpdate {
  readonly clientId: string;
  /** FedAvg weight: examples the client trained on this round. */
  readonly numExamples: number;
  /** Local adapter minus the global adapter the round started from; same layout as the global adapter. */
  readonly delta: TensorList;
}

/**
 * Σ w_k·q_k per tensor on a fixed-point grid (exact integers held in float64 or int32 arrays), with Σ w_k.
 * A tensor missing from `tensors` keeps its global value.
 */
export interface WeightedSum {
  readonly tensors: ReadonlyMap<string, ArrayLike<number>>;
  readonly totalWeight: number;
  /** Grid scale of the values: a sum entry s stands for s / scale. */
  readonly scale: number;
  /** Set when the sum already carries differential-privacy noise (SecAgg sites added their shares before masking). */
  readonly noised?: boolean;
  /**
   * σ of the Gaussian noise the sum carries, in the adapter's units (DP-FedAvg's z·C; set by DpStrategy for the
   * strategy it wraps), so a noise-aware optimiser can discount its variance (σ/totalWeight)² on the mean.
   */
  readonly noiseStd?: number;
  /** Under SecAgg with adaptive clipping: the sites' noised count of updates under the round's C (from the sum). */
  readonly noisedCount?: number;
}

/** Why an update was not admitted; the service answers it with INVALID_ARGUMENT. */
export class AdmissionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AdmissionError';
  }
}

/**
 * One update streaming into a round's running sum as its chunks are opened (plain rounds; stream-fold.ts). Its
 * plaintext bytes come in order through push() (any split), each value checked there; a strategy whose sum is
 * linear in the values (FedAvg and the server optimisers) folds them in at once, in place. One whose fold needs the
 * whole update first (DP-FedAvg: the clip factor depends on the update's norm) only checks them and sets
 * needsReplay after finish(): the caller feeds the same bytes again (read back from the spool) through replay()
 * once the update is accepted. An update that is not accepted after all is taken back exactly: abandon(), then the
 * same bytes again from the start through undo() until it returns true, then undone(). Integer sums make the
 * remainder bit for bit the sum without it.
 */
export interface UpdateFold {
  /**
   * `owned`: the caller will not read `bytes` again and its ArrayBuffer holds nothing anyone else reads, so it may
   * move to another thread (the coordinator's opened chunks); a refusal of such bytes may then come from a later
   * push(), from settle() or finish() (always the update's first bad value, as in order).
   */
  push(bytes: Uint8Array, owned?: boolean): void;
  /** Where chunks are folded off the calling thread: blocks until every one is folded; throws the update's refusal. */
  settle?(): void;
  /** As settle(), without blocking: undefined when nothing is in flight, else a promise (rejected with the refusal). */
  settled?(): Promise<void> | undefined;
  /** Every byte arrived (throws AdmissionError when some are missing). */
  finish(): void;
  readonly needsReplay: boolean;
  replay(bytes: Uint8Array): void;
  /** The update counts. */
  commit(): void;
  /** Values of the update in the sum now (what undo must take back). */
  readonly folded: number;
  /** The update will not count: its client id is free at once, its weight once undone(). */
  abandon(): void;
  /** Takes back folded values from the same bytes again; true once all are. */
  undo(bytes: Uint8Array): boolean;
  undone(): void;
}

/** One round's running aggregation (plain rounds). */
export interface Aggregation {
  /**
   * Opens the fold of an update whose values will stream in (the upload path): checks and reserves its client id
   * and weight (AdmissionError) before any value arrives.
   */
  open(clientId: string, numExamples: number): UpdateFold;
  /** Checks an update against the round (throws AdmissionError) and reserves its client id and weight. */
  admit(update: ClientUpdate): void;
  /** Gives back an admitted update's reservation (it was not accepted after all, e.g. the spool write failed). */
  release(clientId: string): void;
  /** Adds an admitted update into the running sum, in place; the caller may drop the update afterwards. */
  add(update: ClientUpdate): void;
  /** Updates added so far. */
  readonly count: number;
  /** The running sum (no copy: read it once the round closed). */
  sum(): WeightedSum;
  /** Normalised weight of each added update, keyed by client id (recorded in the manifest). */
  weights(): Record<string, number>;
}

/**
 * A server optimiser's state between rounds (momentum buffer, first and second moments), as float32 tensors named
 * `<kind>/<adapter tensor>`. A holder: `tensors` is the base version's state when aggregate() is called and the
 * state after this round's step when it returns (empty for a stateless strategy); the caller commits it with the
 * version the step produced. A Strategy that wraps another (a decorator) passes the holder through.
 */
export interface ServerState {
  tensors: readonly NamedTensor[];
  /** The round being aggregated (from 1): what a server learning-rate schedule reads (server-schedule.ts). */
  readonly round?: number;
  /** Set by DP-FedAvg's adaptive clipping (privacy.adaptiveClipping): the round's C and what it measured, for the manifest. */
  adaptiveClip?: AdaptiveClipRound;
}

export interface Strategy {
  readonly name: string;
  /** Largest |delta| value the strategy can aggregate; larger ones are refused at admission. */
  readonly maxAbsDelta: number;
  /** The hyper-parameters in effect (server learning rate, betas, tau, momentum), recorded in every manifest. */
  readonly hyperParameters?: Readonly<Record<string, number>>;
  /**
   * Opens a round over `global`, the round's base version: its values must not change until the round's
   * aggregate() (a committed version never does), which a strategy may read here already (FedAvg places them in a
   * threaded sum's memory: fold-close.ts). `state` is the base version's server state, read-only here: what a
   * strategy whose round depends on it reads (DP-FedAvg's adaptive clip norm, privacy/adaptive-clip.ts).
   */
  begin(global: TensorList, state?: ServerState): Aggregation;
  /**
   * The next global adapter from a weighted sum over global's layout. `state` carries a server optimiser's
   * state in and out (see ServerState); a stateful strategy refuses to run without it.
   */
  aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[];
  /**
   * Optional: aggregate()'s result, bit for bit, computed off the event loop, for a strategy whose close is heavy
   * (FLoRA's past its dense rank: coordinator/flora-close.ts). Where present, the round's close awaits it instead of
   * calling aggregate() (round-outcome.ts), so gRPC is served meanwhile; a rejection fails the close as a throw would.
   * `signal`, aborted when the coordinator stops: the work ends then, rejected (nothing of the round is committed).
   */
  aggregateOffThread?(global: TensorList, sum: WeightedSum, state?: ServerState, signal?: AbortSignal): Promise<NamedTensor[]>;
}
