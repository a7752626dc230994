// What early stopping would have released in a quality cell (issue 11's goal: within 0.5 point of the best
// held-out accuracy seen), replayed on the cell's per-round federated validation figures (eval.loss,
// eval.accuracy: the sites' own validation splits, never the held-out test set) with the coordinator's own rule
// (coordinator/evaluation/early-stopping.ts), so the figure is what `earlyStopping.patience` would do.
import { nextBest, stopReason, type EarlyStoppingSettings } from '../coordinator/evaluation/early-stopping';
import type { RoundPoint } from './quality-cell';

// `release` is the coordinator's default (earlyStopping.patience 0: the run never stops early, and the release
// pointer names the version with the lowest validation loss); `loss` and `accuracy` stop after 5 versions without
// improvement, as runs 4-8 reported.
export const STOP_RULES = {
  loss: { metric: 'eval.loss', mode: 'min', patience: 5, minDelta: 0 },
  accuracy: { metric: 'eval.accuracy', mode: 'max', patience: 5, minDelta: 0 },
  release: { metric: 'eval.loss', mode: 'min', patience: 0, minDelta: 0 },
  // Run 19's release rule (quality-configs-run19.ts): validation accuracy, the mean of 5 evaluations naming the
  // middle one; and the same rule stopping the run after 5 evaluations without improvement.
  accuracyWindow: { metric: 'eval.accuracy', mode: 'max', patience: 0, minDelta: 0, window: 5 },
  accuracyWindowStop: { metric: 'eval.accuracy', mode: 'max', patience: 5, minDelta: 0, window: 5 },
} as const satisfies Record<string, EarlyStoppingSettings>;

export interface StopPick {
  /** The round whose version the run's best record names when it stops (or at the end). */
  readonly pickedRound: number;
  /** Its held-out accuracy. */
  readonly accuracy: number;
  /** Best held-out accuracy over the whole curve minus the pick's (≥ 0). */
  readonly gap: number;
  /** The round after which patience ran out; NaN when the run reached its last round first. */
  readonly stopRound: number;
}

/** The pick under `rule` on a curve whose points carry the rule's metric in `extra`; undefined when none does. */
export function earlyStoppingPick(points: readonly RoundPoint[], rule: EarlyStoppingSettings): StopPick | undefined {
  const trained = points.filter((p) => p.round >= 1).sort((a, b) => a.round - b.round);
  let best: ReturnType<typeof nextBest>;
  let stopRound = NaN;
  for (const p of trained) {
    // Versions and rounds coincide in a quality cell (one attempt per round, version r commits round r).
    best = nextBest(rule, best, p.round, p.extra);
    if (stopReason(rule, best) !== null) {
      stopRound = p.round;
      break;
    }
  }
  if (!best) return undefined;
  const picked = best.version;
  const accuracy = trained.find((p) => p.round === picked)!.accuracy;
  const bestSeen = Math.max(...trained.map((p) => p.accuracy).filter(Number.isFinite));
  return { pickedRound: picked, accuracy, gap: bestSeen - accuracy, stopRound };
}
