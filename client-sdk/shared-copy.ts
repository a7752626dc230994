// Copies into and out of a SharedArrayBuffer at memcpy-like speed. V8 copies to or from shared memory with
// relaxed atomic loads and stores (Relaxed_Memcpy): a word at a time when source and destination are aligned alike
// modulo 8, otherwise a byte at a time. A range worker's bytes are rarely so aligned: a chunk's bytes start 4 bytes
// into grpc-js's message buffer, and anywhere in an HTTP/2 DATA frame; a tensor starts at any multiple of 4 bytes
// of the stream. Measured on the 2-core box (64 MiB in 16 KiB copies into shared memory): 4.6 ms aligned, 19 ms
// with the source off by one byte, 35 ms off by four; through the bounce below, 7.1 ms.
//
// So a misaligned copy goes through a small unshared buffer placed at the shared side's alignment: an ordinary
// memmove between unshared memory, then a word-wise relaxed copy. Backing stores start on 8-byte boundaries
// (malloc's alignment), so byteOffset modulo 8 says an address's alignment; were it not so, only speed would suffer.

/** Bytes per bounce: small enough to stay in cache, large enough that the per-call cost vanishes. */
const BOUNCE_BYTES = 64 << 10;
let bounce: Uint8Array | undefined;

function bounceBuffer(): Uint8Array {
  return (bounce ??= new Uint8Array(BOUNCE_BYTES + 8));
}

/** `src` (unshared) into `dst` (a view of shared memory) at `at`. */
export function copyIntoShared(src: Uint8Array, dst: Uint8Array, at: number): void {
  if (((src.byteOffset - dst.byteOffset - at) & 7) === 0) return dst.set(src, at);
  const b = bounceBuffer();
  for (let i = 0; i < src.length; i += BOUNCE_BYTES) {
    const n = Math.min(BOUNCE_BYTES, src.length - i);
    const shift = (dst.byteOffset + at + i) & 7;
    b.set(src.subarray(i, i + n), shift);
    dst.set(b.subarray(shift, shift + n), at + i);
  }
}

/** `src` (a view of shared memory) into `dst` (unshared) from its start. */
export function copyOutOfShared(src: Uint8Array, dst: Uint8Array): void {
  if (((src.byteOffset - dst.byteOffset) & 7) === 0) return dst.set(src);
  const b = bounceBuffer();
  for (let i = 0; i < src.length; i += BOUNCE_BYTES) {
    const n = Math.min(BOUNCE_BYTES, src.length - i);
    const shift = (src.byteOffset + i) & 7;
    b.set(src.subarray(i, i + n), shift);
    dst.set(b.subarray(shift, shift + n), i);
  }
}
