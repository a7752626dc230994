// One accepted upload, as the coordinator holds it: the signed binding, the header, the envelope, and the
// plaintext delta, opened ONCE as the chunks arrived. The ciphertext is not held: each chunk goes to a temporary
// spool file as it arrives (spool-upload.ts), which is renamed into the round spool when the update is accepted.
// The delta lives only until the strategy has added it into the round's running sum.
// A spool record is [magic][meta length][meta JSON][chunk length, chunk]…: the meta is known from the header,
// so the record is written front to back while the chunks stream in. spool-reopen.ts runs a record through the
// same opener and decoder a live upload goes through, chunk by chunk, so a reloaded update is checked exactly as
// strictly (signature, chunk positions, ciphertext hash, layout) as it was on arrival.
import type { SealedEnvelope__Output } from '../proto/generated/fedtune/v1/SealedEnvelope';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import { SealedUploadOpener, type CoordinatorBoxSecret, type UploadBinding } from '../proto/crypto/sealed-upload';
import { TensorStreamDecoder } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';
import type { SpoolUpload } from './spool-upload';

export interface SealedUpdate {
  readonly binding: UploadBinding;
  readonly header: TensorHeader__Output;
  readonly envelope: SealedEnvelope__Output;
  /** A live upload's sealed bytes, on disk: committed into the round spool when the update is accepted. */
  readonly spooled?: SpoolUpload;
  /** Hex SHA-256 of the ciphertext (signed by the site): spots replays and answers resumed uploads. */
  readonly sha256: string;
  readonly clientName: string;
  readonly clientPublicKey: Uint8Array;
  /** The opened update; dropped (undefined) once it is in the round's sum. */
  delta: NamedTensor[] | undefined;
}

/** What a spool record adds to the update: the task's training seed (recorded in the manifest). */
export interface SpoolExtras {
  readonly seed: number;
}

interface RecordMeta extends SpoolExtras {
  readonly binding: UploadBinding;
  readonly header: TensorHeader__Output;
  readonly envelope: Record<keyof SealedEnvelope__Output, string | number>;
  readonly clientName: string;
  readonly clientPublicKey: string;
}

/** What a record starts with (a record of the earlier, chunks-after-meta layout has none and is not reloaded). */
export const SPOOL_RECORD_MAGIC = Buffer.from('fedtune.spool/2\n');

const BYTES: readonly (keyof SealedEnvelope__Output)[] = ['ephemeral_public_key', 'nonce_prefix', 'ciphertext_sha256', 'signature'];

/** The fields of an upload a record keeps besides its chunks (everything is known once the header checked out). */
export type SpoolHeadFields = Pick<SealedUpdate, 'binding' | 'header' | 'envelope' | 'clientName' | 'clientPublicKey'>;

/** The record's head: magic, 4-byte big-endian meta length, meta JSON. Each chunk follows as spoolChunkPrefix + bytes. */
export function encodeSpoolHead(u: SpoolHeadFields, extras: SpoolExtras): Buffer {
  const envelope = Object.fromEntries(
    Object.entries(u.envelope).map(([k, v]) => [k, Buffer.isBuffer(v) || v instanceof Uint8Array ? Buffer.from(v).toString('base64') : v]),
  ) as RecordMeta['envelope'];
  const meta: RecordMeta = {
    binding: u.binding,
    header: {
      protocol_version: u.header.protocol_version,
      tensors: u.header.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape.map(Number) })),
      total_bytes: Number(u.header.total_bytes),
      chunk_bytes: u.header.chunk_bytes,
      // Piece hashes belong to downloads (proto/pieces.ts); an upload's are never kept.
      piece_bytes: 0,
      piece_sha256: [],
      max_range_calls: 0,
    },
    envelope,
    clientName: u.clientName,
    clientPublicKey: Buffer.from(u.clientPublicKey).toString('base64'),
    seed: extras.seed,
  };
  const json = Buffer.from(JSON.stringify(meta));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([SPOOL_RECORD_MAGIC, len, json]);
}

/** The 4-byte big-endian length written before each chunk. */
export function spoolChunkPrefix(chunk: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(chunk.length);
  return len;
}

/** What a record's meta says, decoded: the upload as it was accepted (no values: those are in the chunks). */
export function spoolRecordMeta(json: Buffer): SpoolExtras & SpoolHeadFields {
  const meta = JSON.parse(json.toString('utf8')) as RecordMeta;
  const envelope = { ...meta.envelope } as Record<string, unknown>;
  for (const k of BYTES) envelope[k] = Buffer.from(String(meta.envelope[k] ?? ''), 'base64');
  return {
    binding: meta.binding,
    header: meta.header,
    envelope: envelope as unknown as SealedEnvelope__Output,
    clientName: meta.clientName,
    clientPublicKey: new Uint8Array(Buffer.from(meta.clientPublicKey, 'base64')),
    seed: meta.seed,
  };
}

/**
 * Opens a whole spool record held in memory: the site's signature over the binding is verified with the key
 * recorded at acceptance, every chunk authenticated at its position, the layout decoded. Throws on anything amiss.
 * The coordinator reads its records chunk by chunk instead (spool-reopen.ts reopenSpoolFile, the same checks).
 */
export function reopenSpoolRecord(bytes: Buffer, key: CoordinatorBoxSecret, maxBytes: number): SealedUpdate & SpoolExtras {
  const m = SPOOL_RECORD_MAGIC.length;
  if (bytes.length < m + 4 || !bytes.subarray(0, m).equals(SPOOL_RECORD_MAGIC)) throw new Error('not a fedtune.spool/2 record');
  const n = bytes.readUInt32BE(m);
  const meta = JSON.parse(bytes.subarray(m + 4, m + 4 + n).toString('utf8')) as RecordMeta;
  const envelope = { ...meta.envelope } as Record<string, unknown>;
  for (const k of BYTES) envelope[k] = Buffer.from(String(meta.envelope[k] ?? ''), 'base64');
  const env = envelope as unknown as SealedEnvelope__Output;
  const pk = Buffer.from(meta.clientPublicKey, 'base64');
  const opener = new SealedUploadOpener(env, meta.binding, meta.header, key, pk, meta.clientName);
  const decoder = new TensorStreamDecoder(meta.header, { maxBytes, dtype: 'FLOAT32', authenticated: true, requireFinite: false });
  let off = m + 4 + n;
  for (let i = 0; i < env.chunk_count; i++) {
    if (off + 4 > bytes.length) throw new Error(`spool record ends before chunk ${i} of ${env.chunk_count}`);
    const len = bytes.readUInt32BE(off);
    if (off + 4 + len > bytes.length) throw new Error(`spool record ends inside chunk ${i} of ${env.chunk_count}`);
    decoder.push(opener.open(bytes.subarray(off + 4, off + 4 + len)));
    off += 4 + len;
  }
  if (off !== bytes.length) throw new Error(`spool record holds ${bytes.length - off} bytes beyond its chunks`);
  opener.finish();
  return {
    binding: meta.binding,
    header: meta.header,
    envelope: env,
    sha256: env.ciphertext_sha256.toString('hex'),
    clientName: meta.clientName,
    clientPublicKey: new Uint8Array(pk),
    delta: decoder.finishAuthenticated(),
    seed: meta.seed,
  };
}
