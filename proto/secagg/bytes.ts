// Canonical hashing and byte helpers shared by every SecAgg file. Each hashed tuple is framed (type tag +
// length prefix per part), so two different tuples can never produce the same preimage.
import { createHash, timingSafeEqual } from 'node:crypto';

export type Part = string | number | Uint8Array;

function frame(domain: string, parts: readonly Part[], sink: (b: Uint8Array) => void): void {
  const put = (tag: number, b: Uint8Array): void => {
    const hdr = Buffer.alloc(5);
    hdr[0] = tag;
    hdr.writeUInt32LE(b.length, 1);
    sink(hdr);
    sink(b);
  };
  put(0, Buffer.from(domain, 'utf8'));
  for (const p of parts) {
    if (typeof p === 'string') put(1, Buffer.from(p, 'utf8'));
    else if (typeof p === 'number') {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(p);
      put(2, b);
    } else put(3, p);
  }
}

/** SHA-256 over a domain string and framed parts: every derived key, commitment and signed digest. */
export function hashParts(domain: string, ...parts: readonly Part[]): Uint8Array {
  const h = createHash('sha256');
  frame(domain, parts, (b) => h.update(b));
  return new Uint8Array(h.digest());
}

/** Constant-time equality for equal lengths (commitments, keys); false for different lengths. */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** The one ordering of client ids used everywhere (sorting, mask signs): UTF-16 code-unit order. */
export const cmpId = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export function isSortedUnique(xs: readonly string[]): boolean {
  for (let i = 1; i < xs.length; i++) if (!(xs[i - 1] < xs[i])) return false;
  return true;
}

/** Domain strings: one per use, versioned, so no key or hash is ever reused for two purposes. */
export const DOMAIN = {
  advertise: 'fedtune/secagg/v1/advertise',
  session: 'fedtune/secagg/v1/session',
  shareKeys: 'fedtune/secagg/v1/share-keys',
  pairMask: 'fedtune/secagg/v1/pair-mask',
  shareEnc: 'fedtune/secagg/v1/share-encryption',
  shareAad: 'fedtune/secagg/v1/share-aad',
  shareCommit: 'fedtune/secagg/v1/share-commitment',
  secretCommit: 'fedtune/secagg/v1/self-mask-seed',
  graph: 'fedtune/secagg/v1/graph-permutation',
  consistency: 'fedtune/secagg/v1/consistency',
  identityCert: 'fedtune/secagg/v1/identity-certificate',
  update: 'fedtune/secagg/v1/update-digest',
} as const;
