// Sealing one dealer's pair of shares to one holder: ChaCha20-Poly1305 (node:crypto) under a key derived from
// X25519 of their encryption keys; the AAD binds session, dealer and holder, so the server cannot redirect a
// ciphertext to another holder, round or dealer. Wire form: nonce (12) ‖ ciphertext ‖ tag (16).
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { DOMAIN, hashParts } from './bytes';
import type { RandomSource } from './keys';

export const SEAL_OVERHEAD = 28;

const aad = (sessionId: Uint8Array, from: string, to: string): Buffer => Buffer.from(hashParts(DOMAIN.shareAad, sessionId, from, to));

export function seal(key32: Uint8Array, sessionId: Uint8Array, from: string, to: string, plaintext: Uint8Array, random: RandomSource): Uint8Array {
  const nonce = random(12);
  const c = createCipheriv('chacha20-poly1305', key32, nonce, { authTagLength: 16 });
  c.setAAD(aad(sessionId, from, to), { plaintextLength: plaintext.length });
  const body = Buffer.concat([c.update(plaintext), c.final()]);
  return new Uint8Array(Buffer.concat([nonce, body, c.getAuthTag()]));
}

/** The plaintext, or null when the ciphertext was not made under this key/session/dealer/holder. */
export function open(key32: Uint8Array, sessionId: Uint8Array, from: string, to: string, sealed: Uint8Array): Uint8Array | null {
  if (sealed.length < SEAL_OVERHEAD) return null;
  try {
    const d = createDecipheriv('chacha20-poly1305', key32, sealed.subarray(0, 12), { authTagLength: 16 });
    d.setAAD(aad(sessionId, from, to), { plaintextLength: sealed.length - SEAL_OVERHEAD });
    d.setAuthTag(sealed.subarray(sealed.length - 16));
    return new Uint8Array(Buffer.concat([d.update(sealed.subarray(12, sealed.length - 16)), d.final()]));
  } catch {
    return null;
  }
}
