// A worker thread of a parallel download (download-ranges.ts): it receives one range of a version over its own
// connection, checks every frame as the one-stream download does, lands the bytes in the download's shared buffer
// and checks each piece against the SHA-256 the header listed (download-range-sink.ts). Receiving and hashing are
// what bound a download on one thread; K of these run them K times over. The calls go over the worker's own
// HTTP/2 client (download-range-h2.ts), which lands each DATA frame's bytes as they arrive, or over grpc-js for a
// channel that client does not make (ChannelSpec.transport).
//
// Nothing a range's peer sends is trusted more than the one-stream download trusts it, over either client; the
// main thread builds the tensors only after every range passed.
//
// A range call broken in transit is asked for again from its first unchecked piece, a few times with growing
// waits (download-retry.ts says which failures, and how often); what the peer sent wrong is never retried.
import { parentPort } from 'node:worker_threads';
import * as grpc from '@grpc/grpc-js';
import * as tls from 'node:tls';
import type { FederationClient as GrpcFederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import { status } from '../proto/errors';
import { loadFedtuneProto } from '../proto/load';
import { RANGE_ATTEMPTS, retryable, retryDelayMs } from './download-retry';
import { receiveH2 } from './download-range-h2';
import { RangeSink, rangeRequest, type RangeSpec } from './download-range-sink';
import { copyOutOfShared } from './shared-copy';

/** How a worker reaches the coordinator: everything a channel is made of, in a form that crosses threads. */
export interface ChannelSpec {
  readonly address: string;
  /** PEM material of tlsCredentials() (tls.ts); absent: insecure. */
  readonly tls?: { ca: Uint8Array | null; key: Uint8Array | null; cert: Uint8Array | null; serverNameOverride?: string };
  readonly options: Record<string, string | number>;
  /**
   * Which client makes the range calls: 'http2', the worker's own (download-range-h2.ts), for a channel it can make
   * as grpc-js would (h2Eligible); 'grpc-js' otherwise, or when asked.
   */
  readonly transport?: 'http2' | 'grpc-js';
}

export interface RangeJob extends RangeSpec {
  readonly op: 'range';
  readonly id: number;
  readonly channel: ChannelSpec;
  readonly token: string;
}

/**
 * Once the ranges holding them passed: copies tensors out of the shared buffer (`bytes` from `offset` each) into
 * `into`, the memory the main thread made for them (moved here, and moved back). A worker whose range is done
 * copies while the others still receive (download-copy-out.ts).
 */
export interface CopyJob {
  readonly op: 'copy';
  readonly id: number;
  readonly land: SharedArrayBuffer;
  readonly parts: readonly { offset: number; bytes: number }[];
  readonly into: readonly ArrayBuffer[];
}

export type ToRangeWorker = RangeJob | CopyJob | { op: 'cancel'; id: number };
export type FromRangeWorker = { id: number; ok: true; buffers?: ArrayBuffer[]; retries?: number } | { id: number; ok: false; code: number; message: string };

const clients = new Map<string, GrpcFederationClient>();

function clientFor(c: ChannelSpec): GrpcFederationClient {
  const key = JSON.stringify(c);
  let rpc = clients.get(key);
  if (rpc) return rpc;
  let creds = grpc.credentials.createInsecure();
  if (c.tls) {
    const o = c.tls.serverNameOverride;
    const verify: grpc.VerifyOptions = o ? { checkServerIdentity: (_h: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(o, cert) } : {};
    const buf = (b: Uint8Array | null): Buffer | null => (b ? Buffer.from(b) : null);
    creds = grpc.credentials.createSsl(buf(c.tls.ca), buf(c.tls.key), buf(c.tls.cert), verify);
  }
  rpc = new (loadFedtuneProto().fedtune.v1.Federation)(c.address, creds, c.options);
  clients.set(key, rpc);
  return rpc;
}

/** The cancel of each range call in flight. */
const calls = new Map<number, () => void>();
/** Ranges the main thread cancelled (never retried), and the wake-up of a range waiting to retry. */
const cancelled = new Set<number>();
/** Ranges this worker is receiving: a cancel for any other id (one that already finished) is dropped, not kept. */
const live = new Set<number>();
const waking = new Map<number, () => void>();

/** `j` from its piece `done` on: what is left to ask for after `done` of its pieces were checked. */
function remainder(j: RangeJob, done: number): RangeJob {
  const skip = done * j.pieceBytes;
  return { ...j, offset: j.offset + skip, length: j.length - skip, firstPiece: j.firstPiece + done, hashes: j.hashes.subarray(done * 32) };
}

/** Receives `j`, retrying a call broken in transit from its first unchecked piece; resolves with the retries made. */
async function receiveRetrying(j: RangeJob): Promise<number> {
  let done = 0;
  for (let attempt = 1; ; attempt++) {
    const checked = { pieces: 0 };
    try {
      await receive(done === 0 ? j : remainder(j, done), checked);
      return attempt - 1;
    } catch (e) {
      done += checked.pieces;
      if (cancelled.has(j.id) || attempt >= RANGE_ATTEMPTS || !retryable(e)) throw e;
      // Every piece arrived and matched its hash; only the trailer was lost. Nothing is left to ask for.
      if (done * j.pieceBytes >= j.length) return attempt - 1;
      await new Promise<void>((wake) => {
        const t = setTimeout(wake, retryDelayMs(attempt, e));
        waking.set(j.id, () => {
          clearTimeout(t);
          wake();
        });
      });
      waking.delete(j.id);
      if (cancelled.has(j.id)) throw e;
    }
  }
}

function receive(j: RangeJob, checked: { pieces: number }): Promise<void> {
  const sink = new RangeSink(j, checked);
  const cancelWith = (cancel: () => void): void => void calls.set(j.id, cancel);
  const done = j.channel.transport === 'http2' ? receiveH2(j.channel, j, sink, cancelWith) : receiveGrpc(j, sink, cancelWith);
  return done.finally(() => calls.delete(j.id));
}

/** The range over a grpc-js call: each decoded frame to the sink. */
function receiveGrpc(j: RangeJob, sink: RangeSink, onCall: (cancel: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const call = clientFor(j.channel).DownloadAdapter(rangeRequest(j));
    onCall(() => call.cancel());
    let settled = false;
    const fail = (e: unknown): void => {
      if (settled) return;
      settled = true;
      call.cancel();
      reject(e);
    };
    call.on('data', (f: TensorFrame__Output) => {
      try {
        sink.frame(f);
      } catch (e) {
        fail(e);
      }
    });
    call.on('error', fail);
    call.on('end', () => {
      try {
        sink.end();
      } catch (e) {
        return fail(e);
      }
      if (!settled) {
        settled = true;
        resolve();
      }
    });
  });
}

parentPort?.on('message', (m: ToRangeWorker) => {
  if (m.op === 'cancel') {
    if (!live.has(m.id)) return;
    cancelled.add(m.id);
    waking.get(m.id)?.();
    return void calls.get(m.id)?.();
  }
  if (m.op === 'copy') {
    const buffers = m.parts.map((p, i) => {
      const to = m.into[i]?.byteLength === p.bytes ? m.into[i] : new ArrayBuffer(p.bytes);
      copyOutOfShared(new Uint8Array(m.land, p.offset, p.bytes), new Uint8Array(to));
      return to;
    });
    return void parentPort!.postMessage({ id: m.id, ok: true, buffers } satisfies FromRangeWorker, buffers);
  }
  live.add(m.id);
  receiveRetrying(m)
    .finally(() => {
      live.delete(m.id);
      cancelled.delete(m.id);
    })
    .then(
      (retries) => parentPort!.postMessage({ id: m.id, ok: true, retries } satisfies FromRangeWorker),
      (e: unknown) => {
        const err = e as { code?: unknown; details?: unknown; message?: unknown };
        const code = typeof err.code === 'number' ? err.code : status.INTERNAL;
        const message = typeof err.details === 'string' && err.details ? err.details : String(err.message ?? e);
        parentPort!.postMessage({ id: m.id, ok: false, code, message } satisfies FromRangeWorker);
      },
    );
});
