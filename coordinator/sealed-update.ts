// One accepted upload, as the coordinator holds it: the signed binding, the header, the envelope and the
// ciphertext (spooled to disk sealed, never in the clear), and the plaintext delta, opened ONCE as the chunks
// arrived. The delta lives only until the strategy has added it into the round's running sum.
// A spool record is this minus the plaintext; reopen() runs it through the same opener and decoder a live
// upload goes through, so a reloaded update is checked exactly as strictly (signature, chunk positions,
// ciphertext hash, layout) as it was on arrival.
import type { SealedEnvelope__Output } from '../proto/generated/fedtune/v1/SealedEnvelope';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import { SealedUploadOpener, type CoordinatorBoxSecret, type UploadBinding } from '../proto/crypto/sealed-upload';
import { TensorStreamDecoder } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';

export interface SealedUpdate {
  readonly binding: UploadBinding;
  readonly header: TensorHeader__Output;
  readonly envelope: SealedEnvelope__Output;
  readonly ciphertext: readonly Buffer[];
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
  readonly chunkLengths: number[];
  readonly clientName: string;
  readonly clientPublicKey: string;
}

const BYTES: readonly (keyof SealedEnvelope__Output)[] = ['ephemeral_public_key', 'nonce_prefix', 'ciphertext_sha256', 'signature'];

/** [4-byte big-endian meta length][meta JSON][ciphertext chunks back to back]. */
export function encodeSpoolRecord(u: SealedUpdate, extras: SpoolExtras): Buffer[] {
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
    },
    envelope,
    chunkLengths: u.ciphertext.map((c) => c.length),
    clientName: u.clientName,
    clientPublicKey: Buffer.from(u.clientPublicKey).toString('base64'),
    seed: extras.seed,
  };
  const json = Buffer.from(JSON.stringify(meta));
  const len = Buffer.alloc(4);
  len.writeUInt32BE(json.length);
  return [len, json, ...u.ciphertext];
}

/**
 * Opens a spool record again: the site's signature over the binding is verified with the key recorded at
 * acceptance, every chunk authenticated at its position, the layout decoded. Throws on anything amiss.
 */
export function reopenSpoolRecord(bytes: Buffer, key: CoordinatorBoxSecret, maxBytes: number): SealedUpdate & SpoolExtras {
  const n = bytes.readUInt32BE(0);
  const meta = JSON.parse(bytes.subarray(4, 4 + n).toString('utf8')) as RecordMeta;
  const envelope = { ...meta.envelope } as Record<string, unknown>;
  for (const k of BYTES) envelope[k] = Buffer.from(String(meta.envelope[k] ?? ''), 'base64');
  const env = envelope as unknown as SealedEnvelope__Output;
  const pk = Buffer.from(meta.clientPublicKey, 'base64');
  const opener = new SealedUploadOpener(env, meta.binding, meta.header, key, pk, meta.clientName);
  const decoder = new TensorStreamDecoder(meta.header, { maxBytes, dtype: 'FLOAT32', authenticated: true, requireFinite: false });
  const ciphertext: Buffer[] = [];
  let off = 4 + n;
  for (const len of meta.chunkLengths) {
    const c = bytes.subarray(off, off + len);
    off += len;
    ciphertext.push(c);
    decoder.push(opener.open(c));
  }
  if (off !== bytes.length) throw new Error(`spool record holds ${bytes.length - off} bytes beyond its chunks`);
  opener.finish();
  return {
    binding: meta.binding,
    header: meta.header,
    envelope: env,
    ciphertext,
    sha256: env.ciphertext_sha256.toString('hex'),
    clientName: meta.clientName,
    clientPublicKey: new Uint8Array(pk),
    delta: decoder.finishAuthenticated(),
    seed: meta.seed,
  };
}
