// Where upload bytes are sealed. A client seals its plaintext tensor stream to the coordinator's X25519 key:
//   ephemeral key pair e; key k = nacl.box.before(coordinator box pk, e.sk) (X25519 + HSalsa20; boxKey below);
//   chunk i = ChaCha20-Poly1305(k, nonce = prefix(7) || i (uint32 BE) || final(1), aad = binding, plaintext i).
// A chunk only opens at its own index with its own final flag, so dropping, reordering, truncating or
// extending the stream is caught at the first chunk out of place. The header (task binding, layout, key ids,
// chunk count, ciphertext hash) is signed by the client's Ed25519 identity: attribution and no re-binding to
// another round, task or checkpoint. Native ChaCha20-Poly1305 (node:crypto) seals at memory speed; tweetnacl's
// pure-JS secretbox would cap uploads near 30 MB/s (bench/sealing.ts).
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { ProtocolError, status } from '../errors';
import nacl from 'tweetnacl';
import type { SealedEnvelope, SealedEnvelope__Output } from '../generated/fedtune/v1/SealedEnvelope';
import type { TensorHeader, TensorHeader__Output } from '../generated/fedtune/v1/TensorHeader';
import { PROTOCOL_VERSION } from '../constants';
import { DOMAINS, sign, verify, type Field } from './signing';
import { checkPeerX25519 } from './x25519';
import { agree, x25519KeyPair } from '../secagg/keys';
import { ChunkOpener, nonce, PREFIX_BYTES, TAG_BYTES, type ChunkKeys } from './chunk-opener';

export { nonce };

// NaCl's crypto_box_beforenm: HSalsa20 of the X25519 secret, zero input, the "expand 32-byte k" constant.
const SIGMA = new Uint8Array(Buffer.from('expand 32-byte k', 'latin1'));
const ZERO_16 = new Uint8Array(16);
type HSalsa20 = (out: Uint8Array, input: Uint8Array, key: Uint8Array, constant: Uint8Array) => number;
// tweetnacl exports its low-level functions without types.
const hsalsa20 = (nacl as unknown as { lowlevel: { crypto_core_hsalsa20: HSalsa20 } }).lowlevel.crypto_core_hsalsa20;

/**
 * The chunk key, byte for byte nacl.box.before(pk, sk), with the X25519 through node:crypto (agree: 0.07 ms
 * against tweetnacl's 0.7 ms here, and it refuses an all-zero secret); HSalsa20 stays tweetnacl's (µs).
 * Exported for the test that holds it to nacl.box.before.
 */
export function boxKey(pk: Uint8Array, sk: Uint8Array): Buffer {
  const shared = agree(sk, pk);
  const k = Buffer.alloc(32);
  hsalsa20(k, ZERO_16, shared, SIGMA);
  // Stryker disable next-line CallExpression: equivalent: zeroing a secret that nothing reads afterwards; no output can show it.
  shared.fill(0);
  return k;
}

/** What an upload is for; every field is covered by the client's signature. */
export interface UploadBinding {
  readonly protocolVersion: number;
  readonly runId: string;
  readonly clientId: string;
  readonly taskId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseVersion: number;
  readonly baseManifestSha256: string;
  readonly numExamples: number;
}

export interface CoordinatorBoxKey {
  readonly keyId: string;
  readonly boxPublicKey: Uint8Array;
}

/** One sealed chunk as the cipher made it. On the wire it is one `chunk` field: ciphertext || tag. */
export interface SealedChunk {
  readonly ciphertext: Buffer;
  readonly tag: Buffer;
  /**
   * The whole UploadFrame message `{ chunk: ciphertext || tag }` as it goes on the wire, when the sealing thread
   * built it (seal-pipelined.ts; ciphertext and tag are then views into it): the sender sends it as it is.
   */
  readonly wire?: Buffer;
}

/**
 * A sealed upload: the signed envelope and its chunks, ciphertext and tag kept apart. node:crypto's cipher cannot
 * write into a buffer of ours, so joining them would copy every ciphertext byte once more (64 MiB for a 64 MiB
 * update, and a second live copy of it): the sender writes the two parts straight into each message instead
 * (client-sdk/sealed-sender.ts serializeUploadMessage), and the wire carries the same bytes as a joined chunk.
 */
export interface SealedUpload {
  readonly envelope: SealedEnvelope;
  readonly parts: readonly SealedChunk[];
  /**
   * Each chunk as the coordinator receives it (ciphertext || tag), joined on first use and kept: for tests and
   * tools that build frames or open chunks by hand. The sender never reads it.
   */
  readonly chunks: Buffer[];
}

function sealedUpload(envelope: SealedEnvelope, parts: readonly SealedChunk[]): SealedUpload {
  let joined: Buffer[] | undefined;
  return {
    envelope,
    parts,
    get chunks(): Buffer[] {
      return (joined ??= parts.map((p) => Buffer.concat([p.ciphertext, p.tag])));
    },
  };
}

type AnyHeader = TensorHeader | TensorHeader__Output;
type AnyEnvelope = SealedEnvelope | SealedEnvelope__Output;

function layoutFields(t: AnyHeader): Field[] {
  const out: Field[] = [Number(t.total_bytes ?? 0), Number(t.chunk_bytes ?? 0), (t.tensors ?? []).length];
  for (const s of t.tensors ?? []) out.push(s.name ?? '', String(s.dtype ?? ''), (s.shape ?? []).map(String).join(','));
  return out;
}

/** A task as the coordinator sends it (TrainTask) and a site receives it: what an upload is bound to. */
export interface TaskFields {
  readonly task_id: string;
  readonly round: number;
  readonly attempt: number;
  readonly base_version: number;
  readonly base_manifest_sha256: string;
}

/** The one builder of an upload's binding: the site (sealing), the coordinator (opening) and tests use it. */
export function uploadBinding(
  runId: string,
  clientId: string,
  task: TaskFields,
  numExamples: number,
  protocolVersion: number = PROTOCOL_VERSION,
): UploadBinding {
  return {
    protocolVersion,
    runId,
    clientId,
    taskId: task.task_id,
    round: task.round,
    attempt: task.attempt,
    baseVersion: task.base_version,
    baseManifestSha256: task.base_manifest_sha256,
    numExamples,
  };
}

/** The exact fields the client signs (in this order, under DOMAINS.upload). */
export function uploadSignedFields(b: UploadBinding, tensors: AnyHeader, e: AnyEnvelope): Field[] {
  return [
    b.protocolVersion,
    b.runId,
    b.clientId,
    b.taskId,
    b.round,
    b.attempt,
    b.baseVersion,
    b.baseManifestSha256,
    b.numExamples,
    ...layoutFields(tensors),
    e.coordinator_key_id ?? '',
    toBytes(e.ephemeral_public_key),
    toBytes(e.nonce_prefix),
    Number(e.chunk_count ?? 0),
    toBytes(e.ciphertext_sha256),
  ];
}

const toBytes = (b: Uint8Array | string | null | undefined): Uint8Array =>
  b == null ? new Uint8Array(0) : typeof b === 'string' ? Buffer.from(b, 'base64') : b;

/** Additional data of every chunk: the upload's identity, so chunks cannot move between uploads. */
export function chunkAad(runId: string, clientId: string, taskId: string, eph: Uint8Array): Buffer {
  return createHash('sha256').update(DOMAINS.uploadChunk).update('\0').update(`${runId}\0${clientId}\0${taskId}\0`).update(eph).digest();
}

export function expectedChunkCount(totalBytes: number, chunkBytes: number): number {
  return totalBytes === 0 ? 0 : Math.ceil(totalBytes / chunkBytes);
}

export interface SealOptions {
  readonly binding: UploadBinding;
  readonly tensors: TensorHeader;
  readonly coordinator: CoordinatorBoxKey;
  readonly identitySecretKey: Uint8Array;
}

/**
 * One upload being sealed: a fresh ephemeral key and nonce prefix; seal() each chunk in order, then sign() the
 * envelope over the chunks' count and the SHA-256 of their ciphertext || tag (computed by the caller: in line by
 * sealUpload, on the sealing thread by seal-pipelined.ts). sign() forgets the chunk key.
 */
export class SealSession {
  private readonly eph = x25519KeyPair(); // through node:crypto: the same keys as nacl.box.keyPair, 0.65 ms faster
  private readonly key: Buffer;
  private readonly prefix = randomBytes(PREFIX_BYTES);
  private readonly aad: Buffer;

  constructor(private readonly o: SealOptions) {
    this.key = boxKey(o.coordinator.boxPublicKey, this.eph.secretKey);
    // Stryker disable next-line CallExpression: equivalent: zeroing a secret that nothing reads afterwards; no output can show it.
    this.eph.secretKey.fill(0);
    this.aad = chunkAad(o.binding.runId, o.binding.clientId, o.binding.taskId, this.eph.publicKey);
  }

  seal(p: Uint8Array, index: number, final: boolean): SealedChunk {
    // Stryker disable next-line ObjectLiteral: equivalent: 16 bytes is ChaCha20-Poly1305's tag length in node:crypto when none is given.
    const c = createCipheriv('chacha20-poly1305', this.key, nonce(this.prefix, index, final), { authTagLength: TAG_BYTES });
    c.setAAD(this.aad, { plaintextLength: p.length });
    // A stream cipher: update() returns the whole ciphertext and final() no bytes. The signed hash covers
    // ciphertext || tag of every chunk, exactly the bytes the coordinator receives and hashes (open()).
    const ciphertext = c.update(p);
    c.final();
    return { ciphertext, tag: c.getAuthTag() };
  }

  sign(parts: readonly SealedChunk[], ciphertextSha256: Buffer): SealedUpload {
    const b = this.o.binding;
    // Stryker disable next-line CallExpression: equivalent: zeroing a secret that nothing reads afterwards; no output can show it.
    this.key.fill(0);
    const envelope: SealedEnvelope = {
      run_id: b.runId,
      client_id: b.clientId,
      attempt: b.attempt,
      base_manifest_sha256: b.baseManifestSha256,
      coordinator_key_id: this.o.coordinator.keyId,
      ephemeral_public_key: this.eph.publicKey,
      nonce_prefix: this.prefix,
      chunk_count: parts.length,
      ciphertext_sha256: ciphertextSha256,
    };
    envelope.signature = sign(DOMAINS.upload, uploadSignedFields(b, this.o.tensors, envelope), this.o.identitySecretKey);
    return sealedUpload(envelope, parts);
  }
}

/** Seals plaintext chunks (as produced by dataChunks) and signs the header, all on this thread. */
export function sealUpload(opts: SealOptions & { plaintextChunks: Iterable<Uint8Array> }): SealedUpload {
  const s = new SealSession(opts);
  const plain = [...opts.plaintextChunks];
  const hash = createHash('sha256');
  const parts = plain.map((p, i): SealedChunk => {
    const c = s.seal(p, i, i === plain.length - 1);
    hash.update(c.ciphertext).update(c.tag);
    return c;
  });
  return s.sign(parts, hash.digest());
}

/** The coordinator's secret half, for opening. */
export interface CoordinatorBoxSecret extends CoordinatorBoxKey {
  readonly boxSecretKey: Uint8Array;
}

/**
 * Opens one sealed upload chunk by chunk, as it arrives. Construction checks the envelope (key id, signature,
 * declared chunk count); open() authenticates each chunk at its position; finish() catches truncation.
 * It keeps no ciphertext: the coordinator streams each chunk to its spool file (sealed, never in the clear).
 */
export class SealedUploadOpener {
  /** The chunks' half: opening and hashing (chunk-opener.ts); handed to the sealing thread for a large upload. */
  private readonly chunks: ChunkOpener;
  private keys: ChunkKeys | undefined;
  private readonly count: number;
  private digest: Buffer | undefined;
  /** Set once the chunks are opened elsewhere (handOff): the count and digest come back through adopt(). */
  private handed = false;
  private adopted: { opened: number; digest: Buffer } | undefined;

  constructor(
    readonly envelope: SealedEnvelope__Output,
    binding: UploadBinding,
    tensors: TensorHeader__Output,
    coordinator: CoordinatorBoxSecret,
    clientPublicKey: Uint8Array,
    clientName: string,
  ) {
    const e = envelope;
    if (e.coordinator_key_id !== coordinator.keyId) {
      throw new ProtocolError(
        status.FAILED_PRECONDITION,
        `upload is sealed to coordinator key ${e.coordinator_key_id || '(none)'}; this coordinator's key is ${coordinator.keyId}`,
      );
    }
    const eph = toBytes(e.ephemeral_public_key);
    const prefix = toBytes(e.nonce_prefix);
    if (eph.length !== 32 || prefix.length !== PREFIX_BYTES || toBytes(e.ciphertext_sha256).length !== 32) {
      throw new ProtocolError(status.INVALID_ARGUMENT, 'sealed envelope: ephemeral key must be 32 bytes, nonce prefix 7, ciphertext hash 32');
    }
    // A low-order ephemeral key makes the chunk key a public constant: anyone on the path could open the update.
    checkPeerX25519(eph, "the sealed envelope's ephemeral key");
    if (!verify(DOMAINS.upload, uploadSignedFields(binding, tensors, e), toBytes(e.signature), clientPublicKey)) {
      throw new ProtocolError(
        status.UNAUTHENTICATED,
        `upload signature does not verify with the enrolled key of ${clientName}: the header was altered or signed by another key`,
      );
    }
    this.count = e.chunk_count;
    const want = expectedChunkCount(Number(tensors.total_bytes), tensors.chunk_bytes);
    if (this.count !== want)
      throw new ProtocolError(
        status.INVALID_ARGUMENT,
        `sealed envelope declares ${this.count} chunks; ${tensors.total_bytes} bytes in chunks of ${tensors.chunk_bytes} make ${want}`,
      );
    // HSalsa20 hides an all-zero X25519 result in the key it derives: boxKey's agree() checks the raw X25519
    // secret itself (and refuses all-zero), belt and braces with the blocklist above.
    const key = boxKey(eph, coordinator.boxSecretKey);
    this.keys = { key, aad: chunkAad(binding.runId, binding.clientId, binding.taskId, eph), prefix, count: this.count };
    this.chunks = new ChunkOpener(this.keys);
  }

  /** The plaintext of the next chunk; DATA_LOSS naming the fault when it is not the chunk expected here. */
  open(chunk: Buffer): Buffer {
    if (this.handed) throw new Error('this upload is opened by the sealing thread');
    return this.chunks.open(chunk);
  }

  /**
   * What the sealing thread needs to open the chunks itself (seal-offload.ts OffThreadOpener), taken once, before
   * any chunk is opened here; from then on the count and digest come back through adopt().
   */
  handOff(): ChunkKeys {
    const k = this.keys;
    if (!k || this.chunks.chunksOpened > 0) throw new Error('handOff: only once, before any chunk is opened');
    this.keys = undefined;
    this.handed = true;
    const out = { ...k, key: Uint8Array.from(k.key) };
    this.chunks.wipe();
    k.key.fill(0);
    return out;
  }

  /** The sealing thread's account of the chunks it opened: how many, and the SHA-256 of their ciphertext. */
  adopt(opened: number, digest: Buffer): void {
    if (!this.handed) throw new Error('adopt: the chunks were not handed off');
    this.adopted = { opened, digest };
  }

  get chunksOpened(): number {
    return this.adopted?.opened ?? this.chunks.chunksOpened;
  }

  /** Checks that every chunk arrived and that the ciphertext is the one the client signed; forgets the key. */
  finish(): void {
    if (this.handed && !this.adopted) throw new Error('finish: the sealing thread has not reported the chunks');
    if (this.chunksOpened < this.count) {
      throw new ProtocolError(status.DATA_LOSS, `sealed stream truncated: ${this.chunksOpened} of ${this.count} chunks arrived`);
    }
    this.digest ??= this.adopted?.digest ?? this.chunks.finish();
    if (!this.digest.equals(toBytes(this.envelope.ciphertext_sha256))) {
      throw new ProtocolError(status.DATA_LOSS, 'ciphertext SHA-256 does not match the signed header');
    }
  }

  /** The stream's trailer must name the same ciphertext SHA-256 that arrived (and was signed); DATA_LOSS otherwise. */
  checkTrailer(sha256: Uint8Array | null | undefined): void {
    this.finish();
    const t = toBytes(sha256);
    if (t.length !== 32 || !this.digest!.equals(t)) {
      throw new ProtocolError(
        status.DATA_LOSS,
        `trailer SHA-256 ${t.length === 32 ? Buffer.from(t).toString('hex').slice(0, 16) + '…' : `(${t.length} bytes)`} does not match the ciphertext received (${this.digest!.toString('hex').slice(0, 16)}…)`,
      );
    }
  }
}
