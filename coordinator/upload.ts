// The UploadUpdate stream: header → chunks → trailer, each checked before the next is read. The header is
// refused on anything out of place before anything is allocated or written (session, task, round, attempt,
// base, binding, weight, layout, signature, admission). Each chunk is authenticated and opened once, its
// ciphertext streamed to the round spool's temporary (spool-upload.ts) and its plaintext folded into the round's
// running sum at once (Attempt.foldChunk: checked and added in place, then dropped), never kept in memory; the trailer must name the ciphertext that arrived. A refused, broken or idle upload
// leaves nothing behind: its temporary is deleted before the site is answered.
//
// Memory per upload in flight: no plaintext beyond the chunk being folded (a plain upload's chunks are opened and
// folded into the round's running sum one at a time, Attempt.foldChunk; a SecAgg masked input's into the masked
// sum the same way, SecAggAttempt.maskedChunk, its sealed chunks kept in a scratch file only to take it back out)
// plus the ciphertext chunks not yet on disk (the stream is paused while more than two are queued; gRPC reads at
// most 16 messages ahead of a paused stream). A large upload's chunks are opened on a sealing thread
// (upload-chunks.ts), the stream paused while more than four are there. admission.maxUploadsInFlight bounds the
// count, so the coordinator holds at most
//   one running sum (8 bytes per parameter; 4 per value under SecAgg) + maxUploadsInFlight × 48 × chunk size
//   + 4 × fold helpers × chunk size
// whatever the number of sites (the second term only while the disk or the sealing thread is slower than the
// network; a chunk on the sealing thread comes back with its plaintext, hence twice 24; the third: opened chunks
// handed to the sum's fold helpers and not folded yet, strategy/fold-handoff.ts RUNS_PER_HELPER).
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { UploadFrame__Output } from '../proto/generated/fedtune/v1/UploadFrame';
import type { UploadResponse } from '../proto/generated/fedtune/v1/UploadResponse';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import { ProtocolError } from '../proto/errors';
import { RetryLater } from '../proto/limits';
import { TensorStreamDecoder } from '../proto/tensor-stream';
import { SealedUploadOpener, type CoordinatorBoxSecret, type UploadBinding } from '../proto/crypto/sealed-upload';
import { MAX_OPENING_CHUNKS, UploadChunks } from './upload-chunks';
import { admitFrame } from './door';
import type { CoordinatorConfig } from './config-types';
import type { ClientRegistry, ClientSession } from './registry';
import type { RoundEngine, Task } from './rounds';
import type { SecAggAttempt } from './secagg-attempt';
import type { SealedUpdate } from './sealed-update';
import type { SpoolUpload } from './spool-upload';
import { checkUploadHeader } from './upload-header';
import { ownsWholeBuffer } from '../proto/message-buffer';
import { logsRoundSites } from './ops/sample-secrecy';

export { MAX_NUM_EXAMPLES } from './upload-header';

/** Chunks queued for the spool file beyond which the stream is paused until the disk catches up. */
const MAX_QUEUED_CHUNKS = 2;

export interface UploadDeps {
  readonly config: CoordinatorConfig;
  readonly registry: ClientRegistry;
  readonly engine: RoundEngine;
  readonly runId: string;
  readonly unsealKey: CoordinatorBoxSecret;
  /** The session a token names, refused when unknown or revoked. */
  readonly session: (token: string) => ClientSession;
  readonly checkVersion: (v: number, what: string) => void;
  /** Logs a refusal and turns it into the status the site gets. */
  readonly fail: (e: unknown, what: string) => Partial<grpc.StatusObject>;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** The UploadUpdate handler; its counters of uploads in flight are shared by every call it serves. */
export function uploadHandler(d: UploadDeps): grpc.handleClientStreamingCall<UploadFrame__Output, UploadResponse> {
  /** Uploads past their header and not yet answered (admission.maxUploadsInFlight), and their declared bytes. */
  let inFlight = 0;
  let bytesInFlight = 0;

  return (call, cb) => {
    let task: Task | undefined;
    let decoder: TensorStreamDecoder | undefined;
    let secagg: SecAggAttempt | undefined;
    let opener: SealedUploadOpener | undefined;
    let chunks: UploadChunks | undefined;
    // The stream is paused for two reasons, each cleared on its own: the sealing thread is behind (openPaused) or
    // the spool's disk is (spoolPaused). It resumes only when neither holds: resumed as soon as one cleared, a
    // sealing thread faster than the disk would keep the stream flowing and the spool's queue growing.
    let openPaused = false;
    let spoolPaused = false;
    const resumeIfClear = (): void => {
      if (!openPaused && !spoolPaused && !finished) call.resume();
    };
    /** Set at the trailer: the upload's last frame; anything after it is ignored, as once the upload is answered. */
    let trailerSeen = false;
    let spool: SpoolUpload | undefined;
    let numExamples = 0;
    let sealedBinding: UploadBinding | undefined;
    let decoderHeader: TensorHeader__Output | undefined;
    let uploaderKey: Uint8Array | undefined;
    let finished = false;
    let counted = 0; // declared bytes this call holds in bytesInFlight (and one in inFlight) while > 0
    let chunkCap = 0;
    // A stalled upload (a header, a chunk, then silence) must not hold its task in 'receiving': after
    // transport.uploadIdleTimeoutMs without a frame it is refused and the task freed for the site's retry.
    const idleMs = d.config.transport.uploadIdleTimeoutMs;
    let idle: NodeJS.Timeout | undefined;
    const end = (): void => {
      finished = true;
      clearTimeout(idle);
      if (counted > 0) {
        inFlight--;
        bytesInFlight -= counted;
      }
      counted = 0;
    };
    /**
     * Answers once what the upload folded into the running sum is taken back out (`undone`, read back from the
     * spool's temporary) and the temporary is gone: a refused upload leaves nothing in the sum or on disk.
     */
    const answerRefused = (e: unknown, undone: Promise<void>): void => {
      const f = spool;
      spool = undefined;
      const status_ = d.fail(e, 'upload');
      void undone
        .then(() => f?.discard())
        .catch((err: Error) => d.log('error', 'could not delete a refused upload', { error: err.message }))
        .then(() => cb(status_));
    };
    const reject = (e: unknown): void => {
      if (finished) return;
      chunks?.close();
      end();
      // Nothing of a refused upload is kept; the task can take another at once.
      answerRefused(e, task ? d.engine.abortUpload(task) : Promise.resolve());
    };
    const touch = (): void => {
      clearTimeout(idle);
      idle = setTimeout(
        () =>
          reject(
            new ProtocolError(
              status.DEADLINE_EXCEEDED,
              `upload idle for ${idleMs} ms (transport.uploadIdleTimeoutMs): refused, and the task is free for a retry`,
            ),
          ),
        idleMs,
      );
      idle.unref(); // never what keeps a stopping coordinator alive
    };
    touch();
    call.on('data', (frame: UploadFrame__Output) => {
      if (finished || trailerSeen) return;
      touch();
      try {
        admitFrame(frame); // malformed or over-long: refused before anything else
        if (frame.header) {
          if (decoder || task) throw new ProtocolError(status.INVALID_ARGUMENT, 'a second upload header in one stream');
          const h = frame.header;
          const checked = checkUploadHeader(d, h);
          if (checked.kind === 'resumed') {
            // A resumed upload of bytes already accepted (the reply was lost): answer again, change nothing.
            end();
            if (logsRoundSites(d.config)) d.log('info', 'resumed upload answered from the accepted one', { taskId: checked.reply.task_id });
            cb(null, checked.reply);
            return;
          }
          const { session: s, task: t, envelope: e, secagg: sa, binding, opener: op, dtype } = checked;
          const adm = d.config.admission;
          const declared = Math.max(1, Number(h.tensors!.total_bytes));
          if (inFlight >= adm.maxUploadsInFlight)
            throw new RetryLater(`${inFlight} uploads are being received (admission.maxUploadsInFlight): retry later`, adm.retryAfterMs);
          if (bytesInFlight > 0 && bytesInFlight + declared > adm.maxUploadBytesInFlight)
            throw new RetryLater(
              `${bytesInFlight} bytes of uploads are being received (admission.maxUploadBytesInFlight ${adm.maxUploadBytesInFlight}): retry later`,
              adm.retryAfterMs,
            );
          d.engine.beginUpload(t); // refuses a concurrent upload for the task before reading any data
          inFlight++;
          bytesInFlight += declared;
          counted = declared;
          task = t; // from here on a refusal hands the task back (abortUpload)
          opener = op;
          decoderHeader = h.tensors!;
          uploaderKey = s.publicKey;
          chunkCap = h.tensors!.chunk_bytes + 64;
          // Integrity comes from the sealed chunks and the signed ciphertext hash, so the decoder hashes nothing;
          // values (finite, in range) are the strategy's to check as each chunk is folded (Attempt.foldChunk). A
          // plain upload's decoder keeps no bytes: each opened chunk goes into the running sum and is dropped.
          decoder = new TensorStreamDecoder(h.tensors, {
            maxBytes: d.config.transport.maxUploadBytes,
            dtype,
            authenticated: true,
            requireFinite: false,
            retain: false,
          });
          sealedBinding = binding;
          secagg = sa;
          numExamples = h.num_examples;
          // Plain rounds keep the sealed bytes: they stream to the spool from here, and the update's fold into the
          // running sum opens (weight and client id reserved). A masked input's go to a scratch file, only to take
          // it back out of the masked sum if it is not accepted after all.
          if (sa) {
            const sp = d.engine.spoolUpload(t, { binding, header: h.tensors!, envelope: e, clientName: s.name, clientPublicKey: s.publicKey });
            if (!sp) throw new ProtocolError(status.UNAVAILABLE, `task ${t.taskId}: the coordinator cannot take masked uploads now; send it again`);
            spool = sp;
            const key = s.publicKey;
            const name = s.name;
            const tensors = h.tensors!;
            sa.openMasked(s.clientId, sp, () => new SealedUploadOpener(e, binding, tensors, d.unsealKey, key, name));
          } else {
            spool = d.engine.spoolUpload(t, { binding, header: h.tensors!, envelope: e, clientName: s.name, clientPublicKey: s.publicKey });
            if (spool) {
              const key = s.publicKey;
              const name = s.name;
              const tensors = h.tensors!;
              d.engine.openFold(t, h.num_examples, spool, () => new SealedUploadOpener(e, binding, tensors, d.unsealKey, key, name));
            }
          }
          chunks = new UploadChunks(op, declared >= d.config.transport.openOffThreadMinBytes, useChunk, reject);
        } else if (frame.frame === 'chunk' && frame.chunk !== undefined && frame.chunk !== null) {
          if (!decoder || !opener || !chunks)
            throw new ProtocolError(status.INVALID_ARGUMENT, 'the first upload frame must be the header: a data chunk arrived before the upload header');
          chunks.push(frame.chunk); // opened here and now, or on the sealing thread (useChunk gets it back in order)
          if (chunks.pending > MAX_OPENING_CHUNKS) {
            // The sealing thread is behind the network: stop reading until it catches up (useChunk resumes).
            openPaused = true;
            call.pause();
          }
        } else if (frame.trailer) {
          if (!decoder || !task || !opener || !chunks)
            throw new ProtocolError(status.INVALID_ARGUMENT, 'the first upload frame must be the header: a trailer arrived before the upload header');
          const trailer = frame.trailer;
          trailerSeen = true;
          // Every chunk in flight is opened and folded first (a bad value refused before the trailer, as in line).
          const t = task;
          chunks.settled(() =>
            folded(t, () => {
              try {
                acceptTrailer(trailer);
              } catch (e) {
                reject(e);
              }
            }),
          );
        } else {
          throw new ProtocolError(status.INVALID_ARGUMENT, 'an empty upload frame (no header, chunk or trailer)');
        }
      } catch (e) {
        reject(e);
      }
    });
    /** One opened chunk, in order: checked against the header, to the spool, into the sum. */
    function useChunk(plain: Buffer, chunk: Buffer): void {
      if (finished) return;
      decoder!.push(plain);
      if (spool) {
        // To the spool first: a chunk folded into the sum must be readable again to take it back out.
        spool.append(chunk);
        if (secagg) secagg.maskedChunk(task!.clientId, plain);
        else d.engine.foldChunk(task!, plain, ownsWholeBuffer(plain)); // node:crypto's plaintext: its own buffer, not read here again
        if (spool.backlog > MAX_QUEUED_CHUNKS * chunkCap) {
          // The disk is behind the network: stop reading until the queued chunks are written.
          if (!spoolPaused) {
            spoolPaused = true;
            call.pause();
            void spool.drained().then(() => {
              spoolPaused = false;
              resumeIfClear();
            });
          }
        }
      }
      if (openPaused && chunks!.pending <= MAX_OPENING_CHUNKS / 2) {
        openPaused = false;
        resumeIfClear();
      }
    }
    /**
     * Runs `then` once every chunk of a plain upload on a fold helper is folded (at once when none is); a bad value
     * among them refuses the upload instead.
     */
    function folded(t: Task | undefined, then: () => void): void {
      if (finished) return;
      let wait: Promise<void> | undefined;
      try {
        wait = t && !secagg ? d.engine.foldSettled(t) : undefined;
      } catch (e) {
        return reject(e);
      }
      if (!wait) return then();
      wait.then(() => {
        if (!finished) then();
      }, reject);
    }
    /** The trailer, once every chunk is opened: count, hash, and the accept. */
    function acceptTrailer(trailer: NonNullable<UploadFrame__Output['trailer']>): void {
      if (!decoder || !task || !opener) return;
      opener.finish();
      if (trailer.chunk_count !== opener.chunksOpened)
        throw new ProtocolError(status.DATA_LOSS, `trailer counts ${trailer.chunk_count} chunks; ${opener.chunksOpened} arrived`);
      opener.checkTrailer(trailer.sha256); // the trailer's hash must name the ciphertext that arrived
      const t = task;
      const reply = { task_id: t.taskId, round: t.round, sha256: Buffer.from(opener.envelope.ciphertext_sha256), duplicate: false };
      const bytes = decoder.bytesReceived;
      if (secagg) {
        decoder.finishStreamed();
        secagg.acceptMasked(t.clientId); // every chunk is in the masked sum already: now it counts
        d.engine.acceptMaskedUpload(t, Buffer.from(opener.envelope.ciphertext_sha256));
        const scratch = spool;
        spool = undefined;
        void scratch?.discard().catch((err: Error) => d.log('error', 'could not delete a masked upload scratch file', { error: err.message }));
        end();
        if (logsRoundSites(d.config)) d.log('info', 'update accepted', { taskId: t.taskId, numExamples, bytes });
        cb(null, reply);
        return;
      }
      // Opened once, chunk by chunk, and already in the running sum; its sealed bytes are in the spool's temporary.
      decoder.finishStreamed();
      const update: SealedUpdate = {
        binding: sealedBinding!,
        header: decoderHeader!,
        envelope: opener.envelope,
        spooled: spool,
        sha256: Buffer.from(opener.envelope.ciphertext_sha256).toString('hex'),
        clientName: d.registry.byId(t.clientId)?.name ?? t.clientId,
        clientPublicKey: uploaderKey!,
        delta: undefined,
      };
      // From here the answer comes from the accept (admission, spool commit, sum), whatever the stream or the
      // idle timer does; the upload stays counted in flight until it is answered.
      finished = true;
      clearTimeout(idle);
      d.engine.acceptUpload(t, update).then(
        () => {
          spool = undefined; // committed: it is the spool's record now
          end();
          if (logsRoundSites(d.config)) d.log('info', 'update accepted', { taskId: t.taskId, numExamples, bytes });
          cb(null, reply);
        },
        (err: unknown) => {
          end();
          answerRefused(err, d.engine.abortUpload(t));
        },
      );
    }
    call.on('end', () => {
      if (finished || trailerSeen) return;
      if (!decoder || !opener || !chunks) return reject(new ProtocolError(status.INVALID_ARGUMENT, 'upload stream ended without a header'));
      const o = opener;
      const t = task;
      chunks.settled(() =>
        folded(t, () => {
          try {
            o.finish(); // throws DATA_LOSS: truncated
            reject(new ProtocolError(status.DATA_LOSS, 'stream ended without its trailer'));
          } catch (e) {
            reject(e);
          }
        }),
      );
    });
    // A client that gives up mid-stream must not leave its task stuck in 'receiving'.
    call.on('cancelled', () => reject(new ProtocolError(status.CANCELLED, 'upload cancelled by the client')));
    call.on('error', (e) => reject(new ProtocolError(status.CANCELLED, `upload stream broke: ${e.message}`)));
  };
}
