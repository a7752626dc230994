// What the round engine reports as a run progresses (the Coordinator re-emits the same events). Typed so a
// listener's argument is checked: `coordinator.on('roundCommitted', (e) => e.version)`.
import type { Participant } from './checkpoints/types';

/** The round state machine's phase; FINISHED, FAILED and STOPPED are final. */
export type RoundPhase = 'IDLE' | 'WAITING_FOR_CLIENTS' | 'SELECTING' | 'TRAINING' | 'AGGREGATING' | 'COMMITTING' | 'FINISHED' | 'FAILED' | 'STOPPED';

export interface RoundStarted {
  readonly round: number;
  readonly attempt: number;
  /** Selected client ids, sorted. */
  selected: string[];
  readonly baseVersion: number;
  readonly selectionSeed: number;
  /** Unix ms after which uploads for this attempt are refused. */
  readonly deadline: number;
}

export interface ClientSelected {
  readonly round: number;
  readonly attempt: number;
  readonly clientId: string;
  readonly taskId: string;
  readonly seed: number;
}

export interface UpdateAccepted {
  readonly round: number;
  readonly attempt: number;
  readonly clientId: string;
  readonly numExamples: number;
}

/** A selected site's metrics report was recorded (once per task: a repeat of it is not a new report). */
export interface MetricsReported {
  readonly round: number;
  readonly attempt: number;
  readonly clientId: string;
}

/** A selected site declined its task (DeclineTask): the attempt no longer waits for it. Once per task. */
export interface TaskDeclined {
  readonly round: number;
  readonly attempt: number;
  readonly clientId: string;
  /** DeclineReason: TRAINING_FAILED or SETTINGS_MISMATCH. */
  readonly reason: string;
}

export interface RoundCommitted {
  readonly version: number;
  readonly round: number;
  readonly attempt: number;
  participants: Participant[];
  metrics: Record<string, number>;
}

export interface RoundFailed {
  readonly round: number;
  readonly attempt: number;
  readonly reason: string;
  /** True when this was the last attempt allowed: the run stops with an error. */
  readonly final: boolean;
}

export interface RunFinishedEvent {
  readonly version: number;
  readonly reason: string;
}

export interface RoundEvents {
  phase: [RoundPhase];
  roundStarted: [RoundStarted];
  clientSelected: [ClientSelected];
  updateAccepted: [UpdateAccepted];
  metricsReported: [MetricsReported];
  taskDeclined: [TaskDeclined];
  roundCommitted: [RoundCommitted];
  roundFailed: [RoundFailed];
  runFinished: [RunFinishedEvent];
}

export const ROUND_EVENTS: readonly (keyof RoundEvents)[] = [
  'phase',
  'roundStarted',
  'clientSelected',
  'updateAccepted',
  'metricsReported',
  'taskDeclined',
  'roundCommitted',
  'roundFailed',
  'runFinished',
];
