// A site's updates on the wire: sealed to the coordinator's X25519 key and signed with the site's identity
// (proto/crypto/sealed-upload.ts), then sent as one UploadUpdate stream with backpressure. A plain update is
// the float32 delta; under SecAgg it is the masked vector, one UINT32 tensor `secagg.masked`.
import type { FederationClient as GrpcFederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { TensorHeader } from '../proto/generated/fedtune/v1/TensorHeader';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import type { UploadResponse__Output } from '../proto/generated/fedtune/v1/UploadResponse';
import { loadFedtuneProto, PROTOCOL_VERSION } from '../proto/load';
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { checkUploadFrame, retryAfterOf } from '../proto/limits';
import { backoffDelay, hintedDelay, sleep, type BackoffOptions } from './backoff';
import { sealUpload, uploadBinding, type SealedChunk, type SealedUpload } from '../proto/crypto/sealed-upload';
import { sealUploadPipelined } from '../proto/crypto/seal-pipelined';
import { dataChunks, tensorHeader } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';

export interface SealContext {
  readonly token: string;
  readonly runId: string;
  readonly clientId: string;
  readonly coordinator: { readonly keyId: string; readonly boxPublicKey: Uint8Array };
  readonly identitySecretKey: Uint8Array;
  readonly chunkBytes: number;
}

/** The header frame and the sealed chunks of one upload; re-sending it resumes the same upload. */
export interface SealedFrames {
  readonly header: UploadFrame;
  readonly sealed: SealedUpload;
}

function frames(c: SealContext, t: TrainTask__Output, tensors: TensorHeader, plaintext: Iterable<Uint8Array>, numExamples: number): SealedFrames {
  const binding = uploadBinding(c.runId, c.clientId, t, numExamples);
  return withHeader(
    c,
    t,
    tensors,
    numExamples,
    sealUpload({ binding, tensors, plaintextChunks: plaintext, coordinator: c.coordinator, identitySecretKey: c.identitySecretKey }),
  );
}

/** As frames(), sealing a large upload on two threads (proto/crypto/seal-pipelined.ts): the same bytes, sooner. */
async function framesPipelined(
  c: SealContext,
  t: TrainTask__Output,
  tensors: TensorHeader,
  plaintext: Iterable<Uint8Array>,
  numExamples: number,
  minBytes?: number,
): Promise<SealedFrames> {
  const binding = uploadBinding(c.runId, c.clientId, t, numExamples);
  const sealed = await sealUploadPipelined({
    binding,
    tensors,
    plaintextChunks: plaintext,
    coordinator: c.coordinator,
    identitySecretKey: c.identitySecretKey,
    minBytes,
    frameHead: chunkFrameHead, // each chunk's whole wire message built on the sealing thread
  });
  return withHeader(c, t, tensors, numExamples, sealed);
}

function withHeader(c: SealContext, t: TrainTask__Output, tensors: TensorHeader, numExamples: number, sealed: SealedUpload): SealedFrames {
  const header: UploadFrame = {
    header: {
      protocol_version: PROTOCOL_VERSION,
      session_token: c.token,
      task_id: t.task_id,
      round: t.round,
      base_version: t.base_version,
      num_examples: numExamples,
      tensors,
      sealed: sealed.envelope,
    },
  };
  checkUploadFrame(header); // a layout the coordinator would refuse (too many tensors, a long name) fails here
  return { header, sealed };
}

export function sealDelta(c: SealContext, t: TrainTask__Output, delta: NamedTensor[], numExamples: number): SealedFrames {
  return frames(c, t, tensorHeader(delta, c.chunkBytes), dataChunks(delta, c.chunkBytes), numExamples);
}

/** sealDelta, a large delta sealed on two threads (the site's upload path); `minBytes` for tests. */
export function sealDeltaPipelined(c: SealContext, t: TrainTask__Output, delta: NamedTensor[], numExamples: number, minBytes?: number): Promise<SealedFrames> {
  return framesPipelined(c, t, tensorHeader(delta, c.chunkBytes), dataChunks(delta, c.chunkBytes), numExamples, minBytes);
}

/** A masked SecAgg vector as one UINT32 tensor and its chunks. */
function maskedStream(c: SealContext, y: Uint32Array): { tensors: TensorHeader; chunks: Buffer[] } {
  const bytes = Buffer.from(y.buffer, y.byteOffset, y.byteLength);
  const tensors: TensorHeader = {
    protocol_version: PROTOCOL_VERSION,
    tensors: [{ name: 'secagg.masked', dtype: 'UINT32', shape: [y.length] }],
    total_bytes: bytes.length,
    chunk_bytes: c.chunkBytes,
  };
  const chunks: Buffer[] = [];
  for (let off = 0; off < bytes.length; off += c.chunkBytes) chunks.push(bytes.subarray(off, off + c.chunkBytes));
  return { tensors, chunks };
}

/** A masked SecAgg vector; its weight is inside the vector, so the header's example count is 0. */
export function sealMasked(c: SealContext, t: TrainTask__Output, y: Uint32Array): SealedFrames {
  const m = maskedStream(c, y);
  return frames(c, t, m.tensors, m.chunks, 0);
}

/** sealMasked, a large vector sealed on two threads. */
export function sealMaskedPipelined(c: SealContext, t: TrainTask__Output, y: Uint32Array): Promise<SealedFrames> {
  const m = maskedStream(c, y);
  return framesPipelined(c, t, m.tensors, m.chunks, 0);
}

/** What sendSealed writes to its call: a frame, or a sealed chunk (sent as a `chunk` frame: ciphertext || tag). */
export type UploadMessage = UploadFrame | SealedChunk;

const uploadMethod = () => loadFedtuneProto().fedtune.v1.Federation.service.UploadUpdate;
let chunkKey: Buffer | undefined;

/**
 * Encodes an UploadUpdate message. A frame goes through the generated (protobufjs) serializer; a sealed chunk is
 * encoded as the frame `{ chunk: ciphertext || tag }` would be, byte for byte, with its two parts copied straight
 * into the message: the one copy protobufjs makes anyway, and no joined chunk before it (SealedUpload says why).
 * The field's key comes from the generated serializer itself (an empty chunk encodes as key, length 0).
 */
export function serializeUploadMessage(m: UploadMessage): Buffer {
  if (!('ciphertext' in m)) return uploadMethod().requestSerialize(m);
  if (m.wire) return m.wire; // built whole by the sealing thread (chunkFrameHead below), the same bytes
  const n = m.ciphertext.length + m.tag.length;
  const head = chunkFrameHead(n);
  return Buffer.concat([head, m.ciphertext, m.tag], head.length + n);
}

/** The bytes of the message `{ chunk: c }` before c, for a c of n bytes: the field's key, then n as a varint. */
export function chunkFrameHead(n: number): Buffer {
  const empty = (chunkKey ??= uploadMethod().requestSerialize({ chunk: Buffer.alloc(0) }));
  const key = empty.subarray(0, empty.length - 1);
  const head = Buffer.allocUnsafe(key.length + 5); // the key, then n as a varint (at most 5 bytes for 32 bits)
  let at = key.copy(head);
  let v = n;
  for (; v > 0x7f; v >>>= 7) head[at++] = (v & 0x7f) | 0x80;
  head[at++] = v;
  return head.subarray(0, at);
}

/** Header, chunks, trailer; waits for 'drain' when gRPC's buffer is full; stops once the coordinator answered. */
export function sendSealed(rpc: GrpcFederationClient, f: SealedFrames): Promise<void> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const m = uploadMethod();
    // The UploadUpdate call with the serializer above (the generated rpc.UploadUpdate would take frames only).
    const call = rpc.makeClientStreamRequest<UploadMessage, UploadResponse__Output>(m.path, serializeUploadMessage, m.responseDeserialize, (err) => {
      answered = true;
      // Stryker disable next-line all: equivalent: only frees a writer still awaiting 'drain' on a finished call; the promise has already settled.
      call.emit('drain'); // release a writer waiting on a call that is over
      if (err) reject(err);
      else resolve();
    });
    // Stryker disable all: no test reaches this: the writer throws only if grpc-js's write does.
    const writerFailed = (e: unknown): void => {
      call.cancel();
      reject(e);
    };
    // Stryker restore all
    void (async () => {
      const all: UploadMessage[] = [
        f.header,
        ...f.sealed.parts,
        { trailer: { chunk_count: f.sealed.parts.length, sha256: f.sealed.envelope.ciphertext_sha256 } },
      ];
      for (const msg of all) {
        if (answered) return; // refused early: the rest would go nowhere
        if (!call.write(msg)) await new Promise<void>((r) => call.once('drain', () => r()));
      }
      if (!answered) call.end();
    })().catch(writerFailed);
  });
}

/**
 * Sends a sealed upload; when the connection breaks it re-sends the same sealed bytes (the coordinator answers a
 * resumed upload it already accepted without counting it twice), up to 3 tries; a coordinator's retry hint
 * (RESOURCE_EXHAUSTED with retry-after) is waited out as told, up to 6 tries.
 */
export async function sendSealedRetrying(rpc: GrpcFederationClient, sealed: SealedFrames, backoff: BackoffOptions, stopped: () => boolean): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await sendSealed(rpc, sealed);
    } catch (e) {
      const code = (e as grpc.ServiceError).code;
      const hint = retryAfterOf(e as grpc.ServiceError); // the coordinator is busy: wait as told, a few times more
      if (attempt >= (hint !== undefined ? 5 : 2) || (code !== status.UNAVAILABLE && code !== status.CANCELLED && hint === undefined) || stopped()) throw e;
      await sleep(hint !== undefined ? hintedDelay(hint) : backoffDelay(attempt, backoff));
    }
  }
}
