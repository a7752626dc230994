// The gRPC face of the coordinator: validates every message against the protocol and the round state and
// answers each fault with its own status. An upload is accepted only after the whole stream validated;
// a rejected one leaves nothing behind.
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { FederationHandlers } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TensorFrame } from '../proto/generated/fedtune/v1/TensorFrame';
import type { UploadFrame__Output } from '../proto/generated/fedtune/v1/UploadFrame';
import { PROTOCOL_VERSION } from '../proto/load';
import { ProtocolError } from '../proto/errors';
import { TensorStreamDecoder, checkLayout, tensorFrames, validateHeader, type TensorSpecOut } from '../proto/tensor-stream';
import type { Checkpoint, CheckpointStore } from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import type { ClientRegistry, TaskSink } from './registry';
import type { RoundEngine, Task } from './rounds';
import type { CoordinatorKeys } from './keys';
import type { Challenges } from './auth/challenges';
import type { Enrolment } from './auth/enrolment';
import { clientIdFor, type ClientSession } from './registry';
import { admitFrame, guardHandlers, toRefusal } from './door';
import { LIMITS, RetryLater, describe } from '../proto/limits';
import * as path from 'node:path';
import { SealedUploadOpener, uploadBinding } from '../proto/crypto/sealed-upload';
import { DOMAINS, joinSignedFields, verify } from '../proto/crypto/signing';
import { keyId } from '../proto/crypto/key-file';
import type { CoordinatorKeys as WireKeys } from '../proto/generated/fedtune/v1/CoordinatorKeys';
import type { SecAggAck } from '../proto/generated/fedtune/v1/SecAggAck';
import type { SecAggAttempt } from './secagg-attempt';
import type { SealedUpdate } from './sealed-update';
import type { UploadBinding } from '../proto/crypto/sealed-upload';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import { adFromWire, shareKeysFromWire, signatureFromWire, unmaskResponseFromWire } from '../proto/secagg/wire';

/** Largest FedAvg weight one client may claim (see strategy/fixed-point.ts for the exact-sum bound). */
export const MAX_NUM_EXAMPLES = 2 ** 21;
/** Most metrics one report may carry (proto/limits.ts). */
export const MAX_METRICS = LIMITS.metrics;

export interface ServiceDeps {
  readonly config: CoordinatorConfig;
  readonly registry: ClientRegistry;
  readonly engine: RoundEngine;
  readonly store: CheckpointStore;
  readonly runId: string;
  readonly baseModelSha256: string;
  readonly keys: CoordinatorKeys;
  readonly enrolment: Enrolment;
  readonly challenges: Challenges;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

function checkVersion(v: number, what: string): void {
  if (v !== PROTOCOL_VERSION) {
    throw new ProtocolError(status.FAILED_PRECONDITION, `${what} speaks protocol version ${v}; this coordinator speaks ${PROTOCOL_VERSION}`);
  }
}

/** Writes frames with backpressure: waits for 'drain' whenever the stream's buffer is full (or the call ends). */
async function writeAll(call: grpc.ServerWritableStream<unknown, TensorFrame>, frames: Iterable<TensorFrame>): Promise<void> {
  for (const f of frames) {
    if (call.cancelled) return;
    if (!call.write(f)) {
      await new Promise<void>((resolve) => {
        const go = (): void => {
          call.off('drain', go);
          call.off('cancelled', go);
          resolve();
        };
        call.once('drain', go);
        call.once('cancelled', go); // a client that went away never drains
      });
    }
  }
}

export function createHandlers(d: ServiceDeps): FederationHandlers {
  // Paths a message could carry (an error from the file system): never sent to a site.
  const knownPaths = [d.config.run.dir, path.resolve(d.config.run.dir), d.config.security.keyFile].filter((p) => p);
  const fail = (e: unknown, what: string): Partial<grpc.StatusObject> => {
    const r = toRefusal(e, knownPaths);
    // An internal failure's cause (which may name a file) stays in the operator's log; the site gets a generic status.
    d.log(r.internal ? 'error' : 'warn', `${what} rejected`, { code: status[r.status.code!], details: r.logDetails });
    return r.status;
  };
  const wireKeys: WireKeys = { key_id: d.keys.keyId, sign_public_key: d.keys.sign.publicKey, box_public_key: d.keys.box.publicKey };
  /** The session a token names, if its key was not revoked since it joined. Every state-changing call goes through here. */
  const session = (token: string): ClientSession => {
    const s = d.registry.byToken(token);
    d.enrolment.checkActive(s.name, s.publicKey);
    return s;
  };
  /** One SecAgg stage message: session, task and round checks, then the attempt's own validation. */
  const secaggCall = (
    r: { session_token: string; task_id: string; round: number },
    what: string,
    cb: grpc.sendUnaryData<SecAggAck>,
    apply: (sa: SecAggAttempt, s: ClientSession) => void,
  ): void => {
    try {
      const s = session(r.session_token);
      const t = d.engine.task(s.clientId, r.task_id, r.round);
      const sa = d.engine.secaggOf(t);
      if (!sa) throw new ProtocolError(status.FAILED_PRECONDITION, `secagg ${what}: round ${t.round} does not use secure aggregation`);
      apply(sa, s);
      d.engine.secaggProgress(t);
      cb(null, {});
    } catch (e) {
      cb(fail(e, `secagg ${what}`));
    }
  };
  const unsealKey = { keyId: d.keys.keyId, boxPublicKey: d.keys.box.publicKey, boxSecretKey: d.keys.box.secretKey };
  /** Uploads past their header and not yet answered (admission.maxUploadsInFlight). */
  let uploadsInFlight = 0;

  return guardHandlers(
    {
      Hello(call, cb) {
        try {
          checkVersion(call.request.protocol_version, 'client');
          const { challenge, expires } = d.challenges.issue(call.getPeer()); // bounded per peer host: challenges.ts
          cb(null, { protocol_version: PROTOCOL_VERSION, run_id: d.runId, challenge, challenge_expires_unix_ms: expires, coordinator: wireKeys });
        } catch (e) {
          cb(fail(e, 'hello'));
        }
      },

      Join(call, cb) {
        try {
          const r = call.request;
          checkVersion(r.protocol_version, 'client');
          const pk = Buffer.from(r.public_key ?? []);
          if (pk.length !== 32) throw new ProtocolError(status.INVALID_ARGUMENT, `public_key must be a 32-byte Ed25519 key; got ${pk.length} bytes`);
          d.challenges.consume(r.challenge);
          if (r.coordinator_key_id !== d.keys.keyId) {
            throw new ProtocolError(
              status.UNAUTHENTICATED,
              `join of site ${r.client_name} was signed for coordinator key ${r.coordinator_key_id || '(none)'}; this coordinator is ${d.keys.keyId}`,
            );
          }
          if (
            !verify(
              DOMAINS.join,
              joinSignedFields(r.protocol_version, d.runId, r.challenge, r.client_name, pk, r.backend, {
                key_id: d.keys.keyId,
                sign_public_key: d.keys.sign.publicKey,
                box_public_key: d.keys.box.publicKey,
              }),
              r.signature,
              pk,
            )
          ) {
            throw new ProtocolError(status.UNAUTHENTICATED, `join signature of site ${r.client_name} does not verify with key ${keyId(pk)}`);
          }
          // Admission: a new site beyond admission.maxSessions waits (a rejoin replaces its own session, so it passes).
          if (d.registry.size >= d.config.admission.maxSessions && !d.registry.byId(clientIdFor(r.client_name))) {
            throw new RetryLater(`the coordinator holds ${d.registry.size} sessions (admission.maxSessions): retry later`, d.config.admission.retryAfterMs);
          }
          const { how, persisted } = d.enrolment.authorize(r.client_name, pk, r.join_token);
          // A new binding is answered only once it is on disk (written in batches: auth/enrolment.ts).
          persisted.then(
            () => {
              const s = d.registry.join(r.client_name, r.backend, r.labels, new Uint8Array(pk));
              d.log('info', 'client joined', { clientId: s.clientId, name: s.name, backend: s.backend, keyId: keyId(pk), enrolment: how });
              cb(null, {
                client_id: s.clientId,
                session_token: s.token,
                run_id: d.runId,
                protocol_version: PROTOCOL_VERSION,
                base_model_sha256: d.baseModelSha256,
                coordinator: wireKeys,
              });
            },
            (e: unknown) => cb(fail(e, 'join')),
          );
        } catch (e) {
          cb(fail(e, 'join'));
        }
      },

      StreamTasks(call) {
        let session_;
        try {
          session_ = session(call.request.session_token);
        } catch (e) {
          call.emit('error', fail(e, 'task stream'));
          return;
        }
        const sink: TaskSink = {
          write: (ev: TaskEvent) => {
            if (!call.cancelled && call.writable) call.write(ev);
          },
          end: () => {
            if (call.writable) call.end();
          },
        };
        const s = session_;
        const detach = (): void => d.registry.detach(s, sink);
        call.on('cancelled', detach);
        call.on('close', detach);
        call.on('error', detach);
        d.registry.attach(s, sink);
      },

      DownloadAdapter(call) {
        void (async () => {
          try {
            const s = session(call.request.session_token);
            const evalTask = call.request.evaluation_task_id;
            if (evalTask) {
              // An open evaluation's candidate: not committed yet, served only to the sites asked to evaluate it.
              const candidate = d.engine.evaluations.candidate(s.clientId, s.name, evalTask);
              await writeAll(call, tensorFrames(candidate, d.config.transport.chunkBytes) as Iterable<TensorFrame>);
              call.end();
              return;
            }
            const latest = d.engine.latest;
            const v = call.request.version;
            const ck = latest && latest.manifest.version === v ? latest : await readVersion(d.store, v, latest?.manifest.version);
            await writeAll(call, tensorFrames(ck.adapter, d.config.transport.chunkBytes) as Iterable<TensorFrame>);
            call.end();
          } catch (e) {
            call.emit('error', fail(e, 'download'));
          }
        })();
      },

      UploadUpdate(call, cb) {
        let task: Task | undefined;
        let decoder: TensorStreamDecoder | undefined;
        let secagg: SecAggAttempt | undefined;
        let opener: SealedUploadOpener | undefined;
        let numExamples = 0;
        let sealedBinding: UploadBinding | undefined;
        let decoderHeader: TensorHeader__Output | undefined;
        let uploaderKey: Uint8Array | undefined;
        let finished = false;
        let counted = false;
        // A stalled upload (a header, a chunk, then silence) must not hold its task in 'receiving': after
        // transport.uploadIdleTimeoutMs without a frame it is refused and the task freed for the site's retry.
        const idleMs = d.config.transport.uploadIdleTimeoutMs;
        let idle: NodeJS.Timeout | undefined;
        const end = (): void => {
          finished = true;
          clearTimeout(idle);
          if (counted) uploadsInFlight--;
          counted = false;
        };
        const reject = (e: unknown): void => {
          if (finished) return;
          end();
          if (task) d.engine.abortUpload(task); // nothing of a refused upload is kept; the task can take another
          cb(fail(e, 'upload'));
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
          if (finished) return;
          touch();
          try {
            admitFrame(frame); // malformed or over-long: refused before anything else
            if (frame.header) {
              if (decoder || task) throw new ProtocolError(status.INVALID_ARGUMENT, 'a second upload header in one stream');
              const h = frame.header;
              checkVersion(h.protocol_version, 'upload');
              const s = session(h.session_token);
              const e = h.sealed;
              if (!e) throw new ProtocolError(status.INVALID_ARGUMENT, 'upload is not sealed: every upload must carry a signed SealedEnvelope');
              const digest = Buffer.from(e.ciphertext_sha256 ?? []).toString('hex');
              const earlier = d.engine.acceptedBy(digest);
              if (earlier && earlier.taskId === h.task_id && earlier.clientId === s.clientId && earlier.state === 'uploaded' && d.engine.isOpen(earlier)) {
                // A resumed upload of bytes already accepted (the reply was lost): answer again, change nothing.
                end();
                d.log('info', 'resumed upload answered from the accepted one', { taskId: earlier.taskId });
                cb(null, { task_id: earlier.taskId, round: earlier.round, sha256: Buffer.from(digest, 'hex'), duplicate: true });
                return;
              }
              if (earlier)
                throw new ProtocolError(
                  status.ALREADY_EXISTS,
                  `replayed upload: this sealed upload was already accepted for task ${earlier.taskId} (round ${earlier.round})`,
                );
              const t = d.engine.task(s.clientId, h.task_id, h.round);
              if (h.base_version !== t.baseVersion) {
                throw new ProtocolError(
                  status.FAILED_PRECONDITION,
                  `update is against version ${h.base_version}; task ${t.taskId} expects base_version ${t.baseVersion}`,
                );
              }
              const base = d.engine.baseOf(t);
              if (e.base_manifest_sha256 !== base.manifestSha256) {
                throw new ProtocolError(
                  status.FAILED_PRECONDITION,
                  `update is against checkpoint ${e.base_manifest_sha256.slice(0, 16) || '(none)'}…; round ${t.round} starts from v${t.baseVersion} with manifest ${base.manifestSha256.slice(0, 16)}…`,
                );
              }
              if (e.run_id !== d.runId || e.client_id !== s.clientId || e.attempt !== t.attempt) {
                throw new ProtocolError(
                  status.FAILED_PRECONDITION,
                  `sealed envelope is bound to run ${e.run_id}, client ${e.client_id}, attempt ${e.attempt}; expected ${d.runId}, ${s.clientId}, ${t.attempt}`,
                );
              }
              const sa = d.engine.secaggOf(t);
              if (!sa && !(h.num_examples >= 1 && h.num_examples <= MAX_NUM_EXAMPLES)) {
                throw new ProtocolError(status.INVALID_ARGUMENT, `num_examples ${h.num_examples} outside 1..${MAX_NUM_EXAMPLES}`);
              }
              if (t.state === 'uploaded')
                throw new ProtocolError(
                  status.ALREADY_EXISTS,
                  `task ${t.taskId} already has an accepted update; a second upload for client ${s.name} in round ${t.round} is refused`,
                );
              // Declarations first (size limit, dtypes), then the layout and the signature, and only then allocate.
              // A plain update has the global adapter's layout; a masked one is one UINT32 vector of the round's length.
              const dtype = sa ? 'UINT32' : 'FLOAT32';
              const specs = validateHeader(h.tensors, d.config.transport.maxUploadBytes, dtype);
              if (sa) {
                checkMaskedLayout(specs, sa.config.vectorLength);
                sa.expectMaskedInput(s.clientId);
              } else checkLayout(specs, base.adapter);
              // The fields the site signed, from the task as it was sent (the one builder site and coordinator share).
              const binding = uploadBinding(d.runId, s.clientId, t.wire, h.num_examples, h.protocol_version);
              const op = new SealedUploadOpener(e, binding, h.tensors!, unsealKey, s.publicKey, s.name);
              if (uploadsInFlight >= d.config.admission.maxUploadsInFlight) {
                throw new RetryLater(
                  `${uploadsInFlight} uploads are being received (admission.maxUploadsInFlight): retry later`,
                  d.config.admission.retryAfterMs,
                );
              }
              d.engine.beginUpload(t); // refuses a concurrent upload for the task before reading any data
              uploadsInFlight++;
              counted = true;
              task = t; // from here on a refusal hands the task back (abortUpload)
              opener = op;
              decoderHeader = h.tensors!;
              uploaderKey = s.publicKey;
              // Integrity comes from the sealed chunks and the signed ciphertext hash, so the decoder hashes nothing;
              // values (finite, in range) are the strategy's to admit (Attempt.accept), in its one pass over them.
              decoder = new TensorStreamDecoder(h.tensors, { maxBytes: d.config.transport.maxUploadBytes, dtype, authenticated: true, requireFinite: false });
              sealedBinding = binding;
              secagg = sa;
              numExamples = h.num_examples;
            } else if (frame.frame === 'chunk' && frame.chunk !== undefined && frame.chunk !== null) {
              if (!decoder || !opener)
                throw new ProtocolError(status.INVALID_ARGUMENT, 'the first upload frame must be the header: a data chunk arrived before the upload header');
              decoder.push(opener.open(frame.chunk));
            } else if (frame.trailer) {
              if (!decoder || !task || !opener)
                throw new ProtocolError(status.INVALID_ARGUMENT, 'the first upload frame must be the header: a trailer arrived before the upload header');
              opener.finish();
              if (frame.trailer.chunk_count !== opener.ciphertext.length)
                throw new ProtocolError(status.DATA_LOSS, `trailer counts ${frame.trailer.chunk_count} chunks; ${opener.ciphertext.length} arrived`);
              opener.checkTrailer(frame.trailer.sha256); // the trailer's hash must name the ciphertext that arrived
              const t = task;
              const reply = { task_id: t.taskId, round: t.round, sha256: Buffer.from(opener.envelope.ciphertext_sha256), duplicate: false };
              const bytes = decoder.bytesReceived;
              if (secagg) {
                secagg.maskedInput(t.clientId, decoder.finishWords()); // into the running sum; the vector is not kept
                d.engine.acceptMaskedUpload(t, Buffer.from(opener.envelope.ciphertext_sha256));
                end();
                d.log('info', 'update accepted', { taskId: t.taskId, numExamples, bytes });
                cb(null, reply);
                return;
              }
              // The one opening of this upload: plaintext delta, with the sealed bytes the spool keeps.
              const update: SealedUpdate = {
                binding: sealedBinding!,
                header: decoderHeader!,
                envelope: opener.envelope,
                ciphertext: opener.ciphertext,
                sha256: Buffer.from(opener.envelope.ciphertext_sha256).toString('hex'),
                clientName: d.registry.byId(t.clientId)?.name ?? t.clientId,
                clientPublicKey: uploaderKey!,
                delta: decoder.finishAuthenticated(),
              };
              // From here the answer comes from the accept (admission, spool write, sum), whatever the stream or the
              // idle timer does; the upload stays counted in flight until it is answered.
              finished = true;
              clearTimeout(idle);
              d.engine.acceptUpload(t, update).then(
                () => {
                  end();
                  d.log('info', 'update accepted', { taskId: t.taskId, numExamples, bytes });
                  cb(null, reply);
                },
                (err: unknown) => {
                  end();
                  d.engine.abortUpload(t);
                  cb(fail(err, 'upload'));
                },
              );
            } else {
              throw new ProtocolError(status.INVALID_ARGUMENT, 'an empty upload frame (no header, chunk or trailer)');
            }
          } catch (e) {
            reject(e);
          }
        });
        call.on('end', () => {
          if (finished) return;
          if (!decoder || !opener) return reject(new ProtocolError(status.INVALID_ARGUMENT, 'upload stream ended without a header'));
          try {
            opener.finish(); // throws DATA_LOSS: truncated
            reject(new ProtocolError(status.DATA_LOSS, 'stream ended without its trailer'));
          } catch (e) {
            reject(e);
          }
        });
        // A client that gives up mid-stream must not leave its task stuck in 'receiving'.
        call.on('cancelled', () => reject(new ProtocolError(status.CANCELLED, 'upload cancelled by the client')));
        call.on('error', (e) => reject(new ProtocolError(status.CANCELLED, `upload stream broke: ${e.message}`)));
      },

      SecAggAdvertise(call, cb) {
        secaggCall(call.request, 'advertise', cb, (sa, s) => sa.advertise(s.clientId, adFromWire(call.request.advertisement)));
      },

      SecAggShareKeys(call, cb) {
        secaggCall(call.request, 'share keys', cb, (sa, s) => sa.shareKeys(s.clientId, shareKeysFromWire(call.request.share_keys)));
      },

      SecAggConsistency(call, cb) {
        secaggCall(call.request, 'consistency', cb, (sa, s) => sa.consistency(s.clientId, signatureFromWire(call.request.signature)));
      },

      SecAggUnmask(call, cb) {
        secaggCall(call.request, 'unmask', cb, (sa, s) => sa.unmask(s.clientId, unmaskResponseFromWire(call.request.response)));
      },

      ReportMetrics(call, cb) {
        try {
          const r = call.request;
          const s = session(r.session_token);
          const t = d.engine.task(s.clientId, r.task_id, r.round);
          // Names, count and finiteness were checked at the door (proto/limits.ts checkMetrics); the metrics are
          // spooled with the update before the site hears back.
          d.engine.recordMetrics(t, { ...r.metrics }, r.backend || s.backend).then(
            () => cb(null, {}),
            (e: unknown) => cb(fail(e, 'metrics')),
          );
        } catch (e) {
          cb(fail(e, 'metrics'));
        }
      },

      ReportEvaluation(call, cb) {
        try {
          const r = call.request;
          const s = session(r.session_token);
          // Bounds (finite, ranges) were checked at the door (proto/limits.ts checkEvaluationReport).
          d.engine.evaluations.report(s.clientId, s.name, r.task_id, {
            version: r.version,
            numExamples: Number(r.num_examples),
            loss: r.loss,
            ...(r.has_accuracy ? { accuracy: r.accuracy } : {}),
          });
          cb(null, {});
        } catch (e) {
          cb(fail(e, 'evaluation report'));
        }
      },

      Leave(call, cb) {
        try {
          const s = d.registry.byToken(call.request.session_token);
          d.registry.leave(call.request.session_token);
          d.log('info', 'client left', { clientId: s.clientId, reason: describe(call.request.reason, 64) });
          cb(null, {});
        } catch (e) {
          cb(fail(e, 'leave'));
        }
      },
    },
    fail,
  );
}

/** A committed version: NOT_FOUND beyond the latest; a version that should exist but cannot be read is DATA_LOSS. */
async function readVersion(store: CheckpointStore, v: number, latest: number | undefined): Promise<Checkpoint> {
  if (latest === undefined || v > latest) {
    throw new ProtocolError(status.NOT_FOUND, `version ${v} does not exist (latest is ${latest ?? 'none'})`);
  }
  try {
    return await store.read(v);
  } catch (e) {
    throw new ProtocolError(status.DATA_LOSS, `version ${v} cannot be read: ${(e as Error).message}`);
  }
}

/** A SecAgg masked input travels as one UINT32 tensor `secagg.masked` of the round's vector length. */
function checkMaskedLayout(specs: readonly TensorSpecOut[], length: number): void {
  if (specs.length !== 1 || specs[0].name !== 'secagg.masked' || specs[0].shape.length !== 1 || specs[0].shape[0] !== length) {
    throw new ProtocolError(status.INVALID_ARGUMENT, `a masked upload must be one UINT32 tensor secagg.masked of shape [${length}] (${4 * length} bytes)`);
  }
}
