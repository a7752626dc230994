// Ed25519 signatures with keys in tweetnacl's format (64-byte secret = seed ‖ public key, 32-byte public key),
// computed by node:crypto: identical signatures (Ed25519 is deterministic; test/signing.test.ts checks it against
// nacl.sign.detached), but ~80x faster to verify than tweetnacl (0.12 vs 10 ms), which matters because every
// SecAgg client verifies every advertisement of its round and the coordinator verifies every upload header.
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { ed25519KeyProblem } from './ed25519-point';

const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');
const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const pubCache = new Map<string, KeyObject>();

export function signDetached(message: Uint8Array, identitySecretKey: Uint8Array): Uint8Array {
  if (identitySecretKey.length !== 64) throw new RangeError('identity secret key must be 64 bytes (tweetnacl format)');
  const key = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8, identitySecretKey.subarray(0, 32)]), format: 'der', type: 'pkcs8' });
  return new Uint8Array(sign(null, message, key));
}

export function verifyDetached(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean {
  // Stryker disable next-line ConditionalExpression,LogicalOperator: equivalent: without this line a key not 32 bytes is refused by ed25519KeyProblem and a signature not 64 bytes by node:crypto's verify (false), so each condition alone changes no answer.
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  if (ed25519KeyProblem(publicKey) !== null) return false; // small-order or non-canonical: never trusted
  const id = Buffer.from(publicKey).toString('hex');
  let key = pubCache.get(id);
  try {
    // The cache only saves work: `if (true)` (always build the key) and a cache that is never filled or cleared
    // give the same answers, so those mutants are equivalent.
    // Stryker disable next-line ConditionalExpression: equivalent (see above).
    if (!key) {
      key = createPublicKey({ key: Buffer.concat([ED25519_SPKI, publicKey]), format: 'der', type: 'spki' });
      // Stryker disable next-line all: equivalent (see above).
      if (pubCache.size > 4096) pubCache.clear();
      // Stryker disable next-line all: equivalent (see above).
      pubCache.set(id, key);
    }
    return verify(null, message, key, signature);
  } catch {
    // Stryker disable next-line all: equivalent: unreachable in practice; node:crypto throws neither on a 32-byte key that ed25519KeyProblem accepts nor on a 64-byte signature (none of 1,549 random accepted keys threw); kept so that a future OpenSSL that does throw still answers false.
    return false;
  }
}
