// Seeded shuffles for data splits and sampling. The generator is derived from SHA-256 of (seed, label) so
// each use gets an independent, reproducible stream, and Math.random never decides which example goes where.
import { createHash } from 'node:crypto';

/** xoshiro128** seeded from SHA-256(seed, label): small, fast, and good enough for shuffling. */
export function seededRandom(seed: number, label: string): () => number {
  const h = createHash('sha256').update(`${seed}:${label}`).digest();
  const s = new Uint32Array([h.readUInt32LE(0), h.readUInt32LE(4), h.readUInt32LE(8), h.readUInt32LE(12)]);
  if (s[0] === 0 && s[1] === 0 && s[2] === 0 && s[3] === 0) s[0] = 1;
  return () => {
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r / 4294967296;
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
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
