// A site's report (ReportMetrics, ReportEvaluation) sent until the coordinator answers it. A connection that drops
// during the call leaves the site unsure whether the report landed; the coordinator answers the same report again
// with the same ack and counts it once (coordinator/report-digest.ts), so sending it again is safe, and without it
// the round would wait for that report until its deadline. Retried: the statuses a broken or missing connection
// gives in grpc-js (UNAVAILABLE; CANCELLED when the channel went away under the call), and the call's own deadline
// passing (below), with the client's backoff, for as long as the task is current (its signal: the coordinator moved
// past it, cancelled it, the session was lost), then once more to learn whether it had landed, and not once the
// client stops. Never retried: every answer of the coordinator itself (a refusal is final).
//
// Each call has a deadline (reportDeadlineMs). Without one, a call on a connection that went half-open (a peer or
// middlebox gone without a FIN or RST) waits until the connection is given up: the keepalive (keepalive.ts), or TCP's
// own retransmission timeout (minutes). A deadline is end to end, where a keepalive ping is answered by the nearest
// HTTP/2 peer (a proxy in front of the coordinator answers it even when its own upstream connection is dead).
// DEADLINE_EXCEEDED used to be final here, because a report without a call deadline only got it as the coordinator's
// "too late" (the task's deadline passed). It is retried now only when this call's own deadline has passed, so the
// coordinator's "too late", which comes before that, is still final. Sending the report again after our deadline is
// safe for the same reason as after a cut: the coordinator may have taken the first copy (the call only stopped
// waiting for its answer), and it acknowledges an identical repeat without counting it again.
import { status, type ServiceError } from '@grpc/grpc-js';
import { backoffDelay, sleep, type BackoffOptions } from './backoff';

/** What the client logs (warn) before each retry. */
export const REPORT_RESENT = 'report lost in transit; sending it again';

/**
 * A report call's deadline when the client sets none: a report is a few hundred bytes the coordinator answers in
 * milliseconds, so 20 s is far beyond a loaded coordinator's answer and far below a half-open connection's minutes.
 */
export const DEFAULT_REPORT_DEADLINE_MS = 20_000;
/** The report deadlines a client may set (ms): at least 1 s (a busy coordinator answers late), at most 10 min. */
export const REPORT_DEADLINE_RANGE = { min: 1_000, max: 600_000 } as const;

/** `ms` when it is a whole number of milliseconds within REPORT_DEADLINE_RANGE; a RangeError otherwise. */
export function checkReportDeadline(ms: number): number {
  const { min, max } = REPORT_DEADLINE_RANGE;
  if (!Number.isInteger(ms) || ms < min || ms > max) throw new RangeError(`reportDeadlineMs must be a whole number of ms in [${min}, ${max}]; got ${ms}`);
  return ms;
}

const TRANSPORT = new Set<number>([status.UNAVAILABLE, status.CANCELLED]);
/**
 * grpc-js fails a call with DEADLINE_EXCEEDED by its own timer, set for the deadline; a call whose failure comes no
 * earlier than this before the deadline is taken as having run out of time. A coordinator's "too late" that came just
 * before it is then sent once more: harmless, the coordinator answers that copy "too late" again, well before its
 * own deadline, and that answer is final.
 */
const DEADLINE_SLACK_MS = 1_000;

/** Whether a report call that failed with `e`, under `deadline` (ms since the epoch), may be sent again (the same bytes). */
export function reportRetryable(e: unknown, deadline = Infinity, now = Date.now()): boolean {
  const code = (e as Partial<ServiceError> | null)?.code;
  if (typeof code !== 'number') return false;
  return TRANSPORT.has(code) || (code === status.DEADLINE_EXCEEDED && now >= deadline - DEADLINE_SLACK_MS);
}

/** One report call, as grpc-js makes it, under `deadline`: `done` hears its error, or null once the coordinator took it. */
export type ReportCall = (deadline: Date, done: (err: ServiceError | null) => void) => unknown;
/** Told of each retry (number from 1, the wait before it, the failure), before the wait. */
export type RetryNote = (attempt: number, delayMs: number, e: Error) => void;
/** How a report is sent: the wait between retries, and each call's deadline (ms). */
export interface ReportPolicy {
  readonly backoff: BackoffOptions;
  readonly deadlineMs: number;
}

/**
 * Makes `call` until the coordinator answers it: resolves when it took the report, rejects with its refusal. A
 * transport failure or a call past its deadline is retried with backoff while the task is current; once `signal`
 * aborted (the coordinator moved past the task, or cancelled it, or the session was lost) one last call settles
 * whether the report had landed: the coordinator may have moved on because it did, and it acknowledges a repeat even
 * then. Not once `stopped()`: the client's channel is closing. Then it rejects with the last failure.
 */
export async function sendReport(call: ReportCall, policy: ReportPolicy, signal: AbortSignal, stopped: () => boolean, onRetry?: RetryNote): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    const last = signal.aborted;
    const deadline = Date.now() + policy.deadlineMs;
    try {
      return await new Promise<void>((resolve, reject) => void call(new Date(deadline), (err) => (err ? reject(err) : resolve())));
    } catch (e) {
      if (!reportRetryable(e, deadline) || last || stopped()) throw e;
      const delay = signal.aborted ? 0 : backoffDelay(attempt, policy.backoff);
      onRetry?.(attempt + 1, delay, e as Error);
      await sleep(delay, signal);
      if (stopped()) throw e;
    }
  }
}
