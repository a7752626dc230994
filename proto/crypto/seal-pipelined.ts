// A large upload sealed on two threads at once. The signed header names the SHA-256 of all the ciphertext, so a
// site cannot send its first byte before every chunk is sealed and hashed; sealed in line (sealUpload) that is
// ChaCha20-Poly1305 then SHA-256 of each chunk, one after the other (about 35 + 37 ms for 64 MiB here). Here this
// thread seals chunk i+1 while a sealing thread (seal-offload.ts) hashes chunk i, so the wait before the first
// byte is about the longer of the two. The bytes are the same as sealUpload's for the same keys: same chunk
// ciphertexts and tags, same hash, same signed envelope.
import { OffThreadHash, SEAL_THREAD_MIN_BYTES } from './seal-offload';
import { sealUpload, SealSession, type SealedChunk, type SealedUpload, type SealOptions } from './sealed-upload';

/**
 * sealUpload, with the hashing on a sealing thread when the upload holds at least `minBytes` of plaintext
 * (SEAL_THREAD_MIN_BYTES unless given: below it the thread's round trips cost more than they save).
 */
export async function sealUploadPipelined(
  opts: SealOptions & {
    plaintextChunks: Iterable<Uint8Array>;
    minBytes?: number;
    /** The wire message's bytes before a chunk of n bytes (ciphertext || tag): the thread builds each whole message. */
    frameHead?: (n: number) => Buffer;
  },
): Promise<SealedUpload> {
  const plain = [...opts.plaintextChunks];
  const total = plain.reduce((n, p) => n + p.length, 0);
  if (total < (opts.minBytes ?? SEAL_THREAD_MIN_BYTES)) return sealUpload({ ...opts, plaintextChunks: plain });
  const s = new SealSession(opts);
  const hash = new OffThreadHash();
  const heads: number[] = [];
  let tags: Buffer[];
  try {
    tags = plain.map((p, i): Buffer => {
      const c = s.seal(p, i, i === plain.length - 1);
      const head = opts.frameHead?.(c.ciphertext.length + c.tag.length);
      heads.push(head?.length ?? -1);
      hash.push(c.ciphertext, c.tag, head); // moves the ciphertext to the thread; it comes back with the digest
      return c.tag;
    });
  } catch (e) {
    void hash.done().catch(() => undefined); // the thread forgets this upload
    throw e;
  }
  const { ciphertexts, digest } = await hash.done();
  if (ciphertexts.length !== tags.length) throw new Error(`sealing thread returned ${ciphertexts.length} of ${tags.length} chunks`);
  const parts = tags.map((tag, i): SealedChunk => {
    const b = ciphertexts[i];
    if (heads[i] < 0) return { ciphertext: b, tag };
    // head || ciphertext || tag: the parts are views into the wire message.
    return { ciphertext: b.subarray(heads[i], b.length - tag.length), tag: b.subarray(b.length - tag.length), wire: b };
  });
  return s.sign(parts, digest);
}
