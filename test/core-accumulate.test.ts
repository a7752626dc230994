// The streaming accumulate loop (coordinator/strategy/fixed-point.ts accumulateUnchecked) against an exact
// BigInt reference, over arbitrary float32 values in the admitted range: ties of either sign, the largest float32
// below 128, subnormals, ±0. The loop rounds with a branchless ±0.5 and a truncation; this pins that it is the
// same rounding (half away from zero) as the reference, element for element, for every weight up to
// MAX_TOTAL_WEIGHT, so a faster rewrite of the loop can be checked against it.
import fc from 'fast-check';
import { LIMIT, MAX_TOTAL_WEIGHT, SCALE, accumulate, accumulateUnchecked } from '../coordinator/strategy/fixed-point';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** round-half-away-from-zero(x·2^24)·w, exactly. */
function reference(x: number, w: number): bigint {
  const s = x * SCALE; // exact: a power-of-two scale of a float32
  return BigInt(w) * BigInt(Math.sign(s) * Math.floor(Math.abs(s) + 0.5));
}

const below128 = Math.fround(LIMIT - 2 ** -17); // the largest float32 below 128
const edges = [0, -0, 0.5 / SCALE, -0.5 / SCALE, 1.5 / SCALE, -1.5 / SCALE, below128, -below128, 2 ** -149, -(2 ** -149), 1, -1, 3.5 / SCALE, -3.5 / SCALE];
const admitted = fc.oneof(
  fc.constantFrom(...edges),
  fc.float({ min: -below128, max: below128, noNaN: true }),
  // values on and next to the grid's half steps, where rounding direction matters
  fc.integer({ min: -(2 ** 30), max: 2 ** 30 }).map((k) => Math.fround((k + 0.5) / SCALE)),
);

describe('core: the accumulate loop is exact (fast-check against BigInt)', () => {
  it('accumulateUnchecked adds w·round-half-away(x·2^24) exactly, as accumulate() and the BigInt reference do', () => {
    fc.assert(
      fc.property(fc.array(admitted, { minLength: 1, maxLength: 64 }), fc.integer({ min: 1, max: MAX_TOTAL_WEIGHT }), (values, w) => {
        const x = Float32Array.from(values);
        const fast = new Float64Array(x.length);
        const checked = new Float64Array(x.length);
        accumulateUnchecked(fast, x, w);
        accumulate(checked, x, w);
        for (let i = 0; i < x.length; i++) {
          expect(BigInt(fast[i]), `x = ${x[i]}, w = ${w}`).to.equal(reference(x[i], w));
          expect(Object.is(fast[i], checked[i]) || fast[i] === checked[i]).to.equal(true);
        }
      }),
      { seed: 8, numRuns: 2000 },
    );
  });

  it('sums of several weighted updates stay exact (no wrap at the int32 edge)', () => {
    const x = Float32Array.from([below128, -below128, 0.5 / SCALE, -0.5 / SCALE]);
    const acc = new Float64Array(4);
    accumulateUnchecked(acc, x, 3);
    accumulateUnchecked(acc, x, MAX_TOTAL_WEIGHT - 3);
    for (let i = 0; i < 4; i++) expect(BigInt(acc[i])).to.equal(reference(x[i], MAX_TOTAL_WEIGHT));
  });
});
