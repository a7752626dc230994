// Ed25519 signatures with keys in tweetnacl's format (64-byte secret = seed ‖ public key, 32-byte public key),
// computed by node:crypto: identical signatures (Ed25519 is deterministic; test/signing.test.ts checks it against
// nacl.sign.detached), but ~80x faster to verify than tweetnacl (0.12 vs 10 ms), which matters because every
// SecAgg client verifies every advertisement of its round and the coordinator verifies every upload header.
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { ed25519KeyScreen } from './ed25519-point';

// Keys are imported as JWK (raw key bytes): OpenSSL 3.0's DER decoders cost 0.4 ms per private key and several
// times the JWK path per public key on this box (createPrivateKey 400 against 52 µs, 2026-11-29), and a site signs
// several times a round. The key is the same either way, so are the signatures (test/signing.test.ts).
const b64url = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
/** Imported public keys by their hex: a speed cache only (verifyDetached answers the same without it). */
export type PublicKeyCache = Map<string, KeyObject>;
let pubCache: PublicKeyCache = new Map();

/**
 * Makes `cache` the one verifyDetached uses and returns the one it replaces. For simulations that run many sites
 * in one process (bench/secagg-round.ts): each simulated site gets its own, as each real site has its own process,
 * so no site's figures include another's imports.
 */
export function swapPublicKeyCache(cache: PublicKeyCache): PublicKeyCache {
  const old = pubCache;
  pubCache = cache;
  return old;
}

export function signDetached(message: Uint8Array, identitySecretKey: Uint8Array): Uint8Array {
  if (identitySecretKey.length !== 64) throw new RangeError('identity secret key must be 64 bytes (tweetnacl format)');
  // d is the seed; x (required by the JWK form) is the public half of the same tweetnacl-format key.
  const key = createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d: b64url(identitySecretKey.subarray(0, 32)), x: b64url(identitySecretKey.subarray(32)) },
    format: 'jwk',
  });
  return new Uint8Array(sign(null, message, key));
}

export function verifyDetached(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  // Stryker disable next-line ConditionalExpression,LogicalOperator: equivalent: without this line a key not 32 bytes is refused by ed25519KeyScreen and a signature not 64 bytes by node:crypto's verify (false), so each condition alone changes no answer.
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  // Small-order or non-canonical: never trusted. Off the curve: OpenSSL's verify refuses it (ed25519KeyScreen).
  if (!ed25519KeyScreen(publicKey)) return false;
  const id = Buffer.from(publicKey).toString('hex');
  let key = pubCache.get(id);
  try {
    // The cache only saves work: `if (true)` (always build the key) and a cache that is never filled or cleared
    // give the same answers, so those mutants are equivalent.
    // Stryker disable next-line ConditionalExpression: equivalent (see above).
    if (!key) {
      key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64url(publicKey) }, format: 'jwk' });
      // Stryker disable next-line all: equivalent (see above).
      if (pubCache.size > 4096) pubCache.clear();
      // Stryker disable next-line all: equivalent (see above).
      pubCache.set(id, key);
    }
    return verify(null, message, key, signature);
  } catch {
    // Stryker disable next-line all: equivalent: unreachable in practice; node:crypto throws neither on a 32-byte key that ed25519KeyProblem accepts nor on a 64-byte signature (none of 1,549 random accepted keys threw, off-curve keys included); kept so that a future OpenSSL that does throw still answers false.
    return false;
  }
}
