// Mask expansion: a ChaCha20 keystream (node:crypto, OpenSSL) read as little-endian uint32 words.
//
// Why ChaCha20 and not AES-CTR (measured 2026-11-23 on the 2-core AMD EPYC dev box, which has AES-NI;
// Node 20.20.2, OpenSSL 3.0.19; keystream only, 4 MiB produced in 64 KiB update() calls, median of 40):
//   chacha20 4.3 GB/s, aes-256-ctr 4.9 GB/s, aes-128-ctr 6.0 GB/s (`openssl speed`: 5.9, 6.9, 9.4 GB/s).
// AES-256-CTR would save ~0.1 ms of the ~0.9 ms keystream of a 1M-word mask, whose total (keystream + add)
// is ~2.3 ms: ~2 ms of a ~90 ms SecAgg client at N = 100 (15 masks), ~10 ms of the coordinator's ~2 s.
// Not worth changing the mask PRG (a protocol change: peers on different PRGs produce a garbage sum that no
// check catches) nor losing ChaCha20's speed on hosts without AES instructions.
//
// Speed comes from the layout instead: masks are added in 64 KiB pieces (small update() outputs are
// recycled by malloc; multi-MiB ones cost fresh pages), as int32 arithmetic (| 0 is the wrap mod 2^32), and
// addMasks() applies many keys piece by piece, so the target piece stays in cache while every keystream is
// added to it (one pass over the vector instead of one per key).
import { createCipheriv, type Cipher } from 'node:crypto';
import * as os from 'node:os';

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
  readonly iv?: Uint8Array;
}

// Monomorphic inner loops over int32 views: (a ± b ± …) | 0 is the sum mod 2^32 read as two's complement (the
// float64 sum of five int32 values is exact). Four keystreams per pass over the target piece: a quarter of
// the target loads and stores of one pass per key (measured 2.3 vs 3.3 ms per 1M-word mask here).
function add1(t: Int32Array, off: number, a: Int32Array, n: number): void {
  for (let i = 0; i < n; i++) t[off + i] = (t[off + i] + a[i]) | 0;
}
function sub1(t: Int32Array, off: number, a: Int32Array, n: number): void {
  for (let i = 0; i < n; i++) t[off + i] = (t[off + i] - a[i]) | 0;
}
function add4(t: Int32Array, off: number, a: Int32Array, b: Int32Array, c: Int32Array, d: Int32Array, n: number): void {
  for (let i = 0; i < n; i++) t[off + i] = (t[off + i] + a[i] + b[i] + c[i] + d[i]) | 0;
}
function sub4(t: Int32Array, off: number, a: Int32Array, b: Int32Array, c: Int32Array, d: Int32Array, n: number): void {
  for (let i = 0; i < n; i++) t[off + i] = (t[off + i] - a[i] - b[i] - c[i] - d[i]) | 0;
}

/** t[off, off + n) ← t ± Σ the next n words of each cipher (+ when plus). */
function applyPiece(t: Int32Array, off: number, n: number, ciphers: readonly Cipher[], plus: boolean): void {
  let k = 0;
  for (; k + 3 < ciphers.length; k += 4) {
    const [a, b, c, d] = [nextWords(ciphers[k], n), nextWords(ciphers[k + 1], n), nextWords(ciphers[k + 2], n), nextWords(ciphers[k + 3], n)];
    if (plus) add4(t, off, a, b, c, d, n);
    else sub4(t, off, a, b, c, d, n);
  }
  for (; k < ciphers.length; k++) {
    if (plus) add1(t, off, nextWords(ciphers[k], n), n);
    else sub1(t, off, nextWords(ciphers[k], n), n);
  }
}

/**
 * target ← target + Σ sign·PRG(key) mod 2^32, elementwise; the same result as addMask for each mask in turn
 * (addition mod 2^32 commutes), in one pass over target, 64 KiB at a time.
 */
export function addMasks(target: Uint32Array, masks: readonly Mask[]): void {
  if (masks.length === 0) return;
  const t = new Int32Array(target.buffer, target.byteOffset, target.length);
  const plus = masks.filter((m) => m.sign === 1).map((m) => cipherFor(m.key, m.iv ?? ZERO_IV));
  const minus = masks.filter((m) => m.sign !== 1).map((m) => cipherFor(m.key, m.iv ?? ZERO_IV));
  for (let off = 0; off < t.length; off += CHUNK_WORDS) {
    const n = Math.min(CHUNK_WORDS, t.length - off);
    applyPiece(t, off, n, plus, true);
    applyPiece(t, off, n, minus, false);
  }
}

/** target ← target + sign·PRG(key) mod 2^32, elementwise. */
export function addMask(target: Uint32Array, key32: Uint8Array, sign: 1 | -1, iv16?: Uint8Array): void {
  addMasks(target, [{ key: key32, sign, iv: iv16 }]);
}
