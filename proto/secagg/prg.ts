// Mask expansion: a ChaCha20 keystream (node:crypto, OpenSSL) read as little-endian uint32 words. Produced in
// 64 KiB pieces: OpenSSL's output for small updates is ~3x faster here than for multi-MiB ones (allocation).
import { createCipheriv, type Cipher } from 'node:crypto';
import * as os from 'node:os';

if (os.endianness() !== 'LE') throw new Error('secagg assumes a little-endian host (keystream words are LE)');

const CHUNK_WORDS = 16384;
const ZEROS = Buffer.alloc(CHUNK_WORDS * 4);
const ZERO_IV = Buffer.alloc(16);

/** A ChaCha20 keystream as uint32 words. The 16-byte IV is node's layout: 4-byte LE block counter, 12-byte nonce. */
export class Keystream {
  private readonly cipher: Cipher;

  constructor(key32: Uint8Array, iv16: Uint8Array = ZERO_IV) {
    if (key32.length !== 32) throw new RangeError(`keystream key must be 32 bytes, got ${key32.length}`);
    if (iv16.length !== 16) throw new RangeError(`keystream IV must be 16 bytes, got ${iv16.length}`);
    this.cipher = createCipheriv('chacha20', key32, iv16);
  }

  /** The next `n` words (n ≤ 16384); the returned array is fresh and 4-byte aligned. */
  words(n: number): Uint32Array {
    if (!(n >= 0 && n <= CHUNK_WORDS)) throw new RangeError(`at most ${CHUNK_WORDS} words per call`);
    const b = this.cipher.update(ZEROS.subarray(0, n * 4));
    if (b.byteOffset % 4 === 0) return new Uint32Array(b.buffer, b.byteOffset, n);
    const out = new Uint32Array(n);
    new Uint8Array(out.buffer).set(b);
    return out;
  }
}

export const KEYSTREAM_CHUNK_WORDS = CHUNK_WORDS;

/** target ← target + sign·PRG(key) mod 2^32, elementwise. Uint32Array stores apply ToUint32, i.e. mod 2^32. */
export function addMask(target: Uint32Array, key32: Uint8Array, sign: 1 | -1, iv16?: Uint8Array): void {
  const ks = new Keystream(key32, iv16);
  for (let off = 0; off < target.length; off += CHUNK_WORDS) {
    const n = Math.min(CHUNK_WORDS, target.length - off);
    const w = ks.words(n);
    if (sign === 1) for (let i = 0; i < n; i++) target[off + i] = target[off + i] + w[i];
    else for (let i = 0; i < n; i++) target[off + i] = target[off + i] - w[i];
  }
}
