// A site's report (ReportMetrics, ReportEvaluation) sent until the coordinator answers it. A connection that drops
// during the call leaves the site unsure whether the report landed; the coordinator answers the same report again
// with the same ack and counts it once (coordinator/report-digest.ts), so sending it again is safe, and without it
// the round would wait for that report until its deadline. Retried: the statuses a broken or missing connection
// gives in grpc-js (UNAVAILABLE; CANCELLED when the channel went away under the call), with the client's backoff,
// for as long as the task is current (its signal: the coordinator moved past it, cancelled it, the session was
// lost), then once more to learn whether it had landed, and not once the client stops. Never retried: every answer of the coordinator itself (a refusal is final), and
// DEADLINE_EXCEEDED, which a report (sent without a call deadline) only gets as the coordinator's "too late".
import { status, type ServiceError } from '@grpc/grpc-js';
import { backoffDelay, sleep, type BackoffOptions } from './backoff';

/** What the client logs (warn) before each retry. */
export const REPORT_RESENT = 'report lost in transit; sending it again';

const TRANSPORT = new Set<number>([status.UNAVAILABLE, status.CANCELLED]);

/** Whether a report call that failed with `e` may be sent again (the same bytes). */
export function reportRetryable(e: unknown): boolean {
  const code = (e as Partial<ServiceError> | null)?.code;
  return typeof code === 'number' && TRANSPORT.has(code);
}

/** One report call, as grpc-js makes it: `done` hears its error, or null once the coordinator took it. */
export type ReportCall = (done: (err: ServiceError | null) => void) => unknown;
/** Told of each retry (number from 1, the wait before it, the failure), before the wait. */
export type RetryNote = (attempt: number, delayMs: number, e: Error) => void;

/**
 * Makes `call` until the coordinator answers it: resolves when it took the report, rejects with its refusal. A
 * transport failure is retried with backoff while the task is current; once `signal` aborted (the coordinator moved
 * past the task, or cancelled it, or the session was lost) one last call settles whether the report had landed: the
 * coordinator may have moved on because it did, and it acknowledges a repeat even then. Not once `stopped()`: the
 * client's channel is closing. Then it rejects with the last failure.
 */
export async function sendReport(call: ReportCall, backoff: BackoffOptions, signal: AbortSignal, stopped: () => boolean, onRetry?: RetryNote): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const last = signal.aborted;
    try {
      return await new Promise<void>((resolve, reject) => void call((err) => (err ? reject(err) : resolve())));
    } catch (e) {
      if (!reportRetryable(e) || last || stopped()) throw e;
      const delay = signal.aborted ? 0 : backoffDelay(attempt, backoff);
      onRetry?.(attempt + 1, delay, e as Error);
      await sleep(delay, signal);
      if (stopped()) throw e;
    }
  }
}
