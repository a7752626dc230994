// `fedtune-site client --min-noise-multiplier <z>`: differential privacy on the site's own terms from the command
// line, FederationClient's `minNoiseMultiplier` (client-options.ts). With it the site takes part only in SecAgg tasks
// whose sites add DP noise of at least that multiplier before masking, and refuses a plain task (where only the
// coordinator could add noise) or one with less noise before it trains (secagg-flow.ts). The value is held to the
// SDK's own bound (checkNoiseFloor) here, before anything loads, and the refusal names the flag.
import { checkNoiseFloor } from '../secagg-flow';

/** The flag's value as a number, or undefined when not given; an error naming the flag otherwise. */
export function noiseFloorFromFlag(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const z = v.trim() === '' ? NaN : Number(v);
  try {
    return checkNoiseFloor(z);
  } catch (e) {
    throw new Error(`--min-noise-multiplier ${JSON.stringify(v)}: ${(e as Error).message}`, { cause: e });
  }
}
