// When a range call of a parallel download (download-range-worker.ts) is tried again. A range that breaks in
// transit (the connection dropped, the stream reset, the coordinator restarting or briefly over its per-site bound)
// says nothing about the bytes: the worker asks again for what it has not yet checked, from its first unchecked
// piece, a bounded number of times with growing, jittered waits. What the range's peer got wrong is never retried:
// a piece that does not hash to its entry, a forged or misplaced frame, a stream that ends cleanly without its
// trailer (the worker's own ProtocolErrors), and every refusal of the request itself (bounds, session, version).
import { ProtocolError, status } from '../proto/errors';
import { retryAfterOf } from '../proto/limits';

/** Calls per range at most: the first and three more. */
export const RANGE_ATTEMPTS = 4;
/** The wait before the first retry, doubled each time, at most RETRY_MAX_MS (before jitter). */
export const RETRY_BASE_MS = 100;
export const RETRY_MAX_MS = 2000;
/** The longest wait a coordinator's retry hint can impose on a range. */
export const RETRY_HINT_MAX_MS = 10_000;

/** Statuses a broken transfer surfaces as in grpc-js (a reset stream is INTERNAL, a dropped connection UNAVAILABLE). */
const TRANSIENT = new Set<number>([status.UNAVAILABLE, status.INTERNAL, status.UNKNOWN, status.CANCELLED, status.DEADLINE_EXCEEDED, status.RESOURCE_EXHAUSTED]);

/** Whether a range call that failed with `e` (not cancelled by this site) may be asked for again. */
export function retryable(e: unknown): boolean {
  if (e instanceof ProtocolError) return false; // the worker's own refusal of what the peer sent
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'number' && TRANSIENT.has(code);
}

/** Milliseconds to wait before retry number `retry` (1, 2, …): the coordinator's hint if it gave one, else backoff with jitter. */
export function retryDelayMs(retry: number, e: unknown, random: () => number = Math.random): number {
  const hint = retryAfterOf(e as Parameters<typeof retryAfterOf>[0]);
  const base = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (retry - 1));
  return Math.max(Math.min(hint ?? 0, RETRY_HINT_MAX_MS), base * (0.5 + random() / 2));
}
