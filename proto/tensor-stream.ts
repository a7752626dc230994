// Chunked tensor streams: the one place where adapters become bytes on the wire and back.
// A stream is header → chunks → trailer (see fedtune.proto). The decoder checks everything a peer could get
// wrong or forge — declared sizes, chunk sizes, truncation, extra bytes, the hash, non-finite values — and
// reports each with the gRPC status that names the fault, so the service can reject without side effects.
import { createHash } from 'node:crypto';
import * as os from 'node:os';
import { ProtocolError, status } from './errors';
import type { TensorHeader, TensorHeader__Output } from './generated/fedtune/v1/TensorHeader';
import type { StreamTrailer, StreamTrailer__Output } from './generated/fedtune/v1/StreamTrailer';
import { PROTOCOL_VERSION, DEFAULT_CHUNK_BYTES } from './constants';
import { NamedTensor, TensorList, numel } from './tensors';

// Stryker disable next-line all: equivalent on every host the tests run on (little-endian): only a big-endian host takes this branch.
if (os.endianness() !== 'LE') throw new Error('fedtune assumes a little-endian host (tensor bytes are LE)');

/** Largest chunk a peer may send: gRPC's default 4 MiB receive limit minus room for framing. */
export const MAX_CHUNK_BYTES = 4 * 1024 * 1024 - 64 * 1024;

export type Frame =
  | { header: TensorHeader; chunk?: undefined; trailer?: undefined }
  | { chunk: Buffer; header?: undefined; trailer?: undefined }
  | { trailer: StreamTrailer; header?: undefined; chunk?: undefined };

export function tensorHeader(tensors: TensorList, chunkBytes = DEFAULT_CHUNK_BYTES): TensorHeader {
  let total = 0;
  for (const t of tensors) total += t.data.byteLength;
  return {
    protocol_version: PROTOCOL_VERSION,
    tensors: tensors.map((t) => ({ name: t.name, dtype: 'FLOAT32', shape: [...t.shape] })),
    total_bytes: total,
    chunk_bytes: chunkBytes,
  };
}

/**
 * Yields the data chunks of `tensors` (concatenated in order) without copying whole tensors: a chunk is a
 * view when it lies inside one tensor and a small copy when it spans a boundary.
 */
export function* dataChunks(tensors: TensorList, chunkBytes = DEFAULT_CHUNK_BYTES): Generator<Buffer> {
  if (!(chunkBytes > 0 && chunkBytes <= MAX_CHUNK_BYTES)) throw new RangeError(`chunkBytes ${chunkBytes} out of range`);
  let pending: Buffer[] = [];
  let pendingLen = 0;
  for (const t of tensors) {
    let view = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    while (view.length > 0) {
      const take = Math.min(chunkBytes - pendingLen, view.length);
      pending.push(view.subarray(0, take));
      pendingLen += take;
      view = view.subarray(take);
      if (pendingLen === chunkBytes) {
        yield pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingLen);
        pending = [];
        pendingLen = 0;
      }
    }
  }
  if (pendingLen > 0) yield pending.length === 1 ? pending[0] : Buffer.concat(pending, pendingLen);
}

/** The whole stream: header, chunks, trailer (chunk count and SHA-256 of the data bytes). */
export function* tensorFrames(tensors: TensorList, chunkBytes = DEFAULT_CHUNK_BYTES): Generator<Frame> {
  yield { header: tensorHeader(tensors, chunkBytes) };
  const hash = createHash('sha256');
  let count = 0;
  for (const c of dataChunks(tensors, chunkBytes)) {
    hash.update(c);
    count++;
    yield { chunk: c };
  }
  yield { trailer: { chunk_count: count, sha256: hash.digest() } };
}

export interface DecoderLimits {
  /** Refuse streams declaring more data than this (RESOURCE_EXHAUSTED). */
  maxBytes: number;
  /** Refuse NaN/Inf values (INVALID_ARGUMENT). Uploads set this; trusted downloads need not. */
  requireFinite: boolean;
  /** With requireFinite: also refuse |value| ≥ maxAbs (e.g. the aggregation strategy's range), in the same pass. */
  maxAbs?: number;
  /** Who imposes maxAbs, for the message (e.g. "the fedavg strategy"). */
  maxAbsOwner?: string;
  /** The one dtype accepted (default FLOAT32; SecAgg's masked vectors are UINT32). */
  dtype?: WireDType;
  /**
   * The transport already authenticates every chunk and the whole stream (sealed uploads): skip the SHA-256,
   * which nothing would read; finish with finishAuthenticated() or finishWords().
   */
  authenticated?: boolean;
  /**
   * false: check the stream's framing (chunk sizes, total, completeness) and keep none of its bytes; the caller
   * consumes each chunk as it is pushed (a coordinator folding an upload into its running sum). Finish with
   * finishStreamed().
   */
  retain?: boolean;
}

export type WireDType = 'FLOAT32' | 'UINT32';

export interface TensorSpecOut {
  name: string;
  shape: number[];
}

/** Checks a header's declarations and returns the specs; throws ProtocolError on any inconsistency. */
export function validateHeader(h: TensorHeader__Output | null | undefined, maxBytes: number, dtype: WireDType = 'FLOAT32'): TensorSpecOut[] {
  if (!h) throw new ProtocolError(status.INVALID_ARGUMENT, 'tensor header missing');
  if (h.protocol_version !== PROTOCOL_VERSION) {
    throw new ProtocolError(status.FAILED_PRECONDITION, `tensor stream speaks protocol version ${h.protocol_version}; this peer speaks ${PROTOCOL_VERSION}`);
  }
  if (!(h.chunk_bytes > 0 && h.chunk_bytes <= MAX_CHUNK_BYTES)) {
    throw new ProtocolError(status.INVALID_ARGUMENT, `chunk_bytes ${h.chunk_bytes} outside 1..${MAX_CHUNK_BYTES}`);
  }
  const names = new Set<string>();
  let declared = 0;
  const specs: TensorSpecOut[] = [];
  for (const t of h.tensors) {
    if (!t.name) throw new ProtocolError(status.INVALID_ARGUMENT, 'tensor with an empty name');
    if (names.has(t.name)) throw new ProtocolError(status.INVALID_ARGUMENT, `tensor ${t.name} declared twice`);
    names.add(t.name);
    if (t.dtype !== dtype) {
      throw new ProtocolError(status.INVALID_ARGUMENT, `tensor ${t.name} has dtype ${t.dtype}; only ${dtype} is accepted`);
    }
    const shape = t.shape.map(Number);
    if (shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new ProtocolError(status.INVALID_ARGUMENT, `tensor ${t.name} has an invalid shape [${t.shape}]`);
    }
    declared += numel(shape) * 4;
    specs.push({ name: t.name, shape });
  }
  if (declared !== h.total_bytes) {
    throw new ProtocolError(status.INVALID_ARGUMENT, `header declares total_bytes ${h.total_bytes} but its tensors need ${declared}`);
  }
  if (declared > maxBytes) {
    throw new ProtocolError(status.RESOURCE_EXHAUSTED, `stream of ${declared} bytes exceeds the limit of ${maxBytes}`);
  }
  return specs;
}

/** Refuses a header whose tensors differ from `expected` in names, order or shapes. */
export function checkLayout(specs: readonly TensorSpecOut[], expected: TensorList): void {
  const want = new Map(expected.map((t) => [t.name, t.shape]));
  for (const s of specs) {
    const shape = want.get(s.name);
    if (!shape) throw new ProtocolError(status.INVALID_ARGUMENT, `unexpected tensor ${s.name}`);
    if (shape.join(',') !== s.shape.join(',')) {
      throw new ProtocolError(status.INVALID_ARGUMENT, `tensor ${s.name} has shape [${s.shape}]; the global adapter has [${shape}]`);
    }
  }
  if (specs.length !== expected.length) {
    const got = new Set(specs.map((s) => s.name));
    const missing = expected.filter((t) => !got.has(t.name)).map((t) => t.name);
    throw new ProtocolError(status.INVALID_ARGUMENT, `missing tensors: ${missing.slice(0, 3).join(', ')}`);
  }
  for (let i = 0; i < specs.length; i++) {
    if (specs[i].name !== expected[i].name) {
      throw new ProtocolError(status.INVALID_ARGUMENT, `tensors out of order at ${i}: ${specs[i].name}`);
    }
  }
}

/** Reassembles one tensor stream. Feed it chunks, then the trailer (or undefined if the stream ended). */
export class TensorStreamDecoder {
  readonly specs: TensorSpecOut[];
  private readonly totalBytes: number;
  private readonly chunkBytes: number;
  private readonly buf: Buffer | undefined;
  private received = 0;
  private chunks = 0;
  private readonly hash = createHash('sha256');
  private readonly hashing: boolean;

  constructor(
    header: TensorHeader__Output | null | undefined,
    private readonly limits: DecoderLimits,
  ) {
    this.specs = validateHeader(header, limits.maxBytes, limits.dtype);
    this.hashing = !limits.authenticated;
    this.totalBytes = header!.total_bytes;
    this.chunkBytes = header!.chunk_bytes;
    // Float32Array views need 4-byte alignment, so own the buffer rather than pooling.
    this.buf = limits.retain === false ? undefined : Buffer.alloc(this.totalBytes);
  }

  get bytesReceived(): number {
    return this.received;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) throw new ProtocolError(status.INVALID_ARGUMENT, `chunk ${this.chunks} is empty`);
    if (chunk.length > this.chunkBytes) {
      throw new ProtocolError(status.INVALID_ARGUMENT, `chunk ${this.chunks} has ${chunk.length} bytes; the header allows ${this.chunkBytes}`);
    }
    if (this.received + chunk.length > this.totalBytes) {
      throw new ProtocolError(status.OUT_OF_RANGE, `stream carries more than the ${this.totalBytes} bytes its header declares`);
    }
    if (this.buf) chunk.copy(this.buf, this.received);
    // Stryker disable next-line ConditionalExpression: equivalent: an authenticated decoder that hashed anyway would only lose time; it never reads the hash (finish() refuses first, the other finishes ignore it).
    if (this.hashing) this.hash.update(chunk);
    this.received += chunk.length;
    this.chunks++;
  }

  /** Completes the stream; throws DATA_LOSS when it was cut short or does not match its trailer. */
  finish(trailer: StreamTrailer__Output | null | undefined): NamedTensor[] {
    if (this.received < this.totalBytes) {
      throw new ProtocolError(status.DATA_LOSS, `stream truncated: received ${this.received} of ${this.totalBytes} bytes`);
    }
    if (!trailer) throw new ProtocolError(status.DATA_LOSS, 'stream ended without its trailer');
    if (!this.hashing) throw new Error('an authenticated decoder keeps no hash: use finishAuthenticated()');
    if (trailer.chunk_count !== this.chunks) {
      throw new ProtocolError(status.DATA_LOSS, `trailer counts ${trailer.chunk_count} chunks; ${this.chunks} arrived`);
    }
    const digest = this.hash.digest();
    if (!trailer.sha256 || !digest.equals(trailer.sha256)) {
      throw new ProtocolError(status.DATA_LOSS, 'stream SHA-256 does not match its trailer');
    }
    return this.tensors(digest);
  }

  /**
   * Completes a stream whose integrity was already established by its transport (sealed uploads: every chunk
   * authenticated, the chunk count and ciphertext hash signed): checks only completeness and the values.
   */
  finishAuthenticated(): NamedTensor[] {
    this.checkComplete();
    return this.tensors(undefined);
  }

  /** Completes a stream that kept none of its bytes (retain: false): checks only that every byte arrived. */
  finishStreamed(): void {
    this.checkComplete();
  }

  /** A UINT32 stream's values (one tensor or several, concatenated), once complete; a view, not a copy. */
  finishWords(): Uint32Array {
    if (this.limits.dtype !== 'UINT32') throw new Error('finishWords() reads UINT32 streams only');
    this.checkComplete();
    const b = this.kept();
    return new Uint32Array(b.buffer, b.byteOffset, this.totalBytes / 4);
  }

  private checkComplete(): void {
    if (this.received < this.totalBytes) {
      throw new ProtocolError(status.DATA_LOSS, `stream truncated: received ${this.received} of ${this.totalBytes} bytes`);
    }
  }

  private kept(): Buffer {
    if (!this.buf) throw new Error('this decoder keeps no bytes (retain: false): finish it with finishStreamed()');
    return this.buf;
  }

  private tensors(digest: Buffer | undefined): NamedTensor[] {
    const buf = this.kept();
    const out: NamedTensor[] = [];
    let off = 0;
    for (const s of this.specs) {
      const n = numel(s.shape);
      const data = new Float32Array(buf.buffer, buf.byteOffset + off, n);
      if (this.limits.requireFinite) {
        const max = this.limits.maxAbs ?? Infinity;
        for (let i = 0; i < n; i++) {
          const v = data[i];
          // One comparison catches NaN, ±Inf and out-of-range values; the rare failure explains which.
          if (!(v < max && v > -max)) {
            const why = Number.isFinite(v) ? `outside ±${max}: update refused by ${this.limits.maxAbsOwner ?? 'the receiver'}` : 'updates must be finite';
            throw new ProtocolError(status.INVALID_ARGUMENT, `tensor ${s.name} holds ${v} at element ${i}; ${why}`);
          }
        }
      }
      out.push({ name: s.name, dtype: 'float32', shape: s.shape, data });
      off += n * 4;
    }
    this.digest = digest;
    return out;
  }

  /** SHA-256 of the data bytes, set once finish() succeeded (not kept by authenticated decoders). */
  digest: Buffer | undefined;
}
