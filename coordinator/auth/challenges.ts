// Single-use join challenges: Hello hands one out, Join must return it signed before it expires. A challenge
// is forgotten when used, so a captured Join cannot be replayed.
//
// Bounded per peer, never first-come: a peer address (the host, whatever its port) may hold at most
// `perHost` outstanding challenges and everyone together at most `total`; beyond either, Hello is answered
// RESOURCE_EXHAUSTED with a retry hint. No challenge is ever evicted to make room, so a flood of Hellos from
// one peer cannot invalidate a legitimate site's pending challenge (it once evicted the oldest, globally).
import { randomBytes } from 'node:crypto';
import { ProtocolError, status } from '../../proto/errors';
import { RetryLater } from '../../proto/limits';

export interface ChallengeLimits {
  /** Outstanding challenges in all. */
  readonly total: number;
  /** Outstanding challenges per peer host. */
  readonly perHost: number;
  /** The retry hint sent when a limit is reached (ms). */
  readonly retryAfterMs: number;
}

export const DEFAULT_CHALLENGE_LIMITS: ChallengeLimits = { total: 50_000, perHost: 10_000, retryAfterMs: 1000 };

/** The host of a gRPC peer string ("ipv4:127.0.0.1:5000", "ipv6:[::1]:5000", "unix:…"): ports are per connection. */
export function peerHost(peer: string): string {
  const m = /^(?:ipv4:|ipv6:)?(\[[^\]]*\]|[^:]+(?::[^:]+)*?)(?::\d+)?$/.exec(peer);
  return m ? m[1] : peer;
}

interface Pending {
  readonly expires: number;
  readonly host: string;
}

export class Challenges {
  /** Insertion order is expiry order (one TTL for all), so expired entries are swept from the front. */
  private readonly open = new Map<string, Pending>();
  private readonly perHost = new Map<string, number>();

  constructor(
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
    private readonly limits: ChallengeLimits = DEFAULT_CHALLENGE_LIMITS,
  ) {}

  /** Outstanding (unexpired, unused) challenges. */
  get size(): number {
    this.sweep();
    return this.open.size;
  }

  /** A fresh challenge for `peer`; RESOURCE_EXHAUSTED (RetryLater) when its host or everyone is at the limit. */
  issue(peer = ''): { challenge: Buffer; expires: number } {
    this.sweep();
    const host = peerHost(peer);
    const mine = this.perHost.get(host) ?? 0;
    if (mine >= this.limits.perHost) {
      throw new RetryLater(
        `${mine} join challenges are already outstanding for this peer (at most ${this.limits.perHost}): use one, or retry later`,
        this.limits.retryAfterMs,
      );
    }
    if (this.open.size >= this.limits.total) {
      throw new RetryLater(
        `the coordinator holds ${this.open.size} outstanding join challenges (at most ${this.limits.total}): retry later`,
        this.limits.retryAfterMs,
      );
    }
    const challenge = randomBytes(32);
    const expires = this.now() + this.ttlMs;
    this.open.set(challenge.toString('hex'), { expires, host });
    this.perHost.set(host, mine + 1);
    return { challenge, expires };
  }

  /**
   * Consumes a challenge; ABORTED when it was never issued, already used or expired. Not UNAUTHENTICATED: a stale
   * challenge says nothing about the site's identity (a site whose Hello answer waited in a starved process, or whose
   * Join was retried after a deadline, holds one), so the SDK starts again from Hello instead of giving up; a forged
   * or replayed Join still gets nothing.
   */
  consume(challenge: Uint8Array | null | undefined): void {
    const key = Buffer.from(challenge ?? []).toString('hex');
    const p = this.open.get(key);
    if (p === undefined) throw new ProtocolError(status.ABORTED, 'unknown or already used join challenge: call Hello for a fresh one');
    this.forget(key, p);
    if (this.now() > p.expires)
      throw new ProtocolError(status.ABORTED, `join challenge expired at ${new Date(p.expires).toISOString()}: call Hello for a fresh one`);
  }

  private forget(key: string, p: Pending): void {
    this.open.delete(key);
    const n = (this.perHost.get(p.host) ?? 1) - 1;
    if (n > 0) this.perHost.set(p.host, n);
    else this.perHost.delete(p.host);
  }

  /** Drops expired challenges (amortised O(1) per issue: each is dropped once). */
  private sweep(): void {
    const t = this.now();
    for (const [key, p] of this.open) {
      if (p.expires >= t) break;
      this.forget(key, p);
    }
  }
}
