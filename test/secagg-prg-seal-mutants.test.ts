// Mutation-testing follow-up (issue 14, group secagg-prg-seal): the mask PRG's and the share seal's edges that the
// end-to-end tests pass over. Every reference value is node:crypto used directly (ChaCha20, AES-256-CTR,
// ChaCha20-Poly1305, SHA-256), never the project's own helpers; the share AAD's framing is written out here.
import { execFileSync } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import * as path from 'node:path';
import { Keystream, KEYSTREAM_CHUNK_WORDS, addMask, addMasks, maskBytes, maskCipher } from '../proto/secagg/prg';
import { SEAL_OVERHEAD, open, seal } from '../proto/secagg/seal';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const key = (k: number, n = 32): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (k * 37 + i * 13 + 5) & 255);
const hexOf = (b: ArrayBufferView): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
const chacha = (k: Uint8Array, iv: Uint8Array, bytes: number): Buffer => createCipheriv('chacha20', k, iv).update(Buffer.alloc(bytes));
const aes = (k: Uint8Array, bytes: number): Buffer => createCipheriv('aes-256-ctr', k, Buffer.alloc(16)).update(Buffer.alloc(bytes));

/** bytes + Σ plus − Σ minus as LE uint32 words, each stream from its own offset (words). */
function reference(bytes: Uint8Array, plus: Buffer[], minus: Buffer[], fromWord = 0): Uint8Array {
  const out = Buffer.from(bytes);
  for (let i = 0; i < out.length / 4; i++) {
    let w = out.readUInt32LE(4 * i);
    for (const s of plus) w = (w + s.readUInt32LE(4 * (i + fromWord))) >>> 0;
    for (const s of minus) w = (w - s.readUInt32LE(4 * (i + fromWord))) >>> 0;
    out.writeUInt32LE(w, 4 * i);
  }
  return new Uint8Array(out);
}

/** The share AAD by its definition: SHA-256 over (tag, u32 LE length, bytes) frames of domain, session, from, to. */
function shareAad(sessionId: Uint8Array, from: string, to: string): Buffer {
  const h = createHash('sha256');
  const put = (tag: number, b: Uint8Array): void => {
    const hdr = Buffer.alloc(5);
    hdr[0] = tag;
    hdr.writeUInt32LE(b.length, 1);
    h.update(hdr).update(b);
  };
  put(0, Buffer.from('fedtune/secagg/v1/share-aad'));
  put(3, sessionId);
  put(1, Buffer.from(from));
  put(1, Buffer.from(to));
  return h.digest();
}

describe('secagg PRG and seal mutants (issue 14)', () => {
  it('Keystream is ChaCha20 from node:crypto, zero IV by default, continuing across calls, fresh aligned arrays', () => {
    const k = key(1);
    const ks = new Keystream(k);
    const a = ks.words(5);
    const b = ks.words(KEYSTREAM_CHUNK_WORDS);
    const want = chacha(k, Buffer.alloc(16), 4 * (5 + KEYSTREAM_CHUNK_WORDS));
    expect(hexOf(a)).to.equal(want.subarray(0, 20).toString('hex'));
    expect(hexOf(b)).to.equal(want.subarray(20).toString('hex'));
    expect([a.length, b.length, a.byteOffset % 4, b.byteOffset % 4, KEYSTREAM_CHUNK_WORDS]).to.deep.equal([5, 16384, 0, 0, 16384]);
    expect(ks.words(0).length).to.equal(0);
    const iv = key(2, 16);
    expect(hexOf(new Keystream(k, iv).words(7))).to.equal(chacha(k, iv, 28).toString('hex'));
  });

  it('Keystream refuses a wrong key or IV length and more than one chunk of words, with exact messages', () => {
    expect(() => new Keystream(key(1, 31))).to.throw(RangeError, /^keystream key must be 32 bytes, got 31$/);
    expect(() => new Keystream(key(1), key(1, 12))).to.throw(RangeError, /^keystream IV must be 16 bytes, got 12$/);
    const ks = new Keystream(key(3));
    for (const n of [16385, -1, NaN]) expect(() => ks.words(n), `n = ${n}`).to.throw(RangeError, /^at most 16384 words per call$/);
    // The refusals consumed nothing: the next words are the stream's first.
    expect(hexOf(ks.words(2))).to.equal(chacha(key(3), Buffer.alloc(16), 8).toString('hex'));
  });

  it('maskCipher is AES-256-CTR from a zero counter; it and addMasks refuse a key that is not 32 bytes', () => {
    expect(maskCipher(key(4)).update(Buffer.alloc(48)).toString('hex')).to.equal(aes(key(4), 48).toString('hex'));
    expect(() => maskCipher(key(4, 31))).to.throw(RangeError, /^mask key must be 32 bytes, got 31$/);
    const t = Uint32Array.from([1, 2, 3]);
    expect(() =>
      addMasks(t, [
        { key: key(5), sign: 1 },
        { key: key(5, 33), sign: -1 },
      ]),
    ).to.throw(RangeError, /^mask key must be 32 bytes, got 33$/);
    expect([...t]).to.deep.equal([1, 2, 3]);
    addMasks(t, []);
    expect([...t]).to.deep.equal([1, 2, 3]);
  });

  it('addMask subtracts with sign −1 and adds with +1: one minus then one plus of the same key is the identity', () => {
    const x = Uint32Array.from({ length: 37 }, (_, i) => Math.imul(i + 3, 2654435761) >>> 0);
    const y = x.slice();
    addMask(y, key(6), -1);
    expect(hexOf(y)).to.equal(hexOf(reference(new Uint8Array(x.buffer), [], [aes(key(6), 148)])));
    addMask(y, key(6), 1);
    expect([...y]).to.deep.equal([...x]);
  });

  it('maskBytes: only-minus, only-plus and mixed groups past 8 streams, ragged pieces, windows that continue the streams', () => {
    const n = (1 << 16) + 20; // one full piece, then a 20-byte piece (not a whole 16-byte row)
    const x = new Uint8Array(Buffer.from(aes(key(99), n)));
    const streams = Array.from({ length: 12 }, (_, k) => aes(key(10 + k), 2 * n));
    const cases: [number[], number[]][] = [
      [[], [0]],
      [[], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]],
      [[0], []],
      [
        [0, 1, 2, 3, 4, 5, 6, 7, 8],
        [9, 10, 11],
      ],
      [
        [0, 1, 2],
        [3, 4, 5, 6, 7, 8, 9, 10, 11],
      ],
    ];
    for (const [p, m] of cases) {
      const y = x.slice();
      const plus = p.map((k) => maskCipher(key(10 + k)));
      const minus = m.map((k) => maskCipher(key(10 + k)));
      maskBytes(y, plus, minus);
      const label = `plus ${p.length}, minus ${m.length}`;
      expect(hexOf(y), label).to.equal(
        hexOf(
          reference(
            x,
            p.map((k) => streams[k]),
            m.map((k) => streams[k]),
          ),
        ),
      );
      // The same ciphers over a second window pick up where the first ended.
      const z = x.slice(0, 36);
      maskBytes(z, plus, minus);
      const want = reference(
        x.slice(0, 36),
        p.map((k) => streams[k]),
        m.map((k) => streams[k]),
        n / 4,
      );
      expect(hexOf(z), `${label}, second window`).to.equal(hexOf(want));
    }
  });

  it('maskBytes sizes the SIMD memory itself: the first caller in a fresh process (no module cached by another)', () => {
    // In one process the SIMD module is cached at the largest size asked so far, so only a fresh process shows
    // whether maskBytes asks for its 9 × 64 KiB (one piece and a group of 8 keystreams).
    const prg = path.join(__dirname, '..', 'proto', 'secagg', 'prg.js');
    const script = `const { addMasks } = require(${JSON.stringify(prg)});
      const t = new Uint32Array(5); const k = (j) => Uint8Array.from({ length: 32 }, (_, i) => j + i);
      addMasks(t, Array.from({ length: 9 }, (_, j) => ({ key: k(j), sign: 1 })));
      process.stdout.write(Buffer.from(t.buffer).toString('hex'));`;
    // Under StrykerJS the mutant in play is a global of this process; a child reads it from the environment.
    const active = (globalThis as { __stryker__?: { activeMutant?: string } }).__stryker__?.activeMutant;
    const env = active === undefined ? process.env : { ...process.env, __STRYKER_ACTIVE_MUTANT__: active };
    const got = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', env });
    const k = (j: number): Uint8Array => Uint8Array.from({ length: 32 }, (_, i) => j + i);
    const want = reference(
      new Uint8Array(20),
      Array.from({ length: 9 }, (_, j) => aes(k(j), 20)),
      [],
    );
    expect(got).to.equal(hexOf(want));
    // The same here (also what makes mutation testing run this test for maskBytes' lines: coverage is per process).
    const here = new Uint32Array(5);
    addMasks(
      here,
      Array.from({ length: 9 }, (_, j) => ({ key: k(j), sign: 1 as const })),
    );
    expect(hexOf(here)).to.equal(got);
  });

  it('seal is ChaCha20-Poly1305 over nonce ‖ ciphertext ‖ tag with the share AAD, its 12-byte nonce drawn once', () => {
    const k = key(20);
    const sid = key(21, 32);
    const pt = key(22, 65);
    const asked: number[] = [];
    const nonce = key(23, 12);
    const sealed = seal(k, sid, 's01', 's02', pt, (m) => (asked.push(m), nonce));
    const c = createCipheriv('chacha20-poly1305', k, nonce, { authTagLength: 16 });
    c.setAAD(shareAad(sid, 's01', 's02'), { plaintextLength: pt.length });
    const want = Buffer.concat([nonce, c.update(pt), c.final(), c.getAuthTag()]);
    expect(asked).to.deep.equal([12]);
    expect(SEAL_OVERHEAD).to.equal(28);
    expect([sealed.length, hexOf(sealed)]).to.deep.equal([65 + 28, want.toString('hex')]);
    expect(hexOf(open(k, sid, 's01', 's02', want) ?? new Uint8Array(1))).to.equal(hexOf(pt));
  });

  it('open returns null for another key, session, dealer or holder, a flipped bit anywhere, or fewer than 28 bytes', () => {
    const k = key(30);
    const sid = key(31);
    const pt = key(32, 40);
    const sealed = seal(k, sid, 'a', 'b', pt, () => key(33, 12));
    expect(hexOf(open(k, sid, 'a', 'b', sealed) ?? new Uint8Array(1))).to.equal(hexOf(pt));
    expect(open(key(34), sid, 'a', 'b', sealed)).to.equal(null);
    expect(open(k, key(35), 'a', 'b', sealed)).to.equal(null);
    expect(open(k, sid, 'b', 'b', sealed)).to.equal(null);
    expect(open(k, sid, 'a', 'a', sealed)).to.equal(null);
    expect(open(k, sid, 'b', 'a', sealed)).to.equal(null);
    for (const at of [0, 11, 12, 51, 52, 67]) {
      const bad = sealed.slice();
      bad[at] ^= 1;
      expect(open(k, sid, 'a', 'b', bad), `bit flipped at ${at}`).to.equal(null);
    }
    for (const len of [0, 12, 27, 67]) expect(open(k, sid, 'a', 'b', sealed.subarray(0, len)), `${len} bytes`).to.equal(null);
  });

  it('an empty plaintext seals to exactly 28 bytes and opens to an empty array', () => {
    const sealed = seal(key(40), key(41), 'x', 'y', new Uint8Array(0), () => key(42, 12));
    expect(sealed.length).to.equal(28);
    const got = open(key(40), key(41), 'x', 'y', sealed);
    expect(got instanceof Uint8Array && got.length).to.equal(0);
  });
});
