// The gRPC face of the coordinator: validates every message against the protocol and the round state and
// answers each fault with its own status. An upload is accepted only after the whole stream validated;
// a rejected one leaves nothing behind.
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { FederationHandlers } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TensorFrame } from '../proto/generated/fedtune/v1/TensorFrame';
import { loadFedtuneProto, PROTOCOL_VERSION } from '../proto/load';
import { ProtocolError } from '../proto/errors';
import { tensorFrames } from '../proto/tensor-stream';
import type { Checkpoint, CheckpointStore } from './checkpoints/types';
import { VersionPrunedError } from './checkpoints/pruned-record';
import type { NamedTensor } from '../proto/tensors';
import type { CoordinatorConfig } from './config-types';
import type { ClientRegistry, TaskSink } from './registry';
import type { RoundEngine } from './rounds';
import type { CoordinatorKeys } from './keys';
import type { Challenges } from './auth/challenges';
import type { Enrolment } from './auth/enrolment';
import { clientIdFor, type ClientSession } from './registry';
import { guardHandlers, toRefusal } from './door';
import { uploadHandler } from './upload';
import { LIMITS, RetryLater, describe } from '../proto/limits';
import * as path from 'node:path';
import { DOMAINS, joinSignedFields, verify } from '../proto/crypto/signing';
import { keyId } from '../proto/crypto/key-file';
import type { CoordinatorKeys as WireKeys } from '../proto/generated/fedtune/v1/CoordinatorKeys';
import type { SecAggAck } from '../proto/generated/fedtune/v1/SecAggAck';
import type { SecAggAttempt } from './secagg-attempt';
import { checkReportedRank } from './lora-aggregation';
import { evaluationReportDigest, metricsReportDigest } from './report-digest';
import { logsRoundSites } from './ops/sample-secrecy';
import { adFromWire, shareKeysFromWire, signatureFromWire, unmaskResponseFromWire } from '../proto/secagg/wire';
import { controlVariateDownload } from './strategy/scaffold-download';
import { DownloadImages, EncodedFrame } from './download-image';
import { announce, answerFrames, askOf, RangeCalls, servedPieces } from './download-ranges';

/** A range's trailer: its chunk count; no stream hash (each piece is checked against the header's list). */
const rangeTrailer = (n: number): TensorFrame => ({ trailer: { chunk_count: n, sha256: Buffer.alloc(0) } });

export { MAX_NUM_EXAMPLES } from './upload';
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
async function writeAll(call: grpc.ServerWritableStream<unknown, TensorFrame>, frames: Iterable<unknown>): Promise<void> {
  for (const f of frames) {
    if (call.cancelled) return;
    if (!call.write(f as TensorFrame)) {
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
  // The latest version's download, encoded once with the service's own serializer (download-image.ts).
  const encodeFrame = loadFedtuneProto().fedtune.v1.Federation.service.DownloadAdapter.responseSerialize;
  const images = new DownloadImages(encodeFrame);
  const rangeCalls = new RangeCalls(d.config.transport.maxRangeCallsPerSite);
  // Every selected site downloads a version as soon as it is committed: its image is made then, once, before the
  // next round's tasks go out (the engine emits roundCommitted before it opens the next round).
  d.engine.on('roundCommitted', (ev) => {
    const latest = d.engine.latest;
    if (latest?.manifest.version !== ev.version) return;
    try {
      const chunkBytes = d.config.transport.chunkBytes;
      images.get(ev.version, 'adapter', chunkBytes, () => latest.adapter, servedPieces(latest.manifest, chunkBytes, d.config.transport.maxRangeCallsPerSite));
    } catch (e) {
      // Never fails a commit: the first download builds it (and reports whatever went wrong) instead.
      d.log('warn', 'could not prepare the download of the committed version', { version: ev.version, err: (e as Error).message });
    }
  });
  const fail = (e: unknown, what: string): Partial<grpc.StatusObject> => {
    const r = toRefusal(e, knownPaths);
    // An internal failure's cause (which may name a file) stays in the operator's log; the site gets a generic status.
    d.log(r.internal ? 'error' : 'warn', `${what} rejected`, { code: status[r.status.code!], details: r.logDetails });
    return r.status;
  };
  /**
   * A report's repeat (report-digest.ts): the same ack as the first; logged as a repeat, never as a new report. A
   * metrics report is a round site's: not logged under Poisson sampling (ops/sample-secrecy.ts).
   */
  const repeated = (cb: (e: null, ack: object) => void, what: 'metrics' | 'evaluation', taskId: string, clientId: string): void => {
    if (what === 'evaluation' || logsRoundSites(d.config)) d.log('info', `${what} report repeated: acknowledged, counted once`, { taskId, clientId });
    cb(null, {});
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
  // The upload path (header, chunks streamed to the spool, trailer) has its own file: upload.ts.
  const upload = uploadHandler({
    config: d.config,
    registry: d.registry,
    engine: d.engine,
    runId: d.runId,
    unsealKey,
    session,
    checkVersion,
    fail,
    log: d.log,
  });

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
              await writeAll(call, tensorFrames(candidate, d.config.transport.chunkBytes));
              call.end();
              return;
            }
            const latest = d.engine.latest;
            const v = call.request.version;
            const cv = call.request.control_variate;
            const chunkBytes = d.config.transport.chunkBytes;
            // SCAFFOLD: the version's server control variate c instead of its adapter (strategy/scaffold-download.ts).
            const tensorsOf = (ck: Checkpoint): NamedTensor[] => (cv ? controlVariateDownload(d.config, ck) : ck.adapter);
            // Parallel downloads (download-ranges.ts): the adapter's piece hashes in the header, and whole-piece
            // ranges, at most transport.maxRangeCallsPerSite of them in flight per site.
            const ranged = Number(call.request.range_length) > 0;
            const release = ranged ? rangeCalls.enter(s.clientId) : undefined;
            if (release) for (const ev of ['close', 'cancelled', 'error']) call.once(ev, release);
            try {
              const ck = latest && latest.manifest.version === v ? latest : await readVersion(d.store, v, latest?.manifest.version);
              const pieces = cv ? undefined : servedPieces(ck.manifest, chunkBytes, d.config.transport.maxRangeCallsPerSite);
              const total = cv ? 0 : ck.adapter.reduce((n, t) => n + t.data.byteLength, 0);
              const ask = askOf(call.request, v, total, pieces);
              if (ck === latest) {
                // The latest version: its stream encoded once for every site (download-image.ts).
                const image = images.get(v, cv ? 'control_variate' : 'adapter', chunkBytes, () => tensorsOf(latest), pieces);
                await writeAll(
                  call,
                  answerFrames(image, ask, chunkBytes, (n) => new EncodedFrame(encodeFrame(rangeTrailer(n)))),
                );
              } else {
                await writeAll(call, answerFrames(announce(tensorFrames(tensorsOf(ck), chunkBytes), pieces), ask, chunkBytes, rangeTrailer));
              }
            } catch (e) {
              release?.();
              throw e;
            }
            call.end();
          } catch (e) {
            call.emit('error', fail(e, 'download'));
          }
        })();
      },

      UploadUpdate: upload,

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
          // A site that lost the ack resends the report: the same report again gets the same ack, and changes nothing.
          const sha256 = metricsReportDigest(r);
          const repeat = d.engine.repeatedReport(s.clientId, r.task_id, sha256);
          if (repeat) {
            return void repeat.then(
              () => repeated(cb, 'metrics', r.task_id, s.clientId),
              (e: unknown) => cb(fail(e, 'metrics')),
            );
          }
          const t = d.engine.task(s.clientId, r.task_id, r.round);
          checkReportedRank(r.lora_rank, d.engine.uploadLayoutOf(t), t.owner.aggregation, t.clientId);
          // Names, count and finiteness were checked at the door (proto/limits.ts checkMetrics); the metrics are
          // spooled with the update before the site hears back.
          d.engine.recordMetrics(t, { ...r.metrics }, r.backend || s.backend, r.lora_rank, sha256).then(
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
          const fresh = d.engine.evaluations.report(s.clientId, s.name, r.task_id, evaluationReportDigest(r), {
            version: r.version,
            numExamples: Number(r.num_examples),
            loss: r.loss,
            ...(r.has_accuracy ? { accuracy: r.accuracy } : {}),
          });
          if (fresh) cb(null, {});
          else repeated(cb, 'evaluation', r.task_id, s.clientId);
        } catch (e) {
          cb(fail(e, 'evaluation report'));
        }
      },

      DeclineTask(call, cb) {
        const r = call.request;
        // The reason is a code checked at the door (proto/limits.ts checkDecline), never the site's own text. The ack
        // follows the decline's spool record (Attempt.decline): an acknowledged decline survives a restart.
        const decline = async (): Promise<unknown> => d.engine.declineTask(session(r.session_token).clientId, r.task_id, r.round, r.reason);
        decline().then(
          () => cb(null, {}),
          (e: unknown) => cb(fail(e, 'decline')),
        );
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

/**
 * A committed version: NOT_FOUND beyond the latest; FAILED_PRECONDITION when the run's retention policy removed its
 * adapter (recorded, not damage: asking again cannot help, asking for the latest can); DATA_LOSS when a version that
 * should be whole cannot be read.
 */
async function readVersion(store: CheckpointStore, v: number, latest: number | undefined): Promise<Checkpoint> {
  if (latest === undefined || v > latest) {
    throw new ProtocolError(status.NOT_FOUND, `version ${v} does not exist (latest is ${latest ?? 'none'})`);
  }
  try {
    return await store.read(v);
  } catch (e) {
    if (e instanceof VersionPrunedError) throw new ProtocolError(status.FAILED_PRECONDITION, `version ${v} cannot be sent: ${e.message}`);
    throw new ProtocolError(status.DATA_LOSS, `version ${v} cannot be read: ${(e as Error).message}`);
  }
}
