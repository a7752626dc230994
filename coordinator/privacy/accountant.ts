// Rényi-DP accountant for the sampled Gaussian mechanism (Mironov 2017; Mironov, Talwar & Zhang 2019, §3.3), the
// analysis TF-Privacy and Opacus ship, written from the formulas (no maintained npm package offers it). Pure: no
// state, no I/O. A history of (q, z, steps) segments composes by adding RDP order by order; ε at δ uses the
// conversion of Balle et al. 2020 (Thm 21), the one Opacus uses:
//   ε = min_α [ RDP(α) + log((α−1)/α) − (log δ + log α)/(α − 1) ].
// Everything is computed in log space with incrementally built binomial coefficients, so orders up to 256 and
// tiny q neither overflow nor underflow.

/** One stretch of rounds with the same sampling rate q and noise multiplier z (σ / sensitivity). */
export interface RdpSegment {
  readonly q: number;
  readonly z: number;
  readonly steps: number;
}

/** Opacus's default orders (1.1 … 10.9 by 0.1, then 12 … 63) with 11 and the integers up to 256 added. */
export const DEFAULT_ORDERS: readonly number[] = [
  ...Array.from({ length: 99 }, (_, i) => 1 + (i + 1) / 10),
  ...Array.from({ length: 256 - 10 }, (_, i) => 11 + i),
];

/** log(e^a + e^b) without overflow. */
function logAdd(a: number, b: number): number {
  const lo = Math.min(a, b);
  const hi = Math.max(a, b);
  return lo === -Infinity ? hi : Math.log1p(Math.exp(lo - hi)) + hi;
}

/** log(e^a − e^b) for a ≥ b. */
function logSub(a: number, b: number): number {
  if (b === -Infinity) return a;
  if (a <= b) return -Infinity; // a − b ≤ 0 only through rounding in the series' last terms: treat as 0
  return Math.log(Math.expm1(a - b)) + b;
}

/** log A_α for integer α: log Σ_j C(α,j) (1−q)^(α−j) q^j exp((j² − j)/(2z²)). */
function logAInt(q: number, z: number, alpha: number): number {
  const lq = Math.log(q);
  const l1q = Math.log1p(-q);
  let logBinom = 0;
  let acc = -Infinity;
  for (let j = 0; j <= alpha; j++) {
    if (j > 0) logBinom += Math.log(alpha - j + 1) - Math.log(j);
    acc = logAdd(acc, logBinom + j * lq + (alpha - j) * l1q + (j * j - j) / (2 * z * z));
  }
  return acc;
}

const LOG_SQRT_PI = 0.5 * Math.log(Math.PI);

/**
 * log erfc(x), accurate in the far tail: erfc(x) = Q(½, x²) for x ≥ 0 (the regularised upper incomplete gamma),
 * by its series below x² = 1.5 and Lentz's continued fraction above (Numerical Recipes §6.2), both to double
 * precision; erfc(−x) = 2 − erfc(x).
 */
export function logErfc(x: number): number {
  if (x < 0) return Math.log(2 - Math.exp(logErfc(-x)));
  const t = x * x;
  if (t < 1.5) {
    // P(½, t) = e^(−t) t^½ / Γ(½) · Σ t^n / (½·(½+1)…(½+n)); erfc = 1 − P.
    let ap = 0.5;
    let del = 1 / 0.5;
    let sum = del;
    for (let n = 0; n < 500; n++) {
      ap += 1;
      del *= t / ap;
      sum += del;
      if (Math.abs(del) < Math.abs(sum) * 1e-17) break;
    }
    const p = sum * Math.exp(-t + 0.5 * Math.log(t) - LOG_SQRT_PI);
    return Math.log1p(-p);
  }
  // Q(½, t) = e^(−t) t^½ / Γ(½) · 1/(t + ½ − 1·½/(t + 2.5 − …)) (modified Lentz).
  const tiny = 1e-300;
  let b = t + 1 - 0.5;
  let c = 1 / tiny;
  let d = 1 / b;
  let h = d;
  for (let i = 1; i < 10000; i++) {
    const an = -i * (i - 0.5);
    b += 2;
    d = an * d + b;
    if (Math.abs(d) < tiny) d = tiny;
    c = b + an / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-16) break;
  }
  return -t + 0.5 * Math.log(t) - LOG_SQRT_PI + Math.log(h);
}

/** log A_α for fractional α (Mironov et al. 2019, §3.3): two tail series split at z0. */
function logAFrac(q: number, z: number, alpha: number): number {
  let a0 = -Infinity;
  let a1 = -Infinity;
  const z0 = z * z * Math.log(1 / q - 1) + 0.5;
  const lq = Math.log(q);
  const l1q = Math.log1p(-q);
  let coef = 1; // C(α, i), built incrementally; its sign alternates once i > α
  let logAbsCoef = 0;
  for (let i = 0; ; i++) {
    if (i > 0) {
      const f = (alpha - i + 1) / i;
      coef *= Math.sign(f);
      logAbsCoef += Math.log(Math.abs(f));
    }
    const j = alpha - i;
    const t0 = logAbsCoef + i * lq + j * l1q;
    const t1 = logAbsCoef + j * lq + i * l1q;
    const e0 = Math.log(0.5) + logErfc((i - z0) / (Math.SQRT2 * z));
    const e1 = Math.log(0.5) + logErfc((z0 - j) / (Math.SQRT2 * z));
    const s0 = t0 + (i * i - i) / (2 * z * z) + e0;
    const s1 = t1 + (j * j - j) / (2 * z * z) + e1;
    if (coef > 0) {
      a0 = logAdd(a0, s0);
      a1 = logAdd(a1, s1);
    } else {
      a0 = logSub(a0, s0);
      a1 = logSub(a1, s1);
    }
    if (Math.max(s0, s1) < -30 || i > 100000) break;
  }
  return logAdd(a0, a1);
}

/** RDP at order α of one application of the sampled Gaussian mechanism with rate q and noise multiplier z. */
export function rdpSampledGaussian(q: number, z: number, alpha: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`sampling rate ${q} must lie in [0, 1]`);
  if (!(z >= 0) || !Number.isFinite(z)) throw new RangeError(`noise multiplier ${z} must be finite and ≥ 0`);
  if (!(alpha > 1) || !Number.isFinite(alpha)) throw new RangeError(`order ${alpha} must be finite and > 1`);
  if (q === 0) return 0;
  if (z === 0) return Infinity;
  if (q === 1) return alpha / (2 * z * z);
  return (Number.isInteger(alpha) ? logAInt(q, z, alpha) : logAFrac(q, z, alpha)) / (alpha - 1);
}

/** Σ over segments of steps · RDP(α), for every order. */
export function composeRdp(segments: readonly RdpSegment[], orders: readonly number[] = DEFAULT_ORDERS): number[] {
  const out = new Array<number>(orders.length).fill(0);
  for (const s of segments) {
    if (!(Number.isSafeInteger(s.steps) && s.steps >= 0)) throw new RangeError(`steps ${s.steps} must be a non-negative integer`);
    if (s.steps === 0) continue;
    orders.forEach((a, k) => (out[k] += s.steps * rdpSampledGaussian(s.q, s.z, a)));
  }
  return out;
}

/** (ε, optimal order) at δ from RDP values (Balle et al. 2020, Thm 21); ε = Infinity when no order helps. */
export function epsilonFromRdp(rdp: readonly number[], orders: readonly number[], delta: number): { epsilon: number; order: number } {
  if (!(delta > 0 && delta < 1)) throw new RangeError(`delta ${delta} must lie in (0, 1)`);
  if (rdp.length !== orders.length) throw new RangeError(`${rdp.length} RDP values for ${orders.length} orders`);
  let best = { epsilon: Infinity, order: NaN };
  orders.forEach((a, k) => {
    const e = rdp[k] + Math.log((a - 1) / a) - (Math.log(delta) + Math.log(a)) / (a - 1);
    if (e < best.epsilon) best = { epsilon: e, order: a };
  });
  // An RDP-to-DP conversion can dip below 0 for negligible RDP; ε is never negative.
  return { epsilon: Math.max(0, best.epsilon), order: best.order };
}

/** ε at δ spent by a history of segments. */
export function epsilonSpent(segments: readonly RdpSegment[], delta: number, orders: readonly number[] = DEFAULT_ORDERS): number {
  if (segments.every((s) => s.steps === 0 || s.q === 0)) return 0;
  return epsilonFromRdp(composeRdp(segments, orders), orders, delta).epsilon;
}
