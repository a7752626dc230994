// The engine's f16 conversion of whole arrays (client-sdk/engine/half.ts toHalfBits: a fast path on the bits for f16's
// normal range, halfBits for the rest) against halfBits value by value. CI checks every sign, exponent and top ten
// mantissa bits with the low 13 bits (those rounded away) at and around the rounding boundaries, 3.1M patterns; all
// 2^32 were checked once (the same comparison over every pattern, 16M at a time: 0 differ; engine-restore's DONE note).
// The scalar halfBits cases live in engine-plan.test.ts.
import { halfBits, toHalfBits } from '../client-sdk/engine/half';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Indices where toHalfBits differs from halfBits on the f32 values with these bit patterns. */
function differing(patterns: Uint32Array): number[] {
  const got = toHalfBits(new Float32Array(patterns.buffer, patterns.byteOffset, patterns.length));
  const f = new Float32Array(patterns.buffer, patterns.byteOffset, patterns.length);
  const bad: number[] = [];
  for (let i = 0; i < f.length; i++) if (got[i] !== halfBits(f[i])) bad.push(i);
  return bad;
}

describe('engine: f16 conversion of whole arrays (half.ts toHalfBits)', () => {
  it('gives halfBits’s bits for every sign, exponent and top mantissa with the rounded-away bits at every boundary', () => {
    const low = [0, 1, 0x0fff, 0x1000, 0x1001, 0x1fff]; // exact, just above, just below / at / just above the half, top
    const patterns = new Uint32Array((1 << 19) * low.length);
    let n = 0;
    for (let top = 0; top < 1 << 19; top++) for (const l of low) patterns[n++] = ((top << 13) | l) >>> 0;
    const bad = differing(patterns);
    expect(bad.length, bad.length ? `first 0x${patterns[bad[0]].toString(16)}` : '').to.equal(0);
  });

  it('pads to whole 4-byte words and reads a view at its own offset', () => {
    const f = Float32Array.of(0, 1, -2, 65504, 65520, 2 ** -24, NaN, 3);
    expect([...toHalfBits(f.subarray(1, 4))]).to.deep.equal([0x3c00, 0xc000, 0x7bff, 0]);
    expect([...toHalfBits(f.subarray(4, 7))].slice(0, 3)).to.deep.equal([0x7c00, 0x0001, halfBits(NaN)]);
  });
});
