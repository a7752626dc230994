// How a site finds that its connection to the coordinator went half-open (the coordinator's host, or a middlebox on
// the way, gone without a FIN or RST): grpc-js's keepalive sends an HTTP/2 PING every `timeMs` while a call is open
// (the task stream always is) and drops the connection when no ack was read within `timeoutMs`; every call on it
// fails UNAVAILABLE, the task stream reopens (a new connection) while the task runs on, and a report in flight is
// sent again (report-retry.ts). So a half-open connection is found within timeMs + timeoutMs: 35 s by default.
//
// Why not shorter: keepalive judges a connection dead when no ack was *read* in time, but a site's thread can be
// busy training or evaluating (sync tensor work; the trainer yields between steps, not within one) and, on a loaded
// box, not read its socket for tens of seconds; the ack then sits unread when the timer fires (timers run before
// I/O) and grpc-js drops a healthy connection, ending the task stream of every site on the channel (grpc-js shares
// it). Seen in e2e at load 11-13 on 2 cores with a 20 s timeout ("Ping timeout passed without response", the ack
// read 29 ms later); the SDK then waited 120 s, which left a half-open connection holding a report or a task stream
// for 150 s. 25 s is above that stall, and a healthy connection dropped by one costs little since
// rounds.reconnectGraceMs: the stream is back at once under the same session and the task runs on.
//
// The coordinator (grpc-js's server) answers pings at any rate: it has no ping policy and never answers them with
// GOAWAY ENHANCE_YOUR_CALM (grpc-js 1.14; C-core's grpc.http2.min_ping_interval_without_data_ms and
// grpc.keepalive_permit_without_calls have no counterpart there). A proxy in front of it may police pings: allow one
// every timeMs. Pings are sent only while a call is open (grpc.keepalive_permit_without_calls stays 0).
import type * as grpc from '@grpc/grpc-js';

export interface KeepaliveOptions {
  /** A ping after this long without one, while a call is open (ms). */
  readonly timeMs: number;
  /** The connection is dropped when a ping's ack was not read within this (ms); longer than the trainer's longest stall. */
  readonly timeoutMs: number;
}

export const DEFAULT_KEEPALIVE: KeepaliveOptions = { timeMs: 10_000, timeoutMs: 25_000 };
/** What a client may set (ms): a ping at most once a second, an ack waited for 1 s to 10 min. */
export const KEEPALIVE_RANGE = { timeMs: { min: 1_000, max: 3_600_000 }, timeoutMs: { min: 1_000, max: 600_000 } } as const;

/** grpc-js's channel options for `k` (the defaults for what it leaves out); a RangeError for a value out of range. */
export function keepaliveChannelOptions(k: Partial<KeepaliveOptions> = {}): grpc.ChannelOptions {
  const { timeMs, timeoutMs } = { ...DEFAULT_KEEPALIVE, ...k };
  for (const [name, v] of [
    ['timeMs', timeMs],
    ['timeoutMs', timeoutMs],
  ] as const) {
    const { min, max } = KEEPALIVE_RANGE[name];
    if (!Number.isInteger(v) || v < min || v > max) throw new RangeError(`keepalive.${name} must be a whole number of ms in [${min}, ${max}]; got ${v}`);
  }
  return { 'grpc.keepalive_time_ms': timeMs, 'grpc.keepalive_timeout_ms': timeoutMs };
}
