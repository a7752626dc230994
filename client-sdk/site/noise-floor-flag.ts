// `fedtune-site client --min-noise-multiplier <z>`: differential privacy on the site's own terms from the command
// line, FederationClient's `minNoiseMultiplier` (client-options.ts). With it the site takes part only in SecAgg tasks
// whose sites add DP noise of at least that multiplier before masking, and refuses a plain task (where only the
// coordinator could add noise) or one with less noise before it trains (secagg-flow.ts noiseFloorRefusal). Checked
// here before anything loads: a floor that is not a positive number would refuse everything (NaN) or nothing (≤ 0)
// without saying so.

/** The largest floor accepted: far beyond any useful multiplier (z 100 already drowns any update). */
export const MAX_NOISE_FLOOR = 1000;

/** The flag's value as a number, or undefined when not given; an error naming the flag otherwise. */
export function noiseFloorFromFlag(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const z = Number(v);
  if (v.trim() === '' || !Number.isFinite(z) || z <= 0 || z > MAX_NOISE_FLOOR)
    throw new Error(`--min-noise-multiplier ${JSON.stringify(v)}: must be a number in (0, ${MAX_NOISE_FLOOR}]`);
  return z;
}
