// The checks a coordinator can make on an unmasked SecAgg sum, in place of the per-update checks that masking
// rules out (issue 13 #10). A dishonest site can put anything in its masked vector: no bound on one input can be
// checked without zero-knowledge proofs. What can be checked is the sum, against what honest sites could give:
//  - weight: each honest site's weight slot is round(w·s_w) with w = min(n, cap)/cap in [1/cap, 1], so the
//    total lies in [N·round(s_w/cap), N·s_w] for N survivors. A total outside that (a negative or oversized
//    slot, say) fails the round; without this a tiny total weight could scale a round's update by ~2^21.
//  - norm: an honest input's values are q(w·c·x·s_v) with ‖c·x‖ ≤ S, each rounded by less than one unit, so
//    ‖q‖ ≤ w·S·s_v + √m, and w ≤ (slot + ½)/s_w. With DP noise (noiseMultiplier > 0) each site adds its share,
//    N(0, σ²) per value rounded: ‖share‖ ≤ σ(√m + NOISE_TAIL) + ½√m except with probability below e^-50.
//    By the triangle inequality ‖Σ q‖ ≤ (W + N/2)·S·s_v/s_w + N√m (+ N times the noise bound), W the summed weight
//    slots. A sum above that is refused: without noise (S·s_v = s_w) the published mean Σq/(s_v·W) then has a norm
//    of at most S·(1 + N(½ + √m)/W), the clip bound up to rounding, whatever the dishonest sites sent.
//  - count (adaptive clipping, cfg.clipCountNoise > 0): the last value is Σ of each site's bit, 0 or K, plus its
//    noise share, rounded N(0, σ_c²) with |share| ≤ NOISE_TAIL·σ_c + ½; a sum outside [−N·tail, N·(K + tail)] is
//    one no honest set of sites gives. It is left out of the norm above (it is no part of the update).
// What remains: within those bounds a dishonest site still chooses its own contribution (as with any
// unverified update); the gate bounds the damage to a mean of norm about S, it does not detect the site.
import { ProtocolError, status } from '../errors';
import { NOISE_TAIL, countScale, countShareSigma, hasCountSlot, noiseShareSigma, quantisation, type SecAggRoundConfig } from './config';

const refuse = (msg: string): ProtocolError => new ProtocolError(status.FAILED_PRECONDITION, `secagg gate: ${msg}`);

/** Throws FAILED_PRECONDITION naming the bound when the sum (as int32: slot 0 the weights) is one no honest set of `survivors` sites could give. */
export function checkAggregate(ints: Int32Array, cfg: SecAggRoundConfig, survivors: number): void {
  if (!(Number.isSafeInteger(survivors) && survivors >= 1)) throw refuse(`${survivors} survivors`);
  const { weightScale, valueScale } = quantisation(cfg);
  const minSlot = Math.round(weightScale / cfg.weightCap);
  const w = ints[0];
  const [lo, hi] = [survivors * minSlot, survivors * weightScale];
  if (w < lo || w > hi) {
    throw refuse(
      `total weight ${w} is outside [${lo}, ${hi}], the range ${survivors} sites with weights in [1/${cfg.weightCap}, 1] can give: a weight slot was out of range`,
    );
  }
  // The update's values: all but slot 0 and, under adaptive clipping, the count at the end.
  const end = hasCountSlot(cfg) ? ints.length - 1 : ints.length;
  if (end < ints.length) checkCount(ints[end], cfg, survivors);
  let sq = 0;
  for (let i = 1; i < end; i++) sq += ints[i] * ints[i];
  const norm = Math.sqrt(sq);
  const rootM = Math.sqrt(end - 1);
  const sigma = noiseShareSigma(cfg);
  const noise = sigma > 0 ? sigma * (rootM + NOISE_TAIL) + 0.5 * rootM : 0;
  const bound = ((w + survivors / 2) * cfg.clipNorm * valueScale) / weightScale + survivors * (rootM + noise);
  if (!(norm <= bound)) {
    throw refuse(
      `the sum's norm ${norm.toExponential(3)} exceeds ${bound.toExponential(3)} (grid units), the most ${survivors} clipped updates of total weight ${w} can reach: an input exceeded the clip norm ${cfg.clipNorm}`,
    );
  }
}

/** The count value of `survivors` honest sites: bits of 0 or K each, plus noise shares within the tail. */
function checkCount(count: number, cfg: SecAggRoundConfig, survivors: number): void {
  const tail = survivors * (NOISE_TAIL * countShareSigma(cfg) + 0.5);
  const [lo, hi] = [-tail, survivors * countScale(cfg) + tail];
  if (!(count >= lo && count <= hi))
    throw refuse(
      `the count of unclipped updates ${count} is outside [${lo.toFixed(0)}, ${hi.toFixed(0)}], the range ${survivors} sites' bits and noise shares can give: a count value was out of range`,
    );
}
