// Seeded shuffles for data splits and client selection: each use draws its own stream of the project's one
// PRNG (prng.ts) by label, so Math.random never decides which example goes where.
import { Prng, hashString } from './prng';

/** A uniform [0, 1) source for (seed, label). */
export function seededRandom(seed: number, label: string): () => number {
  const p = new Prng(seed, hashString(label));
  return () => p.nextFloat();
}

/** Fisher–Yates shuffle of a copy. */
export function seededShuffle<T>(items: readonly T[], seed: number, label: string): T[] {
  const out = [...items];
  const rand = seededRandom(seed, label);
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
