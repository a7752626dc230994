// Pseudo-random words from node:crypto (OpenSSL). Two streams, two jobs:
//  - Keystream (ChaCha20): the graph permutation and the stochastic rounding; a few words or one pass per site.
//  - addMasks (AES-256-CTR, protocol version 4): mask expansion, k + 1 full-length streams per SecAgg+ site, the
//    largest part of a site's compute. AES-256-CTR runs at 8.3 GB/s on this dev box's AES-NI against ChaCha20's
//    5.2 (`openssl speed -evp`, 16 KiB blocks, 2026-11-29), 1.6x faster. (Until version 3 masks were ChaCha20:
//    peers on different PRGs produce a garbage sum that no check catches, hence the version bump.)
// Masks are added piece by piece (64 KiB: small update() outputs are recycled by malloc, multi-MiB ones cost fresh
// pages), up to 8 keystreams per pass over the piece, the additions in WebAssembly SIMD (simd.ts): the
// target piece stays in cache while every keystream is added to it. Large vectors are masked on a thread of
// their own (mask-worker.ts): every update() allocates, and the main heap's collections were half the cost.
import { createCipheriv, type Cipher } from 'node:crypto';
import * as os from 'node:os';
import { simd as simdModule } from './simd';
import { MASK_WORKER_MIN_BYTES, maskOnWorker } from './mask-worker';

if (os.endianness() !== 'LE') throw new Error('secagg assumes a little-endian host (keystream words are LE)');

const CHUNK_WORDS = 16384;
const ZEROS = Buffer.alloc(CHUNK_WORDS * 4);
const ZERO_IV = Buffer.alloc(16);

function cipherFor(key32: Uint8Array, iv16: Uint8Array): Cipher {
  if (key32.length !== 32) throw new RangeError(`keystream key must be 32 bytes, got ${key32.length}`);
  if (iv16.length !== 16) throw new RangeError(`keystream IV must be 16 bytes, got ${iv16.length}`);
  return createCipheriv('chacha20', key32, iv16);
}

/** The next n words of `c` as an int32 view (n ≤ CHUNK_WORDS). update() output is 4-byte aligned in practice. */
function nextWords(c: Cipher, n: number): Int32Array {
  const b = c.update(ZEROS.subarray(0, n * 4));
  if (b.byteOffset % 4 === 0) return new Int32Array(b.buffer, b.byteOffset, n);
  const out = new Int32Array(n);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/** A ChaCha20 keystream as uint32 words. The 16-byte IV is node's layout: 4-byte LE block counter, 12-byte nonce. */
export class Keystream {
  private readonly cipher: Cipher;

  constructor(key32: Uint8Array, iv16: Uint8Array = ZERO_IV) {
    this.cipher = cipherFor(key32, iv16);
  }

  /** The next `n` words (n ≤ 16384); the returned array is fresh and 4-byte aligned. */
  words(n: number): Uint32Array {
    if (!(n >= 0 && n <= CHUNK_WORDS)) throw new RangeError(`at most ${CHUNK_WORDS} words per call`);
    const w = nextWords(this.cipher, n);
    return new Uint32Array(w.buffer, w.byteOffset, n);
  }
}

export const KEYSTREAM_CHUNK_WORDS = CHUNK_WORDS;

/** One mask to add: +PRG(key) or −PRG(key). */
export interface Mask {
  readonly key: Uint8Array;
  readonly sign: 1 | -1;
}

/** The mask PRG: AES-256-CTR from a zero counter block; the key is used for this one stream only. */
export function maskCipher(key32: Uint8Array): Cipher {
  if (key32.length !== 32) throw new RangeError(`mask key must be 32 bytes, got ${key32.length}`);
  return createCipheriv('aes-256-ctr', key32, ZERO_IV);
}

// 64 KiB pieces, 8 keystreams per SIMD pass (9 × 64 KiB of module memory): 15 masks over 1M words took 17.9 ms of
// CPU against 21.3 with 32 KiB × 16 and 19.9 with 64 KiB × 16 (median of 9, this box, 2026-11-29): half the
// update() calls, and the streams of one pass still sit in L2 beside the piece.
const PIECE_BYTES = 1 << 16;
const GROUP = 8;
const PIECE_ZEROS = Buffer.alloc(PIECE_BYTES);

/**
 * bytes ← bytes + Σ plus − Σ minus, as little-endian uint32 words mod 2^32, each cipher's next bytes.length bytes
 * of keystream, 64 KiB at a time: the piece is copied into the SIMD module's memory, each cipher's next keystream
 * piece beside it, added (or subtracted) there, and copied back. The ciphers keep their position, so consecutive
 * calls over consecutive windows of one vector give the same words as one call over the whole (mask-worker.ts
 * relies on it).
 */
export function maskBytes(bytes: Uint8Array, plus: readonly Cipher[], minus: readonly Cipher[]): void {
  const simd = simdModule(PIECE_BYTES * (1 + GROUP));
  const mem = simd.memory;
  for (let off = 0; off < bytes.length; off += PIECE_BYTES) {
    const nb = Math.min(PIECE_BYTES, bytes.length - off);
    const zeros = PIECE_ZEROS.subarray(0, nb);
    mem.set(bytes.subarray(off, off + nb), 0);
    for (let p = 0, m = 0; p < plus.length || m < minus.length;) {
      const kp = Math.min(GROUP, plus.length - p);
      const km = Math.min(GROUP - kp, minus.length - m);
      let slot = PIECE_BYTES;
      for (let j = 0; j < kp; j++, slot += PIECE_BYTES) mem.set(plus[p + j].update(zeros), slot);
      for (let j = 0; j < km; j++, slot += PIECE_BYTES) mem.set(minus[m + j].update(zeros), slot);
      // Lanes past nb (the last piece may not fill a 16-byte row) read leftovers and are never copied back.
      simd.mask(0, (nb + 15) & ~15, PIECE_BYTES, kp, km, PIECE_BYTES);
      p += kp;
      m += km;
    }
    bytes.set(mem.subarray(0, nb), off);
  }
}

/**
 * target ← target + Σ sign·PRG(key) mod 2^32, elementwise (PRG words little-endian uint32), in one pass over
 * target (maskBytes). A large target is masked on the mask thread (mask-worker.ts), whose small heap collects the
 * keystream buffers cheaply; the words are the same either way.
 */
export function addMasks(target: Uint32Array, masks: readonly Mask[]): void {
  if (masks.length === 0) return;
  for (const m of masks) if (m.key.length !== 32) throw new RangeError(`mask key must be 32 bytes, got ${m.key.length}`);
  const bytes = new Uint8Array(target.buffer, target.byteOffset, target.byteLength);
  if (bytes.length >= MASK_WORKER_MIN_BYTES && maskOnWorker(bytes, masks)) return;
  const plus = masks.filter((m) => m.sign === 1).map((m) => maskCipher(m.key));
  const minus = masks.filter((m) => m.sign !== 1).map((m) => maskCipher(m.key));
  maskBytes(bytes, plus, minus);
}

/** target ← target + sign·PRG(key) mod 2^32, elementwise. */
export function addMask(target: Uint32Array, key32: Uint8Array, sign: 1 | -1): void {
  addMasks(target, [{ key: key32, sign }]);
}
