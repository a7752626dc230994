// An upload's header, checked in full before anything is allocated or written: the session, the task it names
// (round, attempt, base version and manifest), the envelope's binding, the weight, the task's state, the declared
// layout and the signature (SealedUploadOpener checks it). The UploadUpdate stream (upload.ts) starts receiving only
// with what this returns; a resumed upload of bytes already accepted is answered from the accepted one instead.
import { status } from '@grpc/grpc-js';
import type { UploadHeader__Output } from '../proto/generated/fedtune/v1/UploadHeader';
import type { UploadResponse } from '../proto/generated/fedtune/v1/UploadResponse';
import type { SealedEnvelope__Output } from '../proto/generated/fedtune/v1/SealedEnvelope';
import { ProtocolError } from '../proto/errors';
import { checkLayout, validateHeader, type TensorSpecOut } from '../proto/tensor-stream';
import { SealedUploadOpener, uploadBinding, type UploadBinding } from '../proto/crypto/sealed-upload';
import type { ClientSession } from './registry';
import type { Task } from './rounds';
import type { SecAggAttempt } from './secagg-attempt';
import { refuseFrozen, roundAggregation } from './lora-aggregation';
import type { UploadDeps } from './upload';

/** Largest FedAvg weight one client may claim (see strategy/fixed-point.ts for the exact-sum bound). */
export const MAX_NUM_EXAMPLES = 2 ** 21;

/** A header that may start an upload, with what its checks established. */
export interface CheckedHeader {
  readonly kind: 'new';
  readonly session: ClientSession;
  readonly task: Task;
  readonly envelope: SealedEnvelope__Output;
  /** The round's SecAgg session when the update is a masked input. */
  readonly secagg: SecAggAttempt | undefined;
  readonly dtype: 'UINT32' | 'FLOAT32';
  readonly binding: UploadBinding;
  readonly opener: SealedUploadOpener;
}

/** A header re-sending bytes already accepted for the same task (the reply was lost): answered again, nothing changes. */
export interface ResumedHeader {
  readonly kind: 'resumed';
  readonly reply: UploadResponse;
}

export function checkUploadHeader(d: UploadDeps, h: UploadHeader__Output): CheckedHeader | ResumedHeader {
  d.checkVersion(h.protocol_version, 'upload');
  const s = d.session(h.session_token);
  const e = h.sealed;
  if (!e) throw new ProtocolError(status.INVALID_ARGUMENT, 'upload is not sealed: every upload must carry a signed SealedEnvelope');
  const digest = Buffer.from(e.ciphertext_sha256 ?? []).toString('hex');
  const earlier = d.engine.acceptedBy(digest);
  if (earlier && earlier.taskId === h.task_id && earlier.clientId === s.clientId && earlier.state === 'uploaded' && d.engine.isOpen(earlier))
    return { kind: 'resumed', reply: { task_id: earlier.taskId, round: earlier.round, sha256: Buffer.from(digest, 'hex'), duplicate: true } };
  if (earlier)
    throw new ProtocolError(
      status.ALREADY_EXISTS,
      `replayed upload: this sealed upload was already accepted for task ${earlier.taskId} (round ${earlier.round})`,
    );
  const t = d.engine.task(s.clientId, h.task_id, h.round);
  if (h.base_version !== t.baseVersion) {
    throw new ProtocolError(status.FAILED_PRECONDITION, `update is against version ${h.base_version}; task ${t.taskId} expects base_version ${t.baseVersion}`);
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
  } else {
    refuseFrozen(
      specs.map((x) => x.name),
      roundAggregation(d.config),
    );
    checkLayout(specs, d.engine.uploadLayoutOf(t)); // under 'ffa': the lora_B tensors only
  }
  // The fields the site signed, from the task as it was sent (the one builder site and coordinator share).
  const binding = uploadBinding(d.runId, s.clientId, t.wire, h.num_examples, h.protocol_version);
  const opener = new SealedUploadOpener(e, binding, h.tensors!, d.unsealKey, s.publicKey, s.name);
  return { kind: 'new', session: s, task: t, envelope: e, secagg: sa, dtype, binding, opener };
}

/** A SecAgg masked input travels as one UINT32 tensor `secagg.masked` of the round's vector length. */
function checkMaskedLayout(specs: readonly TensorSpecOut[], length: number): void {
  if (specs.length !== 1 || specs[0].name !== 'secagg.masked' || specs[0].shape.length !== 1 || specs[0].shape[0] !== length) {
    throw new ProtocolError(status.INVALID_ARGUMENT, `a masked upload must be one UINT32 tensor secagg.masked of shape [${length}] (${4 * length} bytes)`);
  }
}
