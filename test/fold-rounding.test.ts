// The fold kernel rounds on float32 lanes: q = trunc(x·2^25) − trunc(x·2^24) (fold-kernel.ts proves it is
// round-half-away-from-zero(x·2^24), exactly). Checked here against the JavaScript form in float64
// (fixed-point.ts accumulateUnchecked) over every float32 exponent below 128, both signs, the mantissas where
// rounding can go wrong (ties, one ulp either side, every single bit) and random ones; and the tempting float32
// form trunc(s + copysign(½, s)) shown wrong where the kernel's header says it is.
import { LIMIT, SCALE, accumulateUnchecked } from '../coordinator/strategy/fixed-point';
import { foldKernel } from '../coordinator/strategy/fold-kernel';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const f32 = Math.fround;
const bitsToF32 = (b: number): number => new Float32Array(new Uint32Array([b >>> 0]).buffer)[0];

/** Every float32 of magnitude < 128 this test covers: for each exponent, structured and random mantissas. */
function coverage(): Float32Array {
  const mantissas = new Set<number>([0, 1, 2, 3, 0x7fffff, 0x7ffffe, 0x400000, 0x3fffff, 0x400001, 0x200000, 0x600000]);
  for (let b = 0; b < 23; b++) {
    mantissas.add(1 << b);
    mantissas.add((1 << b) - 1);
    mantissas.add((1 << b) + 1);
    mantissas.add(0x7fffff ^ (1 << b));
  }
  let seed = 12345;
  for (let i = 0; i < 200; i++) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    mantissas.add(seed & 0x7fffff);
  }
  const out: number[] = [];
  // Biased exponents 0 (zero and subnormals) to 133 (|x| in [64, 128)).
  for (let e = 0; e <= 133; e++) for (const m of mantissas) for (const sign of [0, 0x80000000]) out.push(bitsToF32(sign | (e << 23) | m));
  return Float32Array.from(out);
}

describe('fold kernel: rounding on float32 lanes', () => {
  it('q = trunc(x·2^25) − trunc(x·2^24) gives the JavaScript float64 form’s sum, bit for bit, over every exponent below 128', () => {
    const x = coverage();
    expect(x.every((v) => Math.abs(v) < LIMIT)).to.equal(true);
    for (const w of [1, -1, 3, 4_194_303, -77]) {
      const k = foldKernel(x.length);
      expect(k.simd).to.equal(true);
      const ref = new Float64Array(x.length);
      accumulateUnchecked(ref, x, w);
      for (let off = 0; off < x.length; off += k.staged.length) {
        const n = Math.min(k.staged.length, x.length - off);
        k.staged.set(x.subarray(off, off + n));
        expect(k.fold(off, n, w)).to.equal(n);
      }
      const got = new Uint32Array(k.acc.buffer, k.acc.byteOffset, 2 * x.length);
      const want = new Uint32Array(ref.buffer);
      let bad = -1;
      for (let i = 0; i < want.length && bad < 0; i++) if (got[i] !== want[i]) bad = i >> 1;
      expect(bad, bad < 0 ? '' : `w ${w}, x = ${x[bad]}: ${k.acc[bad]} against ${ref[bad]}`).to.equal(-1);
    }
  });

  it('the identity holds at the ties and one ulp either side, emulated in float32 (Math.fround)', () => {
    const q32 = (x: number): number => f32(Math.trunc(f32(x * 2 * SCALE)) - Math.trunc(f32(x * SCALE)));
    const ref = (x: number): number => Math.sign(x) * Math.floor(Math.abs(x * SCALE) + 0.5);
    for (let k = -1000; k <= 1000; k++) {
      for (const s of [k + 0.5, k + 0.25, k + 0.75, 2 ** 22 + k + 0.5, 2 ** 23 + k, 2 ** 30 + 128 * k]) {
        const x = f32(s / SCALE);
        if (x * SCALE !== s) continue; // not a float32 on this grid
        for (const v of [x, f32(x * (1 + 2 ** -23)), f32(x * (1 - 2 ** -24))]) expect(q32(v) + 0, `x = ${v}`).to.equal(ref(v) + 0);
      }
    }
  });

  it('the float32 form trunc(s + copysign(½, s)) is not exact: it rounds ½ − 2^−25 up and odd s in [2^23, 2^24) past s', () => {
    const naive = (s: number): number => Math.trunc(f32(s + (s < 0 ? -0.5 : 0.5)));
    const below = f32(0.5 - 2 ** -25);
    expect([naive(below), Math.trunc(f32(2 * below)) - Math.trunc(below)]).to.deep.equal([1, 0]);
    const odd = 2 ** 23 + 1;
    expect([naive(odd), Math.trunc(f32(2 * odd)) - odd]).to.deep.equal([odd + 1, odd]);
  });
});
