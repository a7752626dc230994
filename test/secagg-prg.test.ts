// The mask PRG (AES-256-CTR, protocol version 4) and its SIMD accumulation: word for word what a plain loop over
// node:crypto's keystream gives, at every piece boundary, past one group of 16 streams, with both signs.
import { createCipheriv } from 'node:crypto';
import nacl from 'tweetnacl';
import { addMasks, addMask, type Mask } from '../proto/secagg/prg';
import { x25519KeyPair } from '../proto/secagg/keys';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** The definition, without pieces, groups or SIMD: t[i] ← t[i] ± word i of AES-256-CTR(key, counter 0). */
function reference(target: Uint32Array, masks: readonly Mask[]): Uint32Array {
  const out = target.slice();
  for (const m of masks) {
    const ks = createCipheriv('aes-256-ctr', m.key, Buffer.alloc(16)).update(Buffer.alloc(out.length * 4));
    for (let i = 0; i < out.length; i++) out[i] = (out[i] + m.sign * ks.readUInt32LE(4 * i)) >>> 0;
  }
  return out;
}

const key = (k: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (k * 31 + i * 7) & 255);

describe('secagg mask PRG', () => {
  it('is AES-256-CTR from a zero counter: the known block for the all-zero key', () => {
    const y = new Uint32Array(4);
    addMask(y, new Uint8Array(32), 1);
    expect(Buffer.from(y.buffer).toString('hex')).to.equal('dc95c078a2408989ad48a21492842087');
  });

  it('addMasks equals the plain loop for lengths around every piece edge, 0–21 masks, both signs', () => {
    for (const n of [1, 3, 4, 5, 8191, 8192, 8193, 16385, 40003]) {
      const x = Uint32Array.from({ length: n }, (_, i) => Math.imul(i + 1, 2654435761) >>> 0);
      for (const count of [0, 1, 2, 5, 16, 17, 21]) {
        const masks: Mask[] = Array.from({ length: count }, (_, k) => ({ key: key(k + n), sign: k % 3 === 1 ? -1 : 1 }));
        const y = x.slice();
        addMasks(y, masks);
        expect(Buffer.from(y.buffer).equals(Buffer.from(reference(x, masks).buffer)), `n = ${n}, ${count} masks`).to.equal(true);
      }
    }
  });

  it('a subarray target is masked in place without touching its neighbours', () => {
    const whole = Uint32Array.from({ length: 9000 }, (_, i) => i);
    const view = whole.subarray(3, 8999);
    const want = reference(view, [{ key: key(1), sign: -1 }]);
    addMasks(view, [{ key: key(1), sign: -1 }]);
    expect(Buffer.from(view.slice().buffer).equals(Buffer.from(want.buffer))).to.equal(true);
    expect([whole[0], whole[1], whole[2], whole[8999]]).to.deep.equal([0, 1, 2, 8999]);
  });

  it('X25519 key pairs through OpenSSL have the public key tweetnacl computes, for the same 32 random bytes', () => {
    for (let i = 0; i < 8; i++) {
      const sk = nacl.randomBytes(32);
      const kp = x25519KeyPair(() => sk);
      expect(Buffer.from(kp.publicKey).toString('hex')).to.equal(Buffer.from(nacl.box.keyPair.fromSecretKey(sk).publicKey).toString('hex'));
      expect(kp.secretKey).to.equal(sk);
    }
  });
});
