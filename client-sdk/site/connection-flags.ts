// A site command's connection flags (`fedtune-site client --keepalive-ms --keepalive-timeout-ms --report-deadline-ms`):
// how the site finds a half-open connection to the coordinator (../keepalive.ts) and how long one report call may
// take before it is sent again (../report-retry.ts). FederationClient's options of the same names, checked here
// against the SDK's own bounds so that a bad value fails before any model loads, with the flag named.
import { keepaliveChannelOptions, type KeepaliveOptions } from '../keepalive';
import { checkReportDeadline } from '../report-retry';

/** How the site finds a half-open connection and how long a report call may take: FederationClient's options. */
export interface ConnectionOptions {
  readonly keepalive?: Partial<KeepaliveOptions>;
  readonly reportDeadlineMs?: number;
}

/** The --keepalive-ms, --keepalive-timeout-ms and --report-deadline-ms flags of a site command, as commander parses them. */
export interface ConnectionFlags {
  readonly keepaliveMs?: string;
  readonly keepaliveTimeoutMs?: string;
  readonly reportDeadlineMs?: string;
}

/**
 * The connection options from the flags, checked against the SDK's own bounds here, before any model loads; an
 * error names the flag. Only what is given is set: the rest stays the SDK's default.
 */
export function connectionFromFlags(f: ConnectionFlags): ConnectionOptions {
  const ms = (flag: string, v: string | undefined, check: (n: number) => unknown): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    try {
      check(n);
    } catch (e) {
      throw new Error(`${flag} ${JSON.stringify(v)}: ${(e as Error).message}`, { cause: e });
    }
    return n;
  };
  const timeMs = ms('--keepalive-ms', f.keepaliveMs, (n) => keepaliveChannelOptions({ timeMs: n }));
  const timeoutMs = ms('--keepalive-timeout-ms', f.keepaliveTimeoutMs, (n) => keepaliveChannelOptions({ timeoutMs: n }));
  const reportDeadlineMs = ms('--report-deadline-ms', f.reportDeadlineMs, checkReportDeadline);
  return {
    ...(timeMs !== undefined || timeoutMs !== undefined
      ? { keepalive: { ...(timeMs !== undefined ? { timeMs } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) } }
      : {}),
    ...(reportDeadlineMs !== undefined ? { reportDeadlineMs } : {}),
  };
}
