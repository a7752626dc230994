// Deterministic randomness for the coordinator: every seed derives from the run's master seed and a label
// (what it is for, the round, the attempt, the client), so a manifest's seeds reproduce the run.
import { createHash } from 'node:crypto';
import { seededShuffle } from '../proto/shuffle';

/** A 32-bit seed from SHA-256(master, labels…). */
export function deriveSeed(master: number, ...labels: (string | number)[]): number {
  return createHash('sha256')
    .update(JSON.stringify([master, ...labels]))
    .digest()
    .readUInt32LE(0);
}

/**
 * Picks the clients of a round: `clientsPerRound` ≥ 1 is a count, < 1 a fraction of the connected clients,
 * never fewer than `minUpdates` while that many are connected. The result depends only on the set of ids
 * and the seed, not on the order the ids are given in; it is returned sorted.
 */
export function selectClients(ids: readonly string[], clientsPerRound: number, minUpdates: number, seed: number): string[] {
  const pool = [...new Set(ids)].sort();
  // The product's rounding error must not round a whole number up (0.28 × 25 is 7.000000000000001 in floats).
  const wanted = clientsPerRound >= 1 ? Math.floor(clientsPerRound) : Math.ceil(clientsPerRound * pool.length - 1e-9);
  const n = Math.min(pool.length, Math.max(wanted, minUpdates, 1));
  return seededShuffle(pool, seed, 'select').slice(0, n).sort();
}
