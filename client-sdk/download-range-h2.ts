// A range call made on node:http2 directly, speaking gRPC's wire protocol (download-grpc-frames.ts), in a range
// worker (download-range-worker.ts). grpc-js's client gathers each 1 MiB chunk message out of its DATA frames into
// a fresh buffer, pauses the stream and hands the message on one tick later, decodes it, and the worker then
// copies the chunk again into the download's memory: on the idle 16-core host that made the range workers the
// download's bound (280-360 ms of their CPU per 64 MiB). Here each DATA frame's bytes land in the download's
// memory and are hashed as they arrive.
//
// The call is the one grpc-js makes: POST /fedtune.v1.Federation/DownloadAdapter, content-type application/grpc,
// te: trailers, the DownloadRequest serialized by the service's own serializer (the session token travels in it;
// the SDK's range calls carry no metadata), over TLS with the channel's credentials when it has them. Its outcome
// is mapped as grpc-js maps it: grpc-status/grpc-message (percent-decoded) from the trailers, or the HTTP status,
// or the stream's reset code, and a connection that drops is UNAVAILABLE, so a range retries (download-retry.ts)
// and refuses exactly as before. Only channels it can make the same way take this path (h2Eligible); any other
// channel's ranges stay on grpc-js.
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { ProtocolError, status } from '../proto/errors';
import { loadFedtuneProto } from '../proto/load';
import { DEFAULT_MAX_RECEIVE_BYTES, GrpcFrameReader } from './download-grpc-frames';
import { rangeRequest, type RangeSink, type RangeSpec } from './download-range-sink';
import type { ChannelSpec } from './download-range-worker';

/** Channel options this client honours (the rest of what grpc-js could be told sends a range to grpc-js). */
const HONOURED = new Set([
  'grpc-node.flow_control_window',
  'grpc.max_receive_message_length',
  // Keepalive pings keep an idle channel's connection alive; a range call is never idle that long.
  'grpc.keepalive_time_ms',
  'grpc.keepalive_timeout_ms',
  'grpc.keepalive_permit_without_calls',
]);

/** host:port with a DNS name, an IPv4 address or a bracketed IPv6 one: what http2.connect reaches as grpc-js would. */
const ADDRESS = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** Whether this client can make `c`'s range calls as grpc-js would; if not, they go over grpc-js. */
export function h2Eligible(c: ChannelSpec): boolean {
  return ADDRESS.test(c.address) && Object.keys(c.options).every((k) => HONOURED.has(k));
}

/** A call's failure as grpc-js reports one (a ServiceError's code, details and trailing metadata). */
export class CallStatusError extends Error {
  readonly metadata: { get(key: string): string[] };

  constructor(
    readonly code: number,
    readonly details: string,
    trailers: http2.IncomingHttpHeaders = {},
  ) {
    super(`${code} ${STATUS_NAMES[code] ?? 'UNKNOWN'}: ${details}`);
    this.metadata = {
      get: (key: string): string[] => {
        const v = trailers[key];
        return v === undefined ? [] : Array.isArray(v) ? v : [String(v)];
      },
    };
  }
}

const STATUS_NAMES = Object.fromEntries(Object.entries(status).map(([k, v]) => [v, k])) as Record<number, string>;

/**
 * As grpc-js makes its sessions: node's memory bound per session (10 MB by default) off, since past it node refuses
 * new streams (grpc-js found node behaving badly near it); a range's memory is bounded by the window instead.
 */
const SESSION = { maxSessionMemory: Number.MAX_SAFE_INTEGER, maxSendHeaderBlockLength: Number.MAX_SAFE_INTEGER } as const;

const sessions = new Map<string, http2.ClientHttp2Session>();
const sessionErrors = new WeakMap<http2.ClientHttp2Session, string>();

function sessionFor(c: ChannelSpec): http2.ClientHttp2Session {
  const key = JSON.stringify(c);
  const have = sessions.get(key);
  if (have && !have.closed && !have.destroyed) return have;
  const window = Number(c.options['grpc-node.flow_control_window'] ?? 0);
  const settings: http2.Settings = window > 65_535 ? { initialWindowSize: window } : {};
  const m = ADDRESS.exec(c.address)!;
  const host = m[1].replace(/^\[|\]$/g, '');
  let s: http2.ClientHttp2Session;
  if (c.tls) {
    const t = c.tls;
    const buf = (b: Uint8Array | null): Buffer | undefined => (b ? Buffer.from(b) : undefined);
    const o = t.serverNameOverride;
    s = http2.connect(`https://${c.address}`, {
      ...SESSION,
      settings,
      ALPNProtocols: ['h2'],
      ca: buf(t.ca),
      key: buf(t.key),
      cert: buf(t.cert),
      // SNI takes a name, never an address (RFC 6066); the certificate is checked against the override when given.
      ...(o ? { servername: o } : net.isIP(host) ? {} : { servername: host }),
      ...(o ? { checkServerIdentity: (_h: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(o, cert) } : {}),
    });
  } else s = http2.connect(`http://${c.address}`, { ...SESSION, settings });
  if (window > 65_535) s.once('connect', () => s.setLocalWindowSize(window));
  // Each stream reports its own failure; the session's error code (ECONNREFUSED…, never a path) names a lost connection.
  s.on('error', (e: NodeJS.ErrnoException) => sessionErrors.set(s, typeof e.code === 'string' ? e.code : 'error'));
  const drop = (): void => {
    if (sessions.get(key) === s) sessions.delete(key);
  };
  s.once('close', drop);
  s.once('goaway', drop);
  s.unref();
  sessions.set(key, s);
  return s;
}

const method = (): ReturnType<typeof loadFedtuneProto>['fedtune']['v1']['Federation']['service']['DownloadAdapter'] =>
  loadFedtuneProto().fedtune.v1.Federation.service.DownloadAdapter;

const asError = (e: unknown): Error => (e instanceof Error ? e : new Error(String(e)));

/** grpc-js's mapping of an HTTP status other than 200 (the server answered, but not as gRPC). */
function httpStatusError(code: number): CallStatusError {
  const map: Record<number, number> = { 400: status.INTERNAL, 401: status.UNAUTHENTICATED, 403: status.PERMISSION_DENIED, 404: status.UNIMPLEMENTED };
  const c = map[code] ?? ([429, 502, 503, 504].includes(code) ? status.UNAVAILABLE : status.UNKNOWN);
  return new CallStatusError(c, `Received HTTP status code ${code}`);
}

/** grpc-js's mapping of a stream reset without a gRPC status. */
function resetError(rst: number, dropped: boolean, lost?: string): CallStatusError {
  const k = http2.constants;
  if (dropped) return new CallStatusError(status.UNAVAILABLE, lost ? `Connection dropped (${lost})` : 'Connection dropped');
  if (rst === k.NGHTTP2_REFUSED_STREAM) return new CallStatusError(status.UNAVAILABLE, 'Stream refused by server');
  if (rst === k.NGHTTP2_CANCEL) return new CallStatusError(status.CANCELLED, 'Call cancelled');
  if (rst === k.NGHTTP2_ENHANCE_YOUR_CALM) return new CallStatusError(status.RESOURCE_EXHAUSTED, 'Bandwidth exhausted or memory limit exceeded');
  if (rst === k.NGHTTP2_INADEQUATE_SECURITY) return new CallStatusError(status.PERMISSION_DENIED, 'Protocol not secure enough');
  const why = rst === k.NGHTTP2_NO_ERROR ? ' (Call ended without gRPC status)' : rst === k.NGHTTP2_INTERNAL_ERROR ? ' (Internal server error)' : '';
  return new CallStatusError(status.INTERNAL, `Received RST_STREAM with code ${rst}${why}`);
}

/** The status a response's trailers (or trailers-only headers) carry; undefined when they carry none. */
function trailerStatus(h: http2.IncomingHttpHeaders): CallStatusError | 'ok' | undefined {
  const raw = h['grpc-status'];
  if (raw === undefined) return undefined;
  const code = Number(raw);
  if (code === status.OK) return 'ok';
  const msg = h['grpc-message'];
  let details = typeof msg === 'string' ? msg : '';
  try {
    details = decodeURI(details);
  } catch {
    // kept as sent, as grpc-js does
  }
  return new CallStatusError(Number.isInteger(code) && code > 0 && code <= 16 ? code : status.UNKNOWN, details, h);
}

/**
 * Makes range call `j` over HTTP/2 into `sink`; resolves when its stream ended with status OK and the sink took
 * its trailer. `onCall` receives the call's cancel (the main thread may cancel a range).
 */
export function receiveH2(c: ChannelSpec, j: RangeSpec & { token: string }, sink: RangeSink, onCall: (cancel: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const m = method();
    const body = m.requestSerialize(rangeRequest(j));
    const framed = Buffer.allocUnsafe(body.length + 5);
    framed[0] = 0;
    framed.writeUInt32BE(body.length, 1);
    body.copy(framed, 5);
    let session: http2.ClientHttp2Session;
    let req: http2.ClientHttp2Stream;
    try {
      session = sessionFor(c);
      req = session.request({
        ':method': 'POST',
        ':path': m.path,
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-accept-encoding': 'identity',
        'user-agent': 'fedtune-range/1 (node:http2)',
      });
    } catch (e) {
      return reject(new CallStatusError(status.UNAVAILABLE, `cannot open a range call: ${(e as Error).message}`));
    }
    const max = Number(c.options['grpc.max_receive_message_length'] ?? DEFAULT_MAX_RECEIVE_BYTES);
    const reader = new GrpcFrameReader(sink, m.responseDeserialize, max);
    let settled = false;
    let outcome: CallStatusError | 'ok' | undefined;
    let httpStatus = 0;
    let dropped = false;
    const finish = (e?: Error): void => {
      if (settled) return;
      settled = true;
      if (e !== undefined) {
        if (!req.closed) req.close(http2.constants.NGHTTP2_CANCEL);
        reject(e);
      } else resolve();
    };
    onCall(() => finish(new CallStatusError(status.CANCELLED, 'Cancelled on client')));
    const sessionGone = (): void => {
      dropped = true;
    };
    session.once('close', sessionGone);
    req.on('response', (h, flags) => {
      httpStatus = Number(h[':status']);
      // Trailers-only: a refusal before any message (grpc-status in the headers, the stream ended); without a
      // status, grpc-js maps the HTTP status (UNKNOWN for a 200).
      const ended = (flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0;
      if (ended || h['grpc-status'] !== undefined) outcome = trailerStatus(h) ?? httpStatusError(httpStatus);
      if (httpStatus !== 200 && outcome === undefined) return finish(httpStatusError(httpStatus));
      const type = h['content-type'];
      if (outcome === undefined && !(typeof type === 'string' && type.startsWith('application/grpc'))) {
        finish(new CallStatusError(status.UNKNOWN, `the coordinator answered with content-type ${JSON.stringify(String(type)).slice(0, 80)}`));
      }
    });
    req.on('data', (d: Buffer) => {
      if (settled || outcome !== undefined) return;
      try {
        reader.push(d);
      } catch (e) {
        finish(asError(e));
      }
    });
    req.on('trailers', (h: http2.IncomingHttpHeaders) => {
      outcome ??= trailerStatus(h) ?? new CallStatusError(status.UNKNOWN, 'No status information received', h);
    });
    req.on('error', () => undefined); // the close below says how it ended
    req.on('close', () => {
      session.off('close', sessionGone);
      if (settled) return;
      if (outcome instanceof CallStatusError) return finish(outcome);
      if (outcome === 'ok') {
        try {
          if (!reader.between) throw new ProtocolError(status.DATA_LOSS, 'download ended inside a message');
          sink.end();
          return finish();
        } catch (e) {
          return finish(asError(e));
        }
      }
      if (httpStatus !== 0 && httpStatus !== 200) return finish(httpStatusError(httpStatus));
      // No status: the stream was reset or its connection went away (grpc-js: UNAVAILABLE for a dropped one).
      finish(resetError(req.rstCode ?? http2.constants.NGHTTP2_NO_ERROR, dropped || session.destroyed, sessionErrors.get(session)));
    });
    req.end(framed);
  });
}
