// What each message of the SecAgg round bench costs on the wire (bench/secagg-round.ts): every message serialised with
// fedtune.proto to count its exact protobuf payload bytes (gRPC/HTTP-2 framing excluded), and the upload as the
// coordinator's handler receives it (decoded from the wire, its chunks its own copies).
import * as protoLoader from '@grpc/proto-loader';
import { LOADER_OPTIONS, PROTO_PATH, DEFAULT_CHUNK_BYTES } from '../proto/load';
import { type SealedUpload } from '../proto/crypto/sealed-upload';
import { tensorFrames } from '../proto/tensor-stream';
import type { UploadFrame, UploadFrame__Output } from '../proto/generated/fedtune/v1/UploadFrame';
import { taskId, type RoundSetup } from './secagg-round-setup';

const svc = protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS)['fedtune.v1.Federation'] as protoLoader.ServiceDefinition;
export const ser = (method: string, dir: 'request' | 'response', msg: object): Buffer =>
  (dir === 'request' ? svc[method].requestSerialize : svc[method].responseSerialize)(msg);
export const taskEventBytes = (ev: object): number => ser('StreamTasks', 'response', ev).length;
const chunkFrameBytes = new Map<number, number>();

/** Protobuf bytes of a sealed upload: header frame, one frame per chunk, trailer. */
export function uploadBytes(header: UploadFrame, sealed: SealedUpload): number {
  let total = ser('UploadUpdate', 'request', header).length;
  for (const c of sealed.chunks) {
    if (!chunkFrameBytes.has(c.length)) chunkFrameBytes.set(c.length, ser('UploadUpdate', 'request', { chunk: Buffer.alloc(c.length) }).length);
    total += chunkFrameBytes.get(c.length)!;
  }
  return total + ser('UploadUpdate', 'request', { trailer: { chunk_count: sealed.chunks.length, sha256: sealed.envelope.ciphertext_sha256 } }).length;
}

/**
 * The chunks as the coordinator receives them: its own copies (gRPC allocates them on receipt, outside the
 * handler), so the client's buffers are garbage once sent, as in a separate client process.
 */
export const delivered = (chunks: readonly Buffer[]): Buffer[] => chunks.map((c) => Buffer.from(c));

/** The header as the coordinator's handler sees it (decoded from the wire). */
export const received = (header: UploadFrame): UploadFrame__Output =>
  svc.UploadUpdate.requestDeserialize(ser('UploadUpdate', 'request', header)) as UploadFrame__Output;

/** The task (without SecAgg settings) and the adapter download each selected client gets in either arm. */
export function taskAndDownloadBytes(s: RoundSetup, i: number): number {
  let total = taskEventBytes({ train: plainTask(s, i) });
  for (const f of tensorFrames(s.global, DEFAULT_CHUNK_BYTES)) {
    if (f.chunk) {
      if (!chunkFrameBytes.has(-f.chunk.length))
        chunkFrameBytes.set(-f.chunk.length, ser('DownloadAdapter', 'response', { chunk: Buffer.alloc(f.chunk.length) }).length);
      total += chunkFrameBytes.get(-f.chunk.length)!;
    } else total += ser('DownloadAdapter', 'response', f).length;
  }
  return total;
}

/** UploadResponse: the coordinator's answer to every accepted upload, in either arm. */
export const ackBytes = (s: RoundSetup, i: number): number =>
  ser('UploadUpdate', 'response', { task_id: taskId(s, i), round: 1, sha256: Buffer.alloc(32), duplicate: false }).length;

export const plainTask = (s: RoundSetup, i: number): object => ({
  task_id: taskId(s, i),
  round: 1,
  attempt: 0,
  base_version: 0,
  base_manifest_sha256: 'ab'.repeat(32),
  deadline_unix_ms: Date.now(),
  seed: s.seeds[i],
  config: { local_steps: 10, batch_size: 16, learning_rate: 1e-3, weight_decay: 0, max_seq_len: 96 },
});

/** Bytes the coordinator sends in either arm: every selected client's task and download, an ack per upload. */
export const commonBytes = (s: RoundSetup, uploaded: readonly number[]): number =>
  s.ids.reduce((t, _, i) => t + taskAndDownloadBytes(s, i), 0) + uploaded.reduce((t, i) => t + ackBytes(s, i), 0);
