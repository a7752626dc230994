// The unsealed-upload baseline of the transport bench (issue 8's goal: sealed upload >= 80% of unsealed).
// The coordinator refuses unsealed uploads, so the baseline is a bench-only gRPC server serving the SAME
// UploadUpdate method definition (the same UploadFrame messages, chunk size and door: guardService + admitFrame)
// that does every step the coordinator's upload handler (coordinator/upload.ts) does per upload EXCEPT opening:
// the tensor stream decoded and checked (proto/tensor-stream.ts: header, layout, chunk sizes, total), each chunk
// streamed to a spool temporary (coordinator/spool-upload.ts, the same pause while the disk is behind) and folded
// into a fresh FedAvg running sum (values checked there), then the spool fsynced and renamed before the answer.
// With no seal, the stream's integrity is its trailer: SHA-256 of the plaintext, which the site computes as it
// sends and the server checks (what an unsealed download does). So the difference between the two arms is what
// sealing costs: the site's ChaCha20-Poly1305 + signature, the coordinator's envelope checks and opening. Both arms
// hash on their threads as the product does: the baseline in line, the sealed arm (64 MiB) on sealing threads
// beside the main thread (proto/crypto/seal-offload.ts), since its hash is part of the seal; the bench's figure in
// CPU time counts every thread.
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { FederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { UploadFrame, UploadFrame__Output } from '../proto/generated/fedtune/v1/UploadFrame';
import type { UploadResponse } from '../proto/generated/fedtune/v1/UploadResponse';
import { ProtocolError } from '../proto/errors';
import { checkLayout, tensorFrames, TensorStreamDecoder } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';
import { loadFedtuneProto, PROTOCOL_VERSION } from '../proto/load';
import { admitFrame, guardService } from '../coordinator/door';
import { SpoolUpload } from '../coordinator/spool-upload';
import { FedAvg } from '../coordinator/strategy/fedavg';
import type { Aggregation, UpdateFold } from '../coordinator/strategy/strategy';

const MAX_QUEUED_CHUNKS = 2; // as coordinator/upload.ts

export interface PlainUploadServer {
  readonly rpc: FederationClient;
  /** A fresh running sum for the next upload (the coordinator opens one per round, before any upload). */
  nextRound(): void;
  stop(): Promise<void>;
}

/** Starts the bench-only unsealed upload server on loopback; `global` is the adapter the updates are against. */
export async function startPlainUploadServer(global: NamedTensor[], spoolDir: string, channelOptions: grpc.ChannelOptions): Promise<PlainUploadServer> {
  const Federation = loadFedtuneProto().fedtune.v1.Federation;
  const maxBytes = global.reduce((s, t) => s + t.data.byteLength, 0);
  let aggregation: Aggregation = new FedAvg().begin(global);
  let uploads = 0;
  const handler: grpc.handleClientStreamingCall<UploadFrame__Output, UploadResponse> = (call, cb) => {
    let decoder: TensorStreamDecoder | undefined;
    let fold: UpdateFold | undefined;
    let spool: SpoolUpload | undefined;
    let taskId = '';
    let round = 0;
    let chunkCap = 0;
    let finished = false;
    const hash = createHash('sha256');
    let chunks = 0;
    const refuse = (e: unknown): void => {
      if (finished) return;
      finished = true;
      void (spool?.discard() ?? Promise.resolve()).then(() =>
        cb(e instanceof ProtocolError ? { code: e.code, details: e.message } : { code: status.INTERNAL, details: String(e) }),
      );
    };
    call.on('data', (frame: UploadFrame__Output) => {
      if (finished) return;
      try {
        admitFrame(frame);
        if (frame.header) {
          if (decoder) throw new ProtocolError(status.INVALID_ARGUMENT, 'a second upload header in one stream');
          const h = frame.header;
          // Authenticated: the decoder skips its own SHA-256 (it keeps none with retain: false); the handler
          // hashes each chunk once below and checks the trailer, as an unsealed stream needs.
          decoder = new TensorStreamDecoder(h.tensors, { maxBytes, dtype: 'FLOAT32', authenticated: true, requireFinite: false, retain: false });
          checkLayout(decoder.specs, global);
          fold = aggregation.open(`site-${++uploads}`, Number(h.num_examples));
          spool = new SpoolUpload(path.join(spoolDir, `u${uploads}.plain`), Buffer.from(JSON.stringify(h.tensors)));
          taskId = h.task_id;
          round = h.round;
          chunkCap = h.tensors!.chunk_bytes + 64;
        } else if (frame.frame === 'chunk' && frame.chunk) {
          if (!decoder || !fold || !spool) throw new ProtocolError(status.INVALID_ARGUMENT, 'a data chunk arrived before the upload header');
          decoder.push(frame.chunk);
          hash.update(frame.chunk);
          chunks++;
          spool.append(frame.chunk);
          fold.push(frame.chunk);
          if (spool.backlog > MAX_QUEUED_CHUNKS * chunkCap) {
            call.pause();
            void spool.drained().then(() => call.resume());
          }
        } else if (frame.trailer) {
          if (!decoder || !fold || !spool) throw new ProtocolError(status.INVALID_ARGUMENT, 'a trailer arrived before the upload header');
          decoder.finishStreamed();
          if (frame.trailer.chunk_count !== chunks)
            throw new ProtocolError(status.DATA_LOSS, `trailer counts ${frame.trailer.chunk_count} chunks; ${chunks} arrived`);
          const digest = hash.digest();
          if (!digest.equals(frame.trailer.sha256 ?? Buffer.alloc(0))) throw new ProtocolError(status.DATA_LOSS, 'stream SHA-256 does not match its trailer');
          fold.finish();
          const f = fold;
          const sp = spool;
          finished = true;
          sp.commit().then(
            () => {
              f.commit();
              cb(null, { task_id: taskId, round, sha256: digest, duplicate: false });
            },
            (e: unknown) => {
              finished = false;
              refuse(e);
            },
          );
        } else throw new ProtocolError(status.INVALID_ARGUMENT, 'an empty upload frame');
      } catch (e) {
        refuse(e);
      }
    });
    call.on('end', () => refuse(new ProtocolError(status.DATA_LOSS, 'stream ended without its trailer')));
    call.on('error', (e) => refuse(e));
  };
  const server = new grpc.Server({ 'grpc.max_concurrent_streams': 1_000_000 });
  // The coordinator's own method definition (path, (de)serializers) behind the same door, UploadUpdate only.
  server.addService(guardService({ UploadUpdate: Federation.service.UploadUpdate }), { UploadUpdate: handler });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  const rpc = new Federation(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), { ...channelOptions });
  return {
    rpc,
    nextRound: () => (aggregation = new FedAvg().begin(global)),
    stop: async () => {
      rpc.close();
      await new Promise<void>((r) => server.tryShutdown(() => r()));
    },
  };
}

/**
 * Sends `delta` unsealed as one UploadUpdate stream: header, chunks of `chunkBytes` (dataChunks, as the sealed
 * path uses), trailer with the plaintext's SHA-256 computed while sending; the same drain-based writer as
 * client-sdk/sealed-sender.ts sendSealed.
 */
export function sendPlain(
  rpc: FederationClient,
  task: { task_id: string; round: number; base_version: number },
  delta: NamedTensor[],
  chunkBytes: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const call = rpc.UploadUpdate((err) => {
      answered = true;
      call.emit('drain');
      if (err) reject(err);
      else resolve();
    });
    void (async () => {
      for (const f of tensorFrames(delta, chunkBytes)) {
        if (answered) return;
        const msg: UploadFrame = f.header
          ? {
              header: {
                protocol_version: PROTOCOL_VERSION,
                session_token: 'bench',
                task_id: task.task_id,
                round: task.round,
                base_version: task.base_version,
                num_examples: 1,
                tensors: f.header,
              },
            }
          : f.chunk
            ? { chunk: f.chunk }
            : { trailer: f.trailer };
        if (!call.write(msg)) await new Promise<void>((r) => call.once('drain', () => r()));
      }
      if (!answered) call.end();
    })().catch((e: unknown) => {
      call.cancel();
      reject(e);
    });
  });
}
