// Planning a private run before it starts: ε at δ after a number of rounds at a sampling rate q and noise multiplier
// z, the rounds a budget allows, and the smallest z that keeps ε within a target by a given round (what Opacus calls
// get_noise_multiplier). One accountant (accountant.ts) answers all three, the one the ledger charges rounds with,
// so a plan and the run's manifests agree. `fedtune privacy plan` prints them for a configuration; the operator's
// views (ops/privacy-status.ts) use roundsLeft for the rounds left after the latest version.
import { epsilonSpent } from './accountant';

/** Past this many rounds the search stops (a budget no realistic run reaches). */
const MAX_ROUNDS = 2 ** 40;
/** z's search interval: below it ε is unbounded at any useful δ, above it no run needs to go. */
const Z_MIN = 0.001;
const Z_MAX = 10_000;

/** What a plan is over: every round charged at the same q and z. */
export interface PlanRegime {
  /** The sampling rate each round is charged at, in (0, 1]: privacy.samplingRate under Poisson sampling, else 1. */
  readonly samplingRate: number;
  readonly delta: number;
}

function checkRegime(r: PlanRegime): void {
  if (!(r.samplingRate > 0 && r.samplingRate <= 1)) throw new RangeError(`sampling rate ${r.samplingRate} must lie in (0, 1]`);
  if (!(r.delta > 0 && r.delta < 1)) throw new RangeError(`delta ${r.delta} must lie in (0, 1)`);
}

function checkRounds(rounds: number): void {
  if (!(Number.isSafeInteger(rounds) && rounds >= 1 && rounds <= MAX_ROUNDS)) throw new RangeError(`rounds ${rounds} must be an integer in [1, 2^40]`);
}

/** ε at δ after `rounds` rounds at z (Infinity: unbounded). */
export function epsilonAfter(r: PlanRegime, z: number, rounds: number): number {
  checkRegime(r);
  checkRounds(rounds);
  if (!(z > 0 && Number.isFinite(z))) throw new RangeError(`noise multiplier ${z} must be positive`);
  return epsilonSpent([{ q: r.samplingRate, z, steps: rounds }], r.delta);
}

/**
 * The largest k with ε after k more rounds ≤ budget, where `epsilonAfter(k)` is that ε (null: unbounded). ε grows
 * with k, so a doubling search, then bisection: ~2·log2(k) evaluations.
 */
export function roundsLeft(epsilonAfterRounds: (k: number) => number | null, budget: number): number {
  const fits = (k: number): boolean => {
    const e = epsilonAfterRounds(k);
    return e !== null && e <= budget;
  };
  if (!fits(1)) return 0;
  let lo = 1;
  let hi = 2;
  while (fits(hi)) {
    lo = hi;
    if (hi >= MAX_ROUNDS) return hi;
    hi *= 2;
  }
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (fits(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

/** The rounds at z whose ε stays ≤ `budget` (0 when even one round exceeds it). */
export function roundsWithin(r: PlanRegime, z: number, budget: number): number {
  if (!(budget > 0 && Number.isFinite(budget))) throw new RangeError(`ε budget ${budget} must be positive`);
  return roundsLeft((k) => {
    const e = epsilonAfter(r, z, k);
    return Number.isFinite(e) ? e : null;
  }, budget);
}

/**
 * Whether z is noiseForEpsilon's answer, checked without searching: on the 0.001 grid, ε(z) ≤ `epsilon` and
 * ε(z − 0.001) > `epsilon` (two accountant calls; z at the grid's floor needs only the first).
 */
export function isSmallestNoise(r: PlanRegime, rounds: number, epsilon: number, z: number): boolean {
  const grid = (x: number): number => Math.round(x * 1000) / 1000;
  if (!(z >= Z_MIN && grid(z) === z) || epsilonAfter(r, z, rounds) > epsilon) return false;
  return z === Z_MIN || epsilonAfter(r, grid(z - 0.001), rounds) > epsilon;
}

/**
 * The smallest z on a 0.001 grid whose ε after `rounds` rounds stays ≤ `epsilon` at δ. ε falls as z grows, so a
 * bisection brackets it and a walk along the grid makes the answer exact: ε(z) ≤ target < ε(z − 0.001).
 */
export function noiseForEpsilon(r: PlanRegime, rounds: number, epsilon: number): number {
  if (!(epsilon > 0 && Number.isFinite(epsilon))) throw new RangeError(`target ε ${epsilon} must be positive`);
  const eps = (z: number): number => epsilonAfter(r, z, rounds);
  if (eps(Z_MAX) > epsilon) throw new RangeError(`no noise multiplier up to ${Z_MAX} keeps ε ≤ ${epsilon} after ${rounds} rounds`);
  let lo = Z_MIN;
  let hi = Z_MAX;
  while (hi - lo > 1e-4) {
    const mid = (lo + hi) / 2;
    if (eps(mid) > epsilon) lo = mid;
    else hi = mid;
  }
  const grid = (z: number): number => Math.round(z * 1000) / 1000;
  let z = Math.max(Z_MIN, grid(Math.ceil(hi * 1000) / 1000));
  while (z > Z_MIN && eps(grid(z - 0.001)) <= epsilon) z = grid(z - 0.001);
  while (eps(z) > epsilon) z = grid(z + 0.001);
  return z;
}
