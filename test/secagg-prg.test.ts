// The site's fast paths against plain JavaScript, word for word: the mask PRG (AES-256-CTR, protocol version 4)
// and its SIMD accumulation at every piece boundary, past one group of 16 streams, with both signs; the SIMD
// stochastic rounding of encodeUpdate; X25519 public keys through OpenSSL.
import { createCipheriv } from 'node:crypto';
import nacl from 'tweetnacl';
import { addMasks, addMask, type Mask } from '../proto/secagg/prg';
import { x25519KeyPair } from '../proto/secagg/keys';
import { encodeUpdate, quantisation, vectorLayout, type SecAggRoundConfig } from '../proto/secagg';
import type { NamedTensor } from '../proto/tensors';
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

  it('encodeUpdate rounds exactly as the plain formula: floor(v) + (u < frac(v)·2^32), clamped, u the ChaCha20 rounding stream', () => {
    for (const [sizes, clipNorm, examples] of [
      [[1], 1e-3, 1],
      [[7, 3], 0.5, 3],
      [[16385, 9], 10, 100],
    ] as const) {
      let s = sizes.length;
      const delta: NamedTensor[] = sizes.map((n, k) => ({
        name: `t${k}`,
        dtype: 'float32',
        shape: [n],
        data: Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32 - 0.5) * 0.3),
      }));
      const include = delta.map((t) => t.name);
      const cfg: SecAggRoundConfig = {
        ...{ roundTag: 'r', baseManifestSha256: 'ab'.repeat(32), selected: ['a', 'b', 'c', 'd', 'e'], threshold: 3, graph: { kind: 'full' } },
        ...{ clipNorm, weightCap: 10, maxClients: 8, include, vectorLength: vectorLayout(delta, include).length },
      };
      const seed = new Uint8Array(32).fill(sizes[0] & 255);
      const got = encodeUpdate(delta, examples, cfg, seed);
      const { maxAbs, valueScale } = quantisation(cfg);
      const x = delta.flatMap((t) => [...t.data]);
      const norm = Math.sqrt(delta.reduce((q, t) => t.data.reduce((a, v) => a + v * v, q), 0));
      const f = (Math.min(examples, 10) / 10) * (norm > clipNorm ? clipNorm / norm : 1) * valueScale;
      const u = createCipheriv('chacha20', seed, Buffer.alloc(16)).update(Buffer.alloc(4 * x.length));
      const want = x.map((xi, i) => {
        const v = f * xi;
        const q = Math.floor(v) + (u.readUInt32LE(4 * i) < (v - Math.floor(v)) * 2 ** 32 ? 1 : 0);
        return Math.max(-maxAbs, Math.min(maxAbs, q));
      });
      expect([...new Int32Array(got.buffer).subarray(1)]).to.deep.equal(want);
    }
  });
});
