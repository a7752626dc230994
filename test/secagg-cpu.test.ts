// The site's cheaper paths give the answers of the ones they replace: the Ed25519 key screen that signature checks
// use instead of the full BigInt point test (the same verdict on every small-order, non-canonical and real key; a
// key off the curve still verifies nothing), X25519 private keys imported as JWK (the same public keys and shared
// secrets as tweetnacl), per-site key caches (the same answers, cold or warm), and operator certificates checked
// once per run (a remembered success never admits other bytes).
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import nacl from 'tweetnacl';
import { ed25519KeyProblem, ed25519KeyScreen } from '../proto/crypto/ed25519-point';
import { swapPublicKeyCache, verifyDetached } from '../proto/crypto/ed25519';
import { agree, x25519KeyPair } from '../proto/secagg/keys';
import { certifyIdentity, checkRosterIdentities } from '../proto/secagg/identity';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const hex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
// The canonical y of each small-order point (x's sign bit clear), then with the sign bit set.
const SMALL_ORDER_Y = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
];
const withSign = (h: string): string => h.slice(0, 62) + (parseInt(h.slice(62), 16) | 0x80).toString(16);
// R = the identity point, S = 0: verifies under any small-order key in plain node:crypto.
const FORGED = hex('01' + '00'.repeat(63));

describe('secagg site: cheaper key checks and imports, same answers', () => {
  it('the key screen refuses exactly the small-order and non-canonical keys the full test refuses', () => {
    const weak = [...SMALL_ORDER_Y, ...SMALL_ORDER_Y.map(withSign)];
    const nonCanonical = ['ed', 'ee', 'ff'].map((b) => b + 'ff'.repeat(30) + '7f').flatMap((h) => [h, withSign(h)]);
    for (const h of [...weak, ...nonCanonical]) {
      expect(ed25519KeyProblem(hex(h)), h).to.match(/small order|canonical/);
      expect(ed25519KeyScreen(hex(h)), h).to.equal(false);
      expect(verifyDetached(Buffer.from('any message'), FORGED, hex(h)), h).to.equal(false);
    }
    // The largest canonical y (p − 1) is the order-2 point; p − 2 is a canonical y and passes the screen.
    expect(ed25519KeyScreen(hex('eb' + 'ff'.repeat(30) + '7f'))).to.equal(true);
    for (let i = 0; i < 50; i++) {
      const kp = nacl.sign.keyPair();
      expect(ed25519KeyScreen(kp.publicKey)).to.equal(true);
      expect(verifyDetached(Buffer.from('m'), nacl.sign.detached(Buffer.from('m'), kp.secretKey), kp.publicKey)).to.equal(true);
    }
  });

  it('on random keys: the screen never refuses a key the full test accepts, and nothing off the curve verifies', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ minLength: 64, maxLength: 64 }), (pk, sig) => {
        const problem = ed25519KeyProblem(pk);
        if (problem === null) expect(ed25519KeyScreen(pk)).to.equal(true);
        else {
          expect(verifyDetached(Buffer.from('m'), FORGED, pk)).to.equal(false);
          expect(verifyDetached(Buffer.from('m'), sig, pk)).to.equal(false);
        }
      }),
      { numRuns: 400 },
    );
  });

  it('X25519 keys imported as JWK: the public keys and shared secrets of tweetnacl', () => {
    for (let i = 0; i < 20; i++) {
      const sk = new Uint8Array(randomBytes(32));
      const kp = x25519KeyPair(() => sk);
      expect(Buffer.from(kp.publicKey).toString('hex')).to.equal(Buffer.from(nacl.scalarMult.base(sk)).toString('hex'));
      const peer = nacl.box.keyPair();
      expect(Buffer.from(agree(sk, peer.publicKey)).toString('hex')).to.equal(Buffer.from(nacl.scalarMult(sk, peer.publicKey)).toString('hex'));
    }
  });

  it('a fresh per-site key cache gives the same answers as a warm one', () => {
    const kp = nacl.sign.keyPair();
    const sig = nacl.sign.detached(Buffer.from('m'), kp.secretKey);
    const answers: boolean[] = [];
    for (let round = 0; round < 3; round++) {
      const outer = swapPublicKeyCache(new Map());
      try {
        answers.push(verifyDetached(Buffer.from('m'), sig, kp.publicKey), verifyDetached(Buffer.from('n'), sig, kp.publicKey));
        answers.push(verifyDetached(Buffer.from('m'), sig, kp.publicKey));
      } finally {
        swapPublicKeyCache(outer);
      }
    }
    expect(answers).to.deep.equal([true, false, true, true, false, true, true, false, true]);
  });

  it('an operator certificate that verified once is remembered only for its exact bytes', () => {
    const operator = nacl.sign.keyPair();
    const [a, b] = [nacl.sign.keyPair(), nacl.sign.keyPair()];
    const trust = { kind: 'operator', publicKey: operator.publicKey, runId: 'run-1' } as const;
    const certs = { a: certifyIdentity(operator.secretKey, 'run-1', 'a', a.publicKey), b: certifyIdentity(operator.secretKey, 'run-1', 'b', b.publicKey) };
    const roster = (keys: Record<string, Uint8Array>, certificates: Record<string, Uint8Array>) => ({ advertisements: [], identityKeys: keys, certificates });
    for (let round = 0; round < 3; round++) checkRosterIdentities(trust, roster({ a: a.publicKey, b: b.publicKey }, certs), ['a', 'b']);
    // Swapped keys, a certificate of another run or operator, a flipped bit: each still refused after the successes.
    expect(() => checkRosterIdentities(trust, roster({ a: b.publicKey, b: a.publicKey }, certs), ['a', 'b'])).to.throw(/no valid certificate/);
    expect(() => checkRosterIdentities({ ...trust, runId: 'run-2' }, roster({ a: a.publicKey }, certs), ['a'])).to.throw(/no valid certificate/);
    const other = nacl.sign.keyPair().publicKey;
    expect(() => checkRosterIdentities({ ...trust, publicKey: other }, roster({ a: a.publicKey }, certs), ['a'])).to.throw(/no valid certificate/);
    const flipped = Uint8Array.from(certs.a);
    flipped[5] ^= 1;
    expect(() => checkRosterIdentities(trust, roster({ a: a.publicKey }, { a: flipped }), ['a'])).to.throw(/no valid certificate/);
  });
});
