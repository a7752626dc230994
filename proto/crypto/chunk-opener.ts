// The per-chunk half of opening a sealed upload (sealed-upload.ts says how chunks are sealed): given the chunk key,
// the additional data and the nonce prefix, it opens chunk after chunk at its own index with its own final flag
// and hashes the ciphertext as it goes. Apart from SealedUploadOpener (which checks the envelope and derives the
// key) so that the same code, with the same refusals, runs on the coordinator's main thread or in the sealing
// thread (seal-thread.ts) that opens a large upload while the main thread keeps receiving it.
import { createDecipheriv, createHash } from 'node:crypto';
import { ProtocolError, status } from '../errors';

export const TAG_BYTES = 16;
export const PREFIX_BYTES = 7;

/** The nonce of chunk `index` (exported for tests that build hostile uploads by hand). */
export function nonce(prefix: Uint8Array, index: number, final: boolean): Buffer {
  const n = Buffer.alloc(12);
  Buffer.from(prefix).copy(n, 0);
  n.writeUInt32BE(index, PREFIX_BYTES);
  n[11] = final ? 1 : 0;
  return n;
}

/** What a ChunkOpener needs: all of it is derived from a checked, signed envelope (SealedUploadOpener). */
export interface ChunkKeys {
  readonly key: Uint8Array;
  readonly aad: Uint8Array;
  readonly prefix: Uint8Array;
  readonly count: number;
}

export class ChunkOpener {
  private opened = 0;
  private readonly hash = createHash('sha256');
  private digest: Buffer | undefined;
  private readonly key: Buffer;

  constructor(private readonly k: ChunkKeys) {
    this.key = Buffer.from(k.key);
  }

  get count(): number {
    return this.k.count;
  }

  private tryOpen(c: Uint8Array, index: number, final: boolean): Buffer | null {
    if (c.length < TAG_BYTES) return null;
    // Stryker disable next-line ObjectLiteral: equivalent: 16 bytes is ChaCha20-Poly1305's tag length in node:crypto when none is given.
    const d = createDecipheriv('chacha20-poly1305', this.key, nonce(this.k.prefix, index, final), { authTagLength: TAG_BYTES });
    // Stryker disable next-line ArithmeticOperator,ObjectLiteral: equivalent: plaintextLength is required by CCM only; ChaCha20-Poly1305 ignores it.
    d.setAAD(this.k.aad, { plaintextLength: c.length - TAG_BYTES });
    d.setAuthTag(c.subarray(c.length - TAG_BYTES));
    try {
      // ChaCha20-Poly1305 is a stream cipher: update() returns the whole plaintext and final() only checks
      // the tag (it returns no bytes), so no concatenation copy is needed.
      const p = d.update(c.subarray(0, c.length - TAG_BYTES));
      d.final();
      return p;
    } catch {
      return null;
    }
  }

  /** The plaintext of the next chunk; DATA_LOSS naming the fault when it is not the chunk expected here. */
  open(chunk: Uint8Array): Buffer {
    const i = this.opened;
    const count = this.k.count;
    if (i >= count) throw new ProtocolError(status.OUT_OF_RANGE, `sealed stream carries more than the ${count} chunks its header declares`);
    const final = i === count - 1;
    const p = this.tryOpen(chunk, i, final);
    if (p) {
      this.opened++;
      this.hash.update(chunk);
      return p;
    }
    // Explain the failure: a valid chunk from elsewhere in this upload means reordering or a drop.
    for (let j = 0; j < count && j < 4096; j++) {
      if (j !== i && this.tryOpen(chunk, j, j === count - 1)) {
        throw new ProtocolError(status.DATA_LOSS, `sealed chunk ${j} arrived at position ${i}: chunks were reordered or dropped`);
      }
    }
    if (this.tryOpen(chunk, i, !final)) {
      throw new ProtocolError(
        status.DATA_LOSS,
        `sealed chunk ${i} is marked ${final ? 'not final' : 'final'}, but the header declares ${count} chunks: the stream was truncated or spliced`,
      );
    }
    throw new ProtocolError(status.DATA_LOSS, `sealed chunk ${i} fails authentication: it was tampered with or not sealed for this upload`);
  }

  get chunksOpened(): number {
    return this.opened;
  }

  /** SHA-256 of every chunk opened (ciphertext || tag, in order); forgets the key. */
  finish(): Buffer {
    // Stryker disable next-line CallExpression: equivalent: after finish() the opener refuses any chunk by count before it would use the key.
    this.key.fill(0);
    return (this.digest ??= this.hash.digest());
  }

  /** Forgets the key of an upload that will not finish. */
  wipe(): void {
    this.key.fill(0);
  }
}
