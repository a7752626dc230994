// The signature layer: node:crypto's Ed25519 with tweetnacl-format keys must agree with tweetnacl byte for byte,
// and the signed encoding must never let two different field lists (or domains) share bytes.
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import nacl from 'tweetnacl';
import { signDetached, verifyDetached } from '../proto/crypto/ed25519';
import { ed25519KeyProblem } from '../proto/crypto/ed25519-point';
import { DOMAINS, joinSignedFields, sign, signedMessage, verify } from '../proto/crypto/signing';
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

  it('encodes exactly: domain, NUL, then per field a type byte, a uint32 BE byte length and the bytes', () => {
    expect(DOMAINS).to.deep.equal({ join: 'fedtune/join/v2', upload: 'fedtune/upload/v1', uploadChunk: 'fedtune/upload-chunk/v1' });
    // A view into a larger buffer: only its own bytes are signed.
    const backing = Uint8Array.from([0xee, 7, 8, 9, 0xee]);
    const m = signedMessage('d', ['ab', 'é', 258, 0, Number.MAX_SAFE_INTEGER, true, false, backing.subarray(1, 4), '', new Uint8Array(0)]);
    const want = [
      '6400', // "d" NUL
      '01' + '00000002' + '6162', // string: UTF-8 bytes
      '01' + '00000002' + 'c3a9', // the length counts bytes, not characters
      '02' + '00000008' + '0000000000000102', // number: uint64 BE
      '02' + '00000008' + '0000000000000000',
      '02' + '00000008' + '001fffffffffffff',
      '03' + '00000001' + '01', // boolean
      '03' + '00000001' + '00',
      '04' + '00000003' + '070809', // bytes
      '01' + '00000000',
      '04' + '00000000',
    ].join('');
    expect(Buffer.from(m).toString('hex')).to.equal(want);
    expect(Buffer.from(signedMessage(DOMAINS.join, [])).toString('latin1')).to.equal('fedtune/join/v2\0');
  });

  it('refuses numbers it cannot encode exactly: negative, fractional, unsafe, non-finite', () => {
    for (const n of [-1, 1.5, 2 ** 53, NaN, Infinity]) {
      expect(() => signedMessage(DOMAINS.upload, [n]), String(n)).to.throw(RangeError, `cannot sign ${n}: only non-negative safe integers`);
    }
  });

  it('verify answers false, without encoding the fields, for a missing or mis-sized signature or key', () => {
    const kp = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(9));
    const s = sign(DOMAINS.upload, ['x'], kp.secretKey);
    expect(verify(DOMAINS.upload, ['x'], s, kp.publicKey)).to.equal(true);
    // [-1] cannot be encoded (signedMessage throws): each refusal happens before the fields are looked at.
    expect(verify(DOMAINS.upload, [-1], undefined, kp.publicKey)).to.equal(false);
    expect(verify(DOMAINS.upload, [-1], s.subarray(0, 63), kp.publicKey)).to.equal(false);
    expect(verify(DOMAINS.upload, [-1], Uint8Array.from([...s, 0]), kp.publicKey)).to.equal(false);
    expect(verify(DOMAINS.upload, [-1], s, kp.publicKey.subarray(0, 31))).to.equal(false);
    expect(verify(DOMAINS.upload, [-1], s, Uint8Array.from([...kp.publicKey, 0]))).to.equal(false);
  });

  it('joinSignedFields lists exactly: version, run, challenge, name, key, backend, then the coordinator key id and keys', () => {
    const c = { key_id: 'k1', sign_public_key: new Uint8Array([1]), box_public_key: new Uint8Array([2]) };
    const pk = new Uint8Array([3]);
    const ch = new Uint8Array([4]);
    expect(joinSignedFields(7, 'run', ch, 'site', pk, 'wasm', c)).to.deep.equal([7, 'run', ch, 'site', pk, 'wasm', 'k1', c.sign_public_key, c.box_public_key]);
  });

  it('signDetached refuses a secret key that is not 64 bytes (tweetnacl format)', () => {
    for (const n of [32, 63, 65]) {
      expect(() => signDetached(new Uint8Array(1), new Uint8Array(n)), String(n)).to.throw(
        RangeError,
        /^identity secret key must be 64 bytes \(tweetnacl format\)$/,
      );
    }
  });

  it('verifyDetached refuses a small-order key under which a forged signature verifies in node:crypto', () => {
    // The identity point (y = 1): R = identity, S = 0 satisfies [S]B = R + [k]A for every message, and node:crypto's
    // Ed25519 accepts it; the key check must refuse it first.
    const identity = new Uint8Array(32);
    identity[0] = 1;
    const forged = new Uint8Array(64);
    forged[0] = 1;
    const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), identity]);
    expect(nodeVerify(null, Buffer.from('any message'), createPublicKey({ key: spki, format: 'der', type: 'spki' }), forged)).to.equal(true);
    expect(verifyDetached(Buffer.from('any message'), forged, identity)).to.equal(false);
  });

  it('verifyDetached keeps each public key apart, including keys that differ only in bytes that are not valid UTF-8', () => {
    // The key cache is keyed by the key's hex; keys equal as (lossy) UTF-8 text must still verify under their own key.
    const kp = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(3));
    const msg = new Uint8Array([1, 2, 3]);
    const sig = signDetached(msg, kp.secretKey);
    const lossy = (b: Uint8Array): string => Buffer.from(b).toString('utf8');
    let other: Uint8Array | undefined;
    for (let i = 0; i < 31 && !other; i++) {
      if (kp.publicKey[i] < 0x80 || kp.publicKey[i] >= 0xc0) continue; // a lone continuation byte decodes to U+FFFD
      for (let v = 0x80; v < 0xc0 && !other; v++) {
        const pk = Uint8Array.from(kp.publicKey);
        pk[i] = v;
        if (v !== kp.publicKey[i] && lossy(pk) === lossy(kp.publicKey) && ed25519KeyProblem(pk) === null) other = pk;
      }
    }
    expect(other, 'a second valid key with the same UTF-8 decoding').to.not.equal(undefined);
    expect(verifyDetached(msg, sig, kp.publicKey)).to.equal(true);
    expect(verifyDetached(msg, sig, other!)).to.equal(false);
  });
});
