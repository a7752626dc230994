// t-of-n Shamir sharing of 32-byte secrets over GF(2^8) (shamir-secret-sharing, audited), with deterministic
// x-coordinates: holder i (in the sorted holder list) gets x = i + 1, so the server can check that a returned
// share is the one dealt to that holder. The library picks random coordinates; we deal all 255 points and
// keep x = 1..n (cheap for 32-byte secrets: ~1-5 ms per split).
import { combine, split } from 'shamir-secret-sharing';
import { DOMAIN, hashParts } from './bytes';

export type ShareKind = 'b' | 'sk';
export const SECRET_BYTES = 32;
/** A share: 32 y-bytes, then its x-coordinate in the last byte (the library's format). */
export const SHARE_BYTES = SECRET_BYTES + 1;

/** Shares of `secret` for `holders` (sorted), in holder order; share i has x-coordinate i + 1. */
export async function dealShares(secret: Uint8Array, holders: readonly string[], threshold: number): Promise<Uint8Array[]> {
  if (secret.length !== SECRET_BYTES) throw new RangeError(`secret must be ${SECRET_BYTES} bytes`);
  if (holders.length < threshold || holders.length > 255) throw new RangeError(`${holders.length} holders for threshold ${threshold}`);
  // The library requires a plain Uint8Array (a Buffer fails its constructor check).
  const all = await split(Uint8Array.from(secret), 255, threshold);
  const byX = new Map<number, Uint8Array>(all.map((s) => [s[SECRET_BYTES], s]));
  return holders.map((_, i) => byX.get(i + 1)!);
}

/** The x-coordinate a holder's share must carry. */
export const shareX = (holders: readonly string[], holder: string): number => holders.indexOf(holder) + 1;

/** Rebuilds a secret from at least `threshold` shares (uses exactly `threshold` of them). */
export async function reconstruct(shares: readonly Uint8Array[], threshold: number): Promise<Uint8Array> {
  if (shares.length < threshold) throw new RangeError(`${shares.length} shares, threshold ${threshold}`);
  return combine(shares.slice(0, threshold).map((s) => Uint8Array.from(s)));
}

/** Commitment to one dealt share, published by the dealer: lets the server check each returned share alone. */
export function shareCommitment(sessionId: Uint8Array, dealer: string, holder: string, kind: ShareKind, share: Uint8Array): Uint8Array {
  return hashParts(DOMAIN.shareCommit, sessionId, dealer, holder, kind, share);
}

/** H(b_u): checks the rebuilt self-mask seed. */
export function seedCommitment(sessionId: Uint8Array, dealer: string, seed: Uint8Array): Uint8Array {
  return hashParts(DOMAIN.secretCommit, sessionId, dealer, seed);
}
