// node dist/bench/fold-exhaustive.js: the fold kernel's float32 rounding (fold-kernel.ts) against the JavaScript
// float64 form (fixed-point.ts accumulateUnchecked) for EVERY float32 of magnitude below 128 (2 × 134 × 2^23 values,
// about 30 s of CPU): test/fold-rounding.test.ts covers every exponent with chosen mantissas; this covers them all.
import { accumulateUnchecked } from '../coordinator/strategy/fixed-point';
import { foldKernel } from '../coordinator/strategy/fold-kernel';

const BLOCK = 1 << 18;
const k = foldKernel(BLOCK);
const bits = new Uint32Array(BLOCK);
const x = new Float32Array(bits.buffer);
const ref = new Float64Array(BLOCK);
const got = new Uint32Array(k.acc.buffer, k.acc.byteOffset, 2 * BLOCK);
const want = new Uint32Array(ref.buffer);
const end = 134 * 2 ** 23; // the first bit pattern of magnitude 128
let checked = 0;
for (const sign of [0, 0x80000000]) {
  for (let b = 0; b < end; b += BLOCK) {
    for (let i = 0; i < BLOCK; i++) bits[i] = (sign | (b + i)) >>> 0;
    k.acc.fill(0);
    ref.fill(0);
    k.staged.set(x);
    if (k.fold(0, BLOCK, 3) !== BLOCK) throw new Error(`stopped in the block at ${b}`);
    accumulateUnchecked(ref, x, 3);
    for (let i = 0; i < 2 * BLOCK; i++) if (got[i] !== want[i]) throw new Error(`x = ${x[i >> 1]}: ${k.acc[i >> 1]} against ${ref[i >> 1]}`);
    checked += BLOCK;
  }
}
console.log(`every float32 below 128 in magnitude (${checked} values): the kernel's sum equals the JavaScript form's, bit for bit`);
