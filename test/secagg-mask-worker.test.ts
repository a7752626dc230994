// The mask thread (proto/secagg/mask-worker.ts) against the definition, word for word: a vector larger than one
// shared window, so every keystream continues across the window edge, both signs, more masks than one SIMD group.
import { createCipheriv } from 'node:crypto';
import { addMasks, type Mask } from '../proto/secagg/prg';
import { MASK_WORKER_MIN_BYTES, maskOnWorker } from '../proto/secagg/mask-worker';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** t[i] ← t[i] ± word i of AES-256-CTR(key, counter 0), without pieces, windows, threads or SIMD. */
function reference(target: Uint32Array, masks: readonly Mask[]): Uint32Array {
  const out = target.slice();
  for (const m of masks) {
    const ks = createCipheriv('aes-256-ctr', m.key, Buffer.alloc(16)).update(Buffer.alloc(out.length * 4));
    for (let i = 0; i < out.length; i++) out[i] = (out[i] + m.sign * ks.readUInt32LE(4 * i)) >>> 0;
  }
  return out;
}

const key = (k: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => (k * 29 + i * 11) & 255);
const words = (n: number): Uint32Array => Uint32Array.from({ length: n }, (_, i) => Math.imul(i + 7, 2654435761) >>> 0);
const same = (a: Uint32Array, b: Uint32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

describe('secagg mask thread', () => {
  it('masks across the 1 MiB window edge exactly as the definition (18 masks, both signs)', () => {
    const x = words((1 << 18) + 5); // one window and 20 bytes
    const masks: Mask[] = Array.from({ length: 18 }, (_, k) => ({ key: key(k), sign: k % 3 === 2 ? -1 : 1 }));
    const y = x.slice();
    expect(maskOnWorker(new Uint8Array(y.buffer), masks)).to.equal(true);
    expect(same(y, reference(x, masks))).to.equal(true);
  });

  it('addMasks on a large subarray goes through it and leaves the neighbours alone', () => {
    const whole = words(MASK_WORKER_MIN_BYTES / 4 + 9);
    const view = whole.subarray(3, whole.length - 2);
    const masks: Mask[] = [
      { key: key(40), sign: -1 },
      { key: key(41), sign: 1 },
    ];
    const want = reference(view, masks);
    addMasks(view, masks);
    expect(same(view, want)).to.equal(true);
    expect([whole[0], whole[1], whole[2], whole[whole.length - 1]]).to.deep.equal([...words(3), words(whole.length)[whole.length - 1]]);
  });

  it('a key that is not 32 bytes is refused before the vector is touched', () => {
    const x = words(MASK_WORKER_MIN_BYTES / 4);
    const y = x.slice();
    expect(() =>
      addMasks(y, [
        { key: key(1), sign: 1 },
        { key: new Uint8Array(31), sign: 1 },
      ]),
    ).to.throw(RangeError, 'mask key must be 32 bytes');
    expect(same(y, x)).to.equal(true);
  });
});
