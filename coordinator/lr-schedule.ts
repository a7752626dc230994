// The clients' learning rate, round by round: the coordinator computes it and sends it in each round's task plan
// (TrainingConfig.learning_rate), so every site of a round trains at the same rate and the manifest records it.
// Rounds count from 1. With W = training.warmupRounds, R = rounds.total, η = training.learningRate and
// η_min = training.minLearningRate:
//   warm-up, r ≤ W:       η·r/W                       (linear; round W reaches η)
//   'constant', r > W:    η
//   'cosine', r > W:      η_min + (η − η_min)·(1 + cos(π·(r − W − 1)/(R − W)))/2
// Cosine starts at η on the first round after warm-up and approaches η_min (a round is a step at the start of its
// interval, so the last round trains at slightly above η_min). float64 throughout; deterministic for a given
// configuration (the value is recorded in each manifest, so a run can be replayed whatever the platform's cos).
import type { TrainingSettings } from './config-types';

export type ScheduleSettings = Pick<TrainingSettings, 'learningRate' | 'schedule' | 'warmupRounds' | 'minLearningRate'>;

export function roundLearningRate(t: ScheduleSettings, roundsTotal: number, round: number): number {
  if (!(Number.isSafeInteger(round) && round >= 1)) throw new RangeError(`round ${round}: rounds count from 1`);
  const eta = t.learningRate;
  const w = t.warmupRounds;
  if (round <= w) return (eta * round) / w;
  if (t.schedule === 'constant') return eta;
  const span = roundsTotal - w;
  // Past the configured total (a run resumed with fewer rounds): the floor.
  if (span <= 0 || round > roundsTotal) return t.minLearningRate;
  const progress = (round - w - 1) / span;
  return t.minLearningRate + ((eta - t.minLearningRate) * (1 + Math.cos(Math.PI * progress))) / 2;
}
