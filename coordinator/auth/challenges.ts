// Single-use join challenges: Hello hands one out, Join must return it signed before it expires. A challenge
// is forgotten when used, so a captured Join cannot be replayed.
import { randomBytes } from 'node:crypto';
import { ProtocolError, status } from '../../proto/errors';

/** Outstanding challenges kept at most; the oldest go first (a flood of Hellos cannot grow memory). */
export const MAX_OUTSTANDING = 10_000;

export class Challenges {
  private readonly open = new Map<string, number>();

  constructor(private readonly ttlMs: number, private readonly now: () => number = Date.now) {}

  issue(): { challenge: Buffer; expires: number } {
    const challenge = randomBytes(32);
    const expires = this.now() + this.ttlMs;
    if (this.open.size >= MAX_OUTSTANDING) this.open.delete(this.open.keys().next().value!);
    this.open.set(challenge.toString('hex'), expires);
    return { challenge, expires };
  }

  /** Consumes a challenge; UNAUTHENTICATED when it was never issued, already used or expired. */
  consume(challenge: Uint8Array | null | undefined): void {
    const key = Buffer.from(challenge ?? []).toString('hex');
    const expires = this.open.get(key);
    if (expires === undefined) throw new ProtocolError(status.UNAUTHENTICATED, 'unknown or already used join challenge: call Hello for a fresh one');
    this.open.delete(key);
    if (this.now() > expires) throw new ProtocolError(status.UNAUTHENTICATED, `join challenge expired at ${new Date(expires).toISOString()}: call Hello for a fresh one`);
  }
}
