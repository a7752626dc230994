// f32 → IEEE half bit patterns (round to nearest even), for uploading frozen weights to the f16 paths.
const f32v = new Float32Array(1);
const u32v = new Uint32Array(f32v.buffer);

export function halfBits(x: number): number {
  f32v[0] = x;
  const b = u32v[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/**
 * Every value as halfBits rounds it, padded to whole 4-byte words. The frozen weights of a model, all converted at
 * construction and those of the merged modules when W0 goes back after a FLoRA merge, are nearly all in f16's normal
 * range (f32 exponents 113 to 142): those take a branch-free path on the bits, re-biased and rounded to the nearest,
 * ties to even, by one integer add (a carry out of the mantissa moves up the exponent, to infinity past 65504, as in
 * halfBits); the rest (zeros, subnormals, overflow, infinities, NaN) go through halfBits. 2.8× faster on GPT-2 small's
 * projections; the same bits as halfBits for all 2^32 inputs (test/engine-half.test.ts).
 */
export function toHalfBits(a: Float32Array): Uint16Array {
  const out = new Uint16Array(a.length + (a.length & 1));
  const bits = new Uint32Array(a.buffer, a.byteOffset, a.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    const e = b & 0x7f800000;
    out[i] = e >= 0x38800000 && e < 0x47800000 ? ((b >>> 16) & 0x8000) | (((b & 0x7fffffff) - 0x38000000 + 0xfff + ((b >>> 13) & 1)) >>> 13) : halfBits(a[i]);
  }
  return out;
}

export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}
