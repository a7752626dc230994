// The one home of the wire's bounds: how long every string, how large every bytes field, how many entries every
// repeated or map field of fedtune.proto may be, and how many bytes each RPC's request may take. The coordinator
// checks a request against them before it does any work or logs anything (coordinator/door.ts), and the SDK
// checks what it is about to send against the same functions, so a site never sends what would be refused.
// A refusal describes an over-long value (its length and a short prefix), never echoes it.
import type { DeclineTaskRequest } from './generated/fedtune/v1/DeclineTaskRequest';
import type { DownloadRequest } from './generated/fedtune/v1/DownloadRequest';
import type { EvaluationReport } from './generated/fedtune/v1/EvaluationReport';
import type { HelloRequest } from './generated/fedtune/v1/HelloRequest';
import type { JoinRequest } from './generated/fedtune/v1/JoinRequest';
import type { LeaveRequest } from './generated/fedtune/v1/LeaveRequest';
import type { MetricsReport } from './generated/fedtune/v1/MetricsReport';
import type { SecAggAdvertiseCall } from './generated/fedtune/v1/SecAggAdvertiseCall';
import type { SecAggShareKeysCall } from './generated/fedtune/v1/SecAggShareKeysCall';
import type { SecAggUnmaskCall } from './generated/fedtune/v1/SecAggUnmaskCall';
import type { SecAggConsistencyCall } from './generated/fedtune/v1/SecAggConsistencyCall';
import type { StreamTasksRequest } from './generated/fedtune/v1/StreamTasksRequest';
import type { TensorHeader } from './generated/fedtune/v1/TensorHeader';
import type { UploadFrame } from './generated/fedtune/v1/UploadFrame';
import { ProtocolError, status } from './errors';
import { MAX_CHUNK_BYTES } from './tensor-stream';

export const LIMITS = {
  /** client_name: a site name, [A-Za-z0-9_.@:-]. */
  clientName: 128,
  /** The tfjs backend a site reports (Join, ReportMetrics). */
  backend: 64,
  labels: 32,
  labelKey: 64,
  labelValue: 256,
  /** session_token (64 hex digits when issued) and join_token (ftj_ + 32 base64url characters). */
  token: 128,
  /** task_id, run_id, client ids, key ids, hex hashes: identifiers the coordinator issued or that name a thing. */
  id: 256,
  tensors: 4096,
  tensorName: 256,
  shapeDims: 8,
  metrics: 64,
  /** Largest LoRA rank a site may report training (MetricsReport.lora_rank). */
  loraRank: 65536,
  metricName: 64,
  /** Leave reason. */
  reason: 256,
  /** SecAgg: peers in one message (shares dealt, shares revealed). */
  secaggPeers: 4096,
  /** SecAgg: one sealed pair of Shamir shares (about 100 bytes). */
  secaggCiphertext: 512,
  /** SecAgg: one revealed Shamir share (33 bytes). */
  secaggShare: 64,
} as const;

/** Bytes of a sealed chunk's authentication tag (ChaCha20-Poly1305). */
const TAG_BYTES = 16;

/** The largest request message each RPC accepts, checked on the raw bytes before they are parsed. */
export const MAX_REQUEST_BYTES = {
  Hello: 256,
  Join: 32 * 1024,
  StreamTasks: 1024,
  DownloadAdapter: 1024,
  ReportMetrics: 16 * 1024,
  Leave: 1024,
  SecAggAdvertise: 4 * 1024,
  // Shares for every peer of a full graph: bounded by gRPC's own 4 MiB receive limit.
  SecAggShareKeys: 4 * 1024 * 1024,
  SecAggConsistency: 4 * 1024,
  SecAggUnmask: 4 * 1024 * 1024,
  UploadUpdate: 4 * 1024 * 1024,
  ReportEvaluation: 1024,
  DeclineTask: 1024,
} as const;

export type RpcName = keyof typeof MAX_REQUEST_BYTES;

/** Trailing metadata key of a RESOURCE_EXHAUSTED answer that may be retried: wait at least this long (ms). */
export const RETRY_AFTER_KEY = 'retry-after-ms';

/** The coordinator is busy, not the request wrong: RESOURCE_EXHAUSTED with a retry hint (RETRY_AFTER_KEY). */
export class RetryLater extends ProtocolError {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(status.RESOURCE_EXHAUSTED, message);
    this.name = 'RetryLater';
  }
}

/** The retry hint of a refused call, if the coordinator gave one. */
export function retryAfterOf(e: { metadata?: { get(key: string): unknown[] } } | null | undefined): number | undefined {
  const v = e?.metadata?.get(RETRY_AFTER_KEY)?.[0];
  const ms = typeof v === 'string' ? Number(v) : NaN;
  return Number.isSafeInteger(ms) && ms >= 0 && ms <= 3_600_000 ? ms : undefined;
}

/** A value for a message or a log line: short ones as they are, long ones as a prefix and their length. */
export function describe(s: string, keep = 48): string {
  return s.length <= keep ? JSON.stringify(s) : `${JSON.stringify(s.slice(0, keep))}… (${s.length} characters)`;
}

const bad = (msg: string): ProtocolError => new ProtocolError(status.INVALID_ARGUMENT, msg);
type Bytes = Uint8Array | string | null | undefined;

/** Length of a bytes field as the wire carried it (a string is the input form: base64). */
const byteLength = (b: Bytes): number => (b == null ? 0 : typeof b === 'string' ? Buffer.byteLength(b, 'base64') : b.length);

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const CLIENT_NAME = /^[\w.@:-]+$/;
const METRIC_NAME = /^[\w.:/-]+$/;
const LABEL_KEY = /^[\w.:/-]+$/;
const BACKEND = /^[\w.:+/-]*$/;

/** A string field: at most `max` characters, of `pattern` when given (else printable: no control characters). */
export function checkString(field: string, v: string | null | undefined, max: number, pattern?: RegExp, what?: string): void {
  const s = v ?? '';
  if (s.length > max) throw bad(`${field} is ${s.length} characters long; at most ${max} are accepted`);
  if (pattern ? !pattern.test(s) : CONTROL.test(s)) throw bad(`${field} ${describe(s)} must be ${what ?? 'printable (no control characters)'}`);
}

export function checkBytes(field: string, v: Bytes, max: number): void {
  const n = byteLength(v);
  if (n > max) throw bad(`${field} is ${n} bytes; at most ${max} are accepted`);
}

function checkCount(field: string, n: number, max: number): void {
  if (n > max) throw bad(`${field} has ${n} entries; at most ${max} are accepted`);
}

export function checkClientName(name: string | null | undefined): void {
  const s = name ?? '';
  if (s.length < 1) throw bad('client_name is empty; a site needs a name of 1-128 characters of [A-Za-z0-9_.@:-]');
  checkString('client_name', s, LIMITS.clientName, CLIENT_NAME, `1-${LIMITS.clientName} characters of [A-Za-z0-9_.@:-]`);
}

export const checkBackend = (b: string | null | undefined): void =>
  checkString('backend', b, LIMITS.backend, BACKEND, `at most ${LIMITS.backend} characters of [A-Za-z0-9_.:+/-]`);

export function checkLabels(labels: Readonly<Record<string, string>> | null | undefined): void {
  const entries = Object.entries(labels ?? {});
  checkCount('labels', entries.length, LIMITS.labels);
  for (const [k, v] of entries) {
    if (k.length < 1) throw bad('a label with an empty key');
    checkString('label key', k, LIMITS.labelKey, LABEL_KEY, `1-${LIMITS.labelKey} characters of [A-Za-z0-9_.:/-]`);
    checkString(`label ${k}`, v, LIMITS.labelValue);
  }
}

const token = (v: string | null | undefined): void => checkString('session_token', v, LIMITS.token, /^[\x21-\x7e]*$/, 'printable ASCII');
const taskId = (v: string | null | undefined, field = 'task_id'): void => checkString(field, v, LIMITS.id, /^[\x21-\x7e]*$/, 'printable ASCII');
const id = taskId;

export function checkMetrics(metrics: Readonly<Record<string, number | string>> | null | undefined): void {
  const entries = Object.entries(metrics ?? {});
  // Metrics land in every manifest: keep them finite and bounded.
  if (entries.length > LIMITS.metrics) throw bad(`${entries.length} metrics; at most ${LIMITS.metrics} are recorded`);
  for (const [k, v] of entries) {
    checkString('metric name', k, LIMITS.metricName, METRIC_NAME, `1-${LIMITS.metricName} characters of [A-Za-z0-9_.:/-]`);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw bad(`metric ${k} is ${v}; metrics must be finite`);
  }
}

export const checkHello = (_r: HelloRequest): void => undefined;

export function checkJoin(r: JoinRequest): void {
  checkClientName(r.client_name);
  checkBackend(r.backend);
  checkLabels(r.labels);
  checkBytes('public_key', r.public_key, 32);
  checkBytes('challenge', r.challenge, 32);
  checkBytes('signature', r.signature, 64);
  checkString('join_token', r.join_token, LIMITS.token, /^[\x21-\x7e]*$/, 'printable ASCII');
  id(r.coordinator_key_id, 'coordinator_key_id');
}

export const checkStreamTasks = (r: StreamTasksRequest): void => token(r.session_token);
export function checkDownload(r: DownloadRequest): void {
  token(r.session_token);
  taskId(r.evaluation_task_id, 'evaluation_task_id');
  // Parallel downloads (proto/pieces.ts): the range's place in the stream is checked against the version by the
  // service; here only that it is a range at all.
  const off = Number(r.range_offset ?? 0);
  const len = Number(r.range_length ?? 0);
  if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0) throw bad(`range ${off}+${len} is not a byte range`);
  if (len === 0 && off !== 0) throw bad(`range_offset ${off} without a range_length`);
  if (len > 0 && r.header_only) throw bad('header_only and a range in one request');
  if ((len > 0 || r.header_only) && (r.evaluation_task_id || r.control_variate))
    throw bad('ranges are served for committed adapters only, not evaluation candidates or control variates');
}

/** Most validation examples one evaluation report may claim (the FedAvg weight bound, MAX_NUM_EXAMPLES). */
export const MAX_EVAL_EXAMPLES = 2 ** 21;
/** Largest mean validation loss accepted: far above any cross-entropy a real model reports (ln of a vocabulary). */
export const MAX_EVAL_LOSS = 1e4;

/** A federated evaluation report: figures finite and in range before they can enter a manifest's weighted mean. */
export function checkEvaluationReport(r: EvaluationReport): void {
  token(r.session_token);
  taskId(r.task_id);
  const n = Number(r.num_examples ?? 0);
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_EVAL_EXAMPLES) throw bad(`num_examples ${n} outside 0..${MAX_EVAL_EXAMPLES}`);
  const loss = r.loss ?? 0;
  if (typeof loss !== 'number' || !Number.isFinite(loss)) throw bad(`loss is ${loss}; an evaluation loss must be finite`);
  if (loss < 0 || loss > MAX_EVAL_LOSS) throw bad(`loss ${loss} outside 0..${MAX_EVAL_LOSS}`);
  const acc = r.accuracy ?? 0;
  if (typeof acc !== 'number' || !Number.isFinite(acc)) throw bad(`accuracy is ${acc}; an evaluation accuracy must be finite`);
  if (acc < 0 || acc > 1) throw bad(`accuracy ${acc} outside [0, 1]`);
  if (!r.has_accuracy && acc !== 0) throw bad('accuracy is set but has_accuracy is false');
  if (n === 0 && (loss !== 0 || r.has_accuracy)) throw bad('a declined evaluation (num_examples 0) carries no figures');
}

export function checkReport(r: MetricsReport): void {
  token(r.session_token);
  taskId(r.task_id);
  checkBackend(r.backend);
  checkMetrics(r.metrics);
  if (r.lora_rank !== undefined && !(Number.isInteger(r.lora_rank) && r.lora_rank >= 0 && r.lora_rank <= LIMITS.loraRank)) {
    throw bad(`lora_rank ${r.lora_rank} outside 0..${LIMITS.loraRank}`);
  }
}

/** The reasons a site may give for declining a task (DeclineReason without its unset value). */
export const DECLINE_REASONS: readonly string[] = ['TRAINING_FAILED', 'SETTINGS_MISMATCH'];

export function checkDecline(r: DeclineTaskRequest): void {
  token(r.session_token);
  taskId(r.task_id);
  // An unknown number off the wire stays a number (enums: String); the unset value says nothing.
  if (typeof r.reason !== 'string' || !DECLINE_REASONS.includes(r.reason)) {
    throw bad(`reason ${describe(String(r.reason), 32)} is not one of ${DECLINE_REASONS.join(', ')}`);
  }
}

export function checkLeave(r: LeaveRequest): void {
  token(r.session_token);
  checkString('reason', r.reason, LIMITS.reason);
}

export function checkAdvertise(r: SecAggAdvertiseCall): void {
  token(r.session_token);
  taskId(r.task_id);
  const a = r.advertisement;
  if (!a) return;
  id(a.client_id, 'advertisement.client_id');
  checkBytes('advertisement.enc_public_key', a.enc_public_key, 32);
  checkBytes('advertisement.mask_public_key', a.mask_public_key, 32);
  checkBytes('advertisement.signature', a.signature, 64);
}

export function checkShareKeys(r: SecAggShareKeysCall): void {
  token(r.session_token);
  taskId(r.task_id);
  const m = r.share_keys;
  if (!m) return;
  id(m.from, 'share_keys.from');
  checkBytes('share_keys.seed_hash', m.seed_hash, 32);
  checkBytes('share_keys.signature', m.signature, 64);
  checkCount('share_keys.shares', (m.shares ?? []).length, LIMITS.secaggPeers);
  for (const s of m.shares ?? []) {
    id(s.to, 'share.to');
    checkBytes('share.ciphertext', s.ciphertext, LIMITS.secaggCiphertext);
    checkBytes('share.b_commitment', s.b_commitment, 32);
    checkBytes('share.sk_commitment', s.sk_commitment, 32);
  }
}

export function checkConsistency(r: SecAggConsistencyCall): void {
  token(r.session_token);
  taskId(r.task_id);
  const c = r.signature;
  if (!c) return;
  id(c.from, 'signature.from');
  checkBytes('signature.signature', c.signature, 64);
}

export function checkUnmask(r: SecAggUnmaskCall): void {
  token(r.session_token);
  taskId(r.task_id);
  const m = r.response;
  if (!m) return;
  id(m.from, 'response.from');
  for (const [field, list] of [
    ['b_shares', m.b_shares ?? []],
    ['sk_shares', m.sk_shares ?? []],
  ] as const) {
    checkCount(`response.${field}`, list.length, LIMITS.secaggPeers);
    for (const s of list) {
      id(s.of, `${field}.of`);
      checkBytes(`${field}.share`, s.share, LIMITS.secaggShare);
    }
  }
}

export function checkTensorHeader(h: TensorHeader | null | undefined): void {
  if (!h) return;
  const tensors = h.tensors ?? [];
  checkCount('tensors', tensors.length, LIMITS.tensors);
  for (const t of tensors) {
    checkString('tensor name', t.name, LIMITS.tensorName, /^[\x21-\x7e]*$/, 'printable ASCII');
    checkCount(`shape of tensor ${t.name}`, (t.shape ?? []).length, LIMITS.shapeDims);
  }
}

/** One frame of an upload stream (header, chunk or trailer). */
export function checkUploadFrame(f: UploadFrame): void {
  if (f.header) {
    const h = f.header;
    token(h.session_token);
    taskId(h.task_id);
    checkTensorHeader(h.tensors);
    const e = h.sealed;
    if (e) {
      id(e.run_id, 'sealed.run_id');
      id(e.client_id, 'sealed.client_id');
      checkString('sealed.base_manifest_sha256', e.base_manifest_sha256, 64, /^[0-9a-f]*$/, 'hex');
      id(e.coordinator_key_id, 'sealed.coordinator_key_id');
      checkBytes('sealed.ephemeral_public_key', e.ephemeral_public_key, 32);
      checkBytes('sealed.nonce_prefix', e.nonce_prefix, 7);
      checkBytes('sealed.ciphertext_sha256', e.ciphertext_sha256, 32);
      checkBytes('sealed.signature', e.signature, 64);
    }
  } else if (f.chunk != null) checkBytes('chunk', f.chunk, MAX_CHUNK_BYTES + TAG_BYTES);
  else if (f.trailer) checkBytes('trailer.sha256', f.trailer.sha256, 32);
}
