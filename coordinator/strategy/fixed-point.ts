// Fixed-point arithmetic for aggregation. Floats are mapped to integers q = round(x · 2^F) and summed as
// exact integers, so a sum does not depend on the order of its terms (float addition does). Secure
// aggregation (a later tier) sums the same integers mod 2^32, so the grid and the bounds live here.
//
// Bounds: |x| < 2^CLIP_LOG2 → |q| < 2^(F + CLIP_LOG2) = 2^31. Weighted sums Σ n_k·q_k are accumulated in
// float64, exact while |Σ| < 2^53, so Σ n_k must stay below 2^(53-31) = 2^22; callers enforce MAX_TOTAL_WEIGHT.

/** Fraction bits: a grid step of 2^-24 ≈ 6e-8, finer than float32's precision for values near 1. */
export const FRACTION_BITS = 24;
/** Values must satisfy |x| < 2^CLIP_LOG2 = 128; an adapter delta that large means training diverged. */
export const CLIP_LOG2 = 7;
export const SCALE = 2 ** FRACTION_BITS;
export const LIMIT = 2 ** CLIP_LOG2;
/** Largest total integer weight that keeps Σ n_k·q_k exact in float64. */
export const MAX_TOTAL_WEIGHT = 2 ** (53 - FRACTION_BITS - CLIP_LOG2) - 1;

export class FixedPointRangeError extends RangeError {
  constructor(
    readonly tensor: string,
    readonly index: number,
    readonly value: number,
  ) {
    super(`${tensor}[${index}] = ${value} is outside the fixed-point range (|x| < ${LIMIT})`);
    this.name = 'FixedPointRangeError';
  }
}

/** q = round-half-away-from-zero(x · 2^F); throws for non-finite or out-of-range values. */
export function quantize(x: Float32Array, name = 'tensor'): Float64Array {
  const q = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (!(Math.abs(v) < LIMIT)) throw new FixedPointRangeError(name, i, v);
    const s = v * SCALE; // exact: a power-of-two scale of a float32 fits in float64
    q[i] = Math.trunc(s < 0 ? s - 0.5 : s + 0.5);
  }
  return q;
}

/** acc += weight · quantize(x), exactly; one pass, no temporary (this is FedAvg's inner loop). */
export function accumulate(acc: Float64Array, x: Float32Array, weight: number, name = 'tensor'): void {
  if (acc.length !== x.length) throw new RangeError(`${name}: ${x.length} values, accumulator has ${acc.length}`);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (!(v < LIMIT && v > -LIMIT)) throw new FixedPointRangeError(name, i, v);
    const s = v * SCALE;
    // Round half away from zero; exact because |s| < 2^31 leaves float64 22 spare bits for the 0.5.
    // Stryker disable next-line EqualityOperator: equivalent: `s <= 0` differs only at s = 0, adding weight·(−0) instead of weight·(+0), which leaves every sum unchanged.
    acc[i] += weight * Math.trunc(s < 0 ? s - 0.5 : s + 0.5);
  }
}

/**
 * acc += weight · quantize(x) for values already admitted (|x| < LIMIT, finite): the streaming hot loop.
 * round-half-away-from-zero(s) = trunc(s ± 0.5), exact as above. The ±0.5 is computed without a branch
 * (0.5 − [s < 0]): real deltas are signed at random, and a branch on the sign mispredicts half the time
 * (4–5× slower). Same values as quantize(), including the sign of zero's effect on the sum (none: the sum
 * starts at +0 and +0 + −0 = +0).
 */
export function accumulateUnchecked(acc: Float64Array, x: Float32Array, weight: number): void {
  const n = x.length;
  // Stryker disable next-line EqualityOperator: equivalent: `<=` also adds into acc[n], which a typed array ignores.
  for (let i = 0; i < n; i++) {
    const s = x[i] * SCALE;
    // Stryker disable next-line EqualityOperator: equivalent: `s <= 0` differs only at s = 0, adding weight·(−0) instead of weight·(+0), which leaves every sum unchanged.
    acc[i] += weight * Math.trunc(s + (0.5 - +(s < 0)));
  }
}

/** The weighted mean on the grid: (Σ n_k q_k) / (Σ n_k) / 2^F, one correctly rounded division per value. */
export function weightedMean(acc: Float64Array, totalWeight: number): Float64Array {
  const out = new Float64Array(acc.length);
  const denom = totalWeight * SCALE;
  // Stryker disable next-line EqualityOperator: equivalent: `<=` also writes out[acc.length], which a typed array ignores.
  for (let i = 0; i < acc.length; i++) out[i] = acc[i] / denom;
  return out;
}
