// Aggregation as a small swappable interface (cf. Flower's Strategy): given the global adapter and the
// accepted updates of a round, produce the next global adapter. Implementations must be deterministic and
// independent of the order of `updates`.
import type { NamedTensor, TensorList } from '../../proto/tensors';

export interface ClientUpdate {
  readonly clientId: string;
  /** FedAvg weight: examples the client trained on this round. */
  readonly numExamples: number;
  /** Local adapter minus the global adapter the round started from; same layout as the global adapter. */
  readonly delta: TensorList;
}

export interface AggregationResult {
  readonly adapter: NamedTensor[];
  /** Normalised weight of each participant, keyed by client id (recorded in the manifest). */
  readonly weights: Record<string, number>;
}

export interface Strategy {
  readonly name: string;
  /** Largest |delta| value the strategy can aggregate; the service refuses larger ones at upload time. */
  readonly maxAbsDelta?: number;
  aggregate(global: TensorList, updates: readonly ClientUpdate[]): AggregationResult;
}
