// The door: what every request passes before a handler sees it, and what every refusal passes on its way out.
// In: each RPC's raw bytes are bounded (proto/limits.ts MAX_REQUEST_BYTES) and parsed here, so malformed
// protobuf is INVALID_ARGUMENT (grpc-js would answer INTERNAL "Error deserializing request"), and every field
// is checked against its bound before any work or logging. Out: a refusal's message is clipped and carries no
// local path; an unexpected error reaches the site only as a generic status (the details stay in the log).
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import type { FederationHandlers } from '../proto/generated/fedtune/v1/Federation';
import * as L from '../proto/limits';
import { ProtocolError } from '../proto/errors';

/** What a request that could not be parsed (or was too large to try) becomes; handlers never see it. */
export class Malformed {
  constructor(
    readonly code: status,
    readonly message: string,
  ) {}
}

/** A copy of `def` whose deserializers bound the bytes and never throw (they return Malformed instead). */
export function guardService(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(def)) {
    // An RPC without its own cap is a programming error (a new RPC added to the proto but not to limits.ts): refuse
    // to serve rather than guess a size that is either too small for it or an unchecked door.
    const cap = (L.MAX_REQUEST_BYTES as Record<string, number | undefined>)[name];
    if (cap === undefined) throw new Error(`RPC ${name} has no request size limit in proto/limits.ts MAX_REQUEST_BYTES`);
    const inner = m.requestDeserialize;
    out[name] = {
      ...m,
      requestDeserialize: (buf: Buffer): unknown => {
        if (buf.length > cap) return new Malformed(status.RESOURCE_EXHAUSTED, `${name} request of ${buf.length} bytes exceeds the limit of ${cap} bytes`);
        try {
          return inner(buf);
        } catch (e) {
          return new Malformed(status.INVALID_ARGUMENT, `malformed ${name} request: not a valid protobuf message (${clip((e as Error).message, 120)})`);
        }
      },
    };
  }
  return out as grpc.ServiceDefinition;
}

const VALIDATORS: { [K in keyof FederationHandlers]?: (r: never) => void } = {
  Hello: L.checkHello,
  Join: L.checkJoin,
  StreamTasks: L.checkStreamTasks,
  DownloadAdapter: L.checkDownload,
  ReportMetrics: L.checkReport,
  Leave: L.checkLeave,
  SecAggAdvertise: L.checkAdvertise,
  SecAggShareKeys: L.checkShareKeys,
  SecAggConsistency: L.checkConsistency,
  SecAggUnmask: L.checkUnmask,
  ReportEvaluation: L.checkEvaluationReport,
  DeclineTask: L.checkDecline,
};

/** Refuses a Malformed request, then checks its fields; throws the refusal. */
function admit(name: string, request: unknown): void {
  if (request instanceof Malformed) throw new ProtocolError(request.code, request.message);
  const check = (VALIDATORS as Record<string, ((r: unknown) => void) | undefined>)[name];
  check?.(request);
}

/** One upload frame through the door (client-streaming calls see their messages one by one). */
export function admitFrame(frame: unknown): void {
  if (frame instanceof Malformed) throw new ProtocolError(frame.code, frame.message);
  L.checkUploadFrame(frame as Parameters<typeof L.checkUploadFrame>[0]);
}

type Refuse = (e: unknown, what: string) => Partial<grpc.StatusObject>;

/** Wraps the unary and server-streaming handlers so that nothing unchecked reaches them. */
export function guardHandlers(h: FederationHandlers, refuse: Refuse): FederationHandlers {
  const out: Record<string, unknown> = { ...h };
  const unary = [
    'Hello',
    'Join',
    'ReportMetrics',
    'Leave',
    'SecAggAdvertise',
    'SecAggShareKeys',
    'SecAggConsistency',
    'SecAggUnmask',
    'ReportEvaluation',
    'DeclineTask',
  ] as const;
  for (const name of unary) {
    const inner = h[name] as grpc.handleUnaryCall<unknown, unknown>;
    out[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>): void => {
      try {
        admit(name, call.request);
      } catch (e) {
        return cb(refuse(e, name));
      }
      inner(call, cb);
    };
  }
  for (const name of ['StreamTasks', 'DownloadAdapter'] as const) {
    const inner = h[name] as grpc.handleServerStreamingCall<unknown, unknown>;
    out[name] = (call: grpc.ServerWritableStream<unknown, unknown>): void => {
      try {
        admit(name, call.request);
      } catch (e) {
        call.emit('error', refuse(e, name));
        return;
      }
      inner(call);
    };
  }
  return out as unknown as FederationHandlers;
}

/** At most `max` characters. */
export function clip(s: string, max = 512): string {
  return s.length <= max ? s : `${s.slice(0, max)}… (${s.length - max} more characters)`;
}

/** Absolute paths (two or more segments), and any of `known` (the run directory, the key file…), become <path>. */
export function scrubPaths(s: string, known: readonly string[] = []): string {
  let out = s;
  for (const k of known) if (k.length > 1) out = out.split(k).join('<path>');
  return out.replace(/(^|[\s'"`(=:])\/(?:[^\s'"`/)]+\/)+[^\s'"`/),:]*/g, '$1<path>');
}

/** File-system failures the site cannot fix and may outlast by retrying later. */
const TRANSIENT_ERRNO = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'EIO', 'EMFILE', 'ENFILE', 'EBUSY', 'ENOENT']);

export interface Refusal {
  readonly status: Partial<grpc.StatusObject>;
  /** What the coordinator's log records: the refusal, or for an internal failure its full (path-bearing) cause. */
  readonly logDetails: string;
  readonly internal: boolean;
}

/** Turns what a handler threw into the status a site receives (clipped, no paths) and what the log keeps. */
export function toRefusal(e: unknown, knownPaths: readonly string[] = []): Refusal {
  if (e instanceof ProtocolError) {
    const details = clip(scrubPaths(e.message, knownPaths));
    const st: Partial<grpc.StatusObject> = { code: e.code, details };
    if (e instanceof L.RetryLater) {
      const md = new grpc.Metadata();
      md.set(L.RETRY_AFTER_KEY, String(Math.round(e.retryAfterMs)));
      st.metadata = md;
    }
    return { status: st, logDetails: details, internal: false };
  }
  const cause = e instanceof Error ? e.message : String(e);
  const incident = randomBytes(4).toString('hex');
  const errno = (e as NodeJS.ErrnoException | undefined)?.code;
  const logDetails = clip(`incident ${incident}: ${errno ? `${errno}: ` : ''}${cause}`, 2048);
  if (errno && TRANSIENT_ERRNO.has(errno)) {
    return {
      status: { code: status.UNAVAILABLE, details: `the coordinator cannot write its state right now (incident ${incident}, in its log); try again later` },
      logDetails,
      internal: true,
    };
  }
  return { status: { code: status.INTERNAL, details: `internal error in the coordinator (incident ${incident}, in its log)` }, logDetails, internal: true };
}
