// The site's tasks, run one at a time and kept across task streams. The client (client.ts) offers here what each
// task stream brings; a stream that drops takes nothing with it, so a long training, an evaluation or a SecAgg
// task's stages run on while the client reopens its stream, and its upload or report goes out when it ends (the
// coordinator waits for a site that is back within rounds.reconnectGraceMs). What a reopened stream brings again (the coordinator re-sends a site's
// open task when its stream attaches) is not run twice, unless the run it joined ended without delivering (a
// download or upload the drop broke: the coordinator still wants it); a task the coordinator has moved past is stopped.
import type { EvaluateTask__Output } from '../proto/generated/fedtune/v1/EvaluateTask';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';

export interface QueuedTask {
  readonly id: string;
  readonly kind: 'train' | 'evaluate';
  readonly round: number;
  /** Train tasks: the round's attempt. */
  readonly attempt: number;
  /** Runs the task to its end; never throws (a failed task is the client's to report). */
  run(signal: AbortSignal): Promise<void>;
}

export const queuedTrain = (t: TrainTask__Output, run: QueuedTask['run']): QueuedTask => ({
  id: t.task_id,
  kind: 'train',
  round: t.round,
  attempt: t.attempt,
  run,
});

export const queuedEvaluation = (t: EvaluateTask__Output, run: QueuedTask['run']): QueuedTask => ({
  id: t.task_id,
  kind: 'evaluate',
  round: t.round,
  attempt: 0,
  run,
});

/**
 * Where a task stands in the coordinator's order: round r's attempts in turn, then round r's evaluation, then
 * round r + 1. The coordinator opens the next one only once the last is closed, so a task that arrives later in
 * this order means the earlier one can no longer take an upload or a report.
 */
function position(t: QueuedTask): [number, number] {
  return [t.round, t.kind === 'evaluate' ? Infinity : t.attempt];
}

const before = (a: [number, number], b: [number, number]): boolean => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

export class TaskQueue {
  private tail: Promise<void> = Promise.resolve();
  /** Queued or running, by task id; `resent` while a re-send arrived during its run. */
  private readonly pending = new Map<string, { task: QueuedTask; abort: AbortController; resent: boolean }>();

  /** `delivered`: tasks done already (a re-send of one is skipped). */
  constructor(private readonly delivered: (taskId: string) => boolean) {}

  /**
   * Queues a task behind the others and returns true; false when it is queued or running already, or was delivered
   * (a re-send). A task later in the coordinator's order stops the earlier ones still queued or running.
   */
  offer(task: QueuedTask): boolean {
    const queued = this.pending.get(task.id);
    if (queued) queued.resent = true;
    if (queued || this.delivered(task.id)) return false;
    const at = position(task);
    const what = task.kind === 'evaluate' ? `the evaluation of round ${task.round}` : `round ${task.round} attempt ${task.attempt}`;
    this.abortWhere((p) => before(position(p), at), new Error(`superseded: the coordinator has moved on to ${what}`));
    const entry = { task, abort: new AbortController(), resent: false };
    this.pending.set(task.id, entry);
    this.tail = this.tail.then(async () => {
      try {
        do {
          entry.resent = false;
          await task.run(entry.abort.signal);
          // Re-sent while it ran, and not delivered: the coordinator still holds it open, so it runs again.
        } while (entry.resent && !entry.abort.signal.aborted && !this.delivered(task.id));
      } finally {
        this.pending.delete(task.id);
      }
    });
    return true;
  }

  /** The coordinator cancelled a task: running, it is stopped; queued, it starts stopped (and fails at once). */
  cancel(taskId: string, reason: Error): void {
    this.pending.get(taskId)?.abort.abort(reason);
  }

  /** Stops every queued or running task that `which` picks. */
  abortWhere(which: (t: QueuedTask) => boolean, reason: Error): void {
    for (const { task, abort } of this.pending.values()) if (which(task) && !abort.signal.aborted) abort.abort(reason);
  }

  /** Resolves once every task queued so far has ended. */
  idle(): Promise<void> {
    return this.tail;
  }
}
