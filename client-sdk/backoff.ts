// Reconnection delays: exponential growth with full jitter (AWS Architecture Blog, "Exponential Backoff
// and Jitter"), so many sites that lose the coordinator at once do not come back in lockstep.

export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 10_000, factor: 2 };

/** Delay before retry number `attempt` (0-based): uniform in [0, min(maxMs, initialMs · factor^attempt)]. */
export function backoffDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF, random: () => number = Math.random): number {
  const cap = Math.min(opts.maxMs, opts.initialMs * Math.pow(opts.factor, Math.max(0, attempt)));
  return Math.round(random() * cap);
}
