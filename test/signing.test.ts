// The signature layer: node:crypto's Ed25519 with tweetnacl-format keys must agree with tweetnacl byte for byte,
// and the signed encoding must never let two different field lists (or domains) share bytes.
import nacl from 'tweetnacl';
import { signDetached, verifyDetached } from '../proto/crypto/ed25519';
import { DOMAINS, sign, signedMessage, verify } from '../proto/crypto/signing';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('signing', () => {
  it('node:crypto Ed25519 gives the same signatures as nacl.sign.detached, and each verifies the other', () => {
    for (let i = 0; i < 20; i++) {
      const kp = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(i + 1));
      const msg = nacl.randomBytes(i * 37);
      const ours = signDetached(msg, kp.secretKey);
      expect(Buffer.from(ours).equals(Buffer.from(nacl.sign.detached(msg, kp.secretKey)))).to.equal(true);
      expect(nacl.sign.detached.verify(msg, ours, kp.publicKey)).to.equal(true);
      expect(verifyDetached(msg, nacl.sign.detached(msg, kp.secretKey), kp.publicKey)).to.equal(true);
      const bad = Uint8Array.from(ours);
      bad[i % 64] ^= 1;
      expect(verifyDetached(msg, bad, kp.publicKey)).to.equal(false);
    }
    expect(verifyDetached(new Uint8Array(1), new Uint8Array(64), new Uint8Array(31))).to.equal(false);
  });

  it('binds the domain and every field: moving bytes between fields or types changes the message', () => {
    const a = signedMessage(DOMAINS.upload, ['ab', 'c']);
    expect(Buffer.from(a).equals(Buffer.from(signedMessage(DOMAINS.upload, ['a', 'bc'])))).to.equal(false);
    expect(Buffer.from(a).equals(Buffer.from(signedMessage(DOMAINS.join, ['ab', 'c'])))).to.equal(false);
    expect(Buffer.from(signedMessage(DOMAINS.upload, [1])).equals(Buffer.from(signedMessage(DOMAINS.upload, ['\u0001'])))).to.equal(false);
    expect(() => signedMessage(DOMAINS.upload, [-1])).to.throw(/non-negative safe integers/);
    const kp = nacl.sign.keyPair();
    const s = sign(DOMAINS.join, ['x', 3, true, new Uint8Array([1, 2])], kp.secretKey);
    expect(verify(DOMAINS.join, ['x', 3, true, new Uint8Array([1, 2])], s, kp.publicKey)).to.equal(true);
    expect(verify(DOMAINS.upload, ['x', 3, true, new Uint8Array([1, 2])], s, kp.publicKey)).to.equal(false);
    expect(verify(DOMAINS.join, ['x', 3, false, new Uint8Array([1, 2])], s, kp.publicKey)).to.equal(false);
    expect(verify(DOMAINS.join, ['x', 3, true, new Uint8Array([1, 2])], null, kp.publicKey)).to.equal(false);
  });
});
