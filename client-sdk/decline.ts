// A site whose training fails tells the coordinator (DeclineTask), so the round stops waiting for it: without it
// the round waits out its deadline (rounds.deadlineMs, minutes to hours) for an update that will never come, every
// round the failure repeats. The site sends a reason code, never its error text, which may name its paths or data;
// the error itself stays in the site's own log. Sent like a report (report-retry.ts): again after a cut, since the
// coordinator answers a repeated decline with the same ack; a refusal (the task was cancelled meanwhile, or its update
// already began) is final and changes nothing. Best effort: a decline that fails leaves the deadline to end the wait.
import type { DeclineTaskRequest } from '../proto/generated/fedtune/v1/DeclineTaskRequest';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import { checkDecline } from '../proto/limits';

export type DeclineReasonName = 'TRAINING_FAILED' | 'SETTINGS_MISMATCH';

/**
 * The reason for a training error: SETTINGS_MISMATCH when the task asks for what the site's settings refuse (a
 * LoraMismatchError, sft/task-lora.ts: retrying cannot help), else TRAINING_FAILED.
 */
export function declineReason(e: unknown): DeclineReasonName {
  return e instanceof Error && e.name === 'LoraMismatchError' ? 'SETTINGS_MISMATCH' : 'TRAINING_FAILED';
}

export interface DeclineRequest extends DeclineTaskRequest {
  readonly task_id: string;
  readonly reason: DeclineReasonName;
}

/** The DeclineTask request for task `t` after training error `e`, checked against the wire's bounds. */
export function declineRequest(sessionToken: string, t: TrainTask__Output, e: unknown): DeclineRequest {
  const req = { session_token: sessionToken, task_id: t.task_id, round: t.round, reason: declineReason(e) };
  checkDecline(req);
  return req;
}

/** Logs how a decline `sent` (its call, sent as a report is) ended; never throws: the deadline still ends the wait. */
export function declined(
  req: DeclineRequest,
  sent: Promise<void>,
  log: (level: 'info' | 'warn', msg: string, fields: Record<string, unknown>) => void,
): Promise<void> {
  const [taskId, reason] = [req.task_id, req.reason];
  return sent.then(
    () => log('info', 'task declined', { taskId, reason }),
    (e: Error) => log('warn', 'could not decline the task', { taskId, reason, error: e.message }),
  );
}
