// Reconnection delays: exponential growth with full jitter (AWS Architecture Blog, "Exponential Backoff
// and Jitter"), so many sites that lose the coordinator at once do not come back in lockstep.

export interface BackoffOptions {
  /** Upper bound of the first delay. */
  readonly initialMs: number;
  /** No delay exceeds this. */
  readonly maxMs: number;
  /** Growth of the upper bound per failed attempt (≥ 1). */
  readonly factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 10_000, factor: 2 };

/** Delay before retry number `attempt` (0-based): uniform in [0, min(maxMs, initialMs · factor^attempt)]. */
export function backoffDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  if (!(opts.initialMs >= 0 && opts.maxMs >= 0 && opts.factor >= 1)) {
    throw new RangeError(`backoff needs initialMs ≥ 0, maxMs ≥ 0, factor ≥ 1; got ${JSON.stringify(opts)}`);
  }
  const cap = Math.min(opts.maxMs, opts.initialMs * Math.pow(opts.factor, Math.max(0, attempt)));
  return Math.round(random() * cap);
}

/** Resolves after `ms`, or at once when `signal` aborts, its timer cleared (a stopped client leaves none behind). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Delay before retrying a call the coordinator refused as overloaded (RESOURCE_EXHAUSTED with a retry-after-ms
 * hint): at least the hint, plus up to the hint again at random, so sites told to wait together do not all
 * come back at the same instant.
 */
export function hintedDelay(hintMs: number, random: () => number = Math.random): number {
  return Math.round(hintMs + random() * hintMs);
}
