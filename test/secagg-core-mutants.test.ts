// Exact checks on the SecAgg core (proto/secagg/*) that mutation testing found missing (bench/MUTATION.md, groups
// secagg-encoding, secagg-server, secagg-client): each asserts bytes, values or a whole message, against
// references computed here without the project's code where the project's code is what is under test.
import { createCipheriv, createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { ProtocolError } from '../proto/errors';
import { GaussianStream } from '../proto/gaussian';
import type { NamedTensor } from '../proto/tensors';
import { DOMAIN, bytesEqual, cmpId, hashParts, hex, isSortedUnique } from '../proto/secagg/bytes';
import { noiseShareSigma, quantisation, type SecAggRoundConfig } from '../proto/secagg/config';
import { decodeSum, encodeUpdate, sumVectors, unmaskedSum, updateDigest, vectorLayout } from '../proto/secagg/encoding';
import { SHARE_BYTES, dealShares, reconstruct, shareX } from '../proto/secagg/shares';
import { baseConfig, seedOf } from './secagg-core-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sha256 = (...chunks: Buffer[]): string => createHash('sha256').update(Buffer.concat(chunks)).digest('hex');
const t = (name: string, values: ArrayLike<number>): NamedTensor => ({ name, dtype: 'float32', shape: [values.length], data: Float32Array.from(values) });
/** Deterministic test values in [-1, 1) (not cryptographic). */
function lcg(seed: number, n: number): number[] {
  let x = seed >>> 0;
  return Array.from({ length: n }, () => ((x = (Math.imul(x, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1);
}
/** maxClients 1024: 22-bit values, maxAbs = 2^21 − 1 (encoding.ts's header). */
const M = 2 ** 21 - 1;
function cfgOf(over: Partial<SecAggRoundConfig>): SecAggRoundConfig {
  return baseConfig({ roundTag: 'r', selected: ['a', 'b', 'c', 'd'], vectorLength: 2, ...over });
}
/** The first n words of ChaCha20 under `key` with a zero IV, straight from node:crypto (not prg.ts). */
function chachaWords(key: Uint8Array, n: number): Uint32Array {
  const b = createCipheriv('chacha20', key, Buffer.alloc(16)).update(Buffer.alloc(4 * n));
  return new Uint32Array(b.buffer.slice(b.byteOffset, b.byteOffset + 4 * n));
}
/**
 * encodeUpdate's documented rule, written out here: slot 0 = round(w·M), then for every included value in
 * include order q = floor(v) + [u < frac(v)·2^32], v = w·c·s·x, clamped to ±M, u the next ChaCha20 word.
 */
function referenceEncoding(delta: NamedTensor[], n: number, cfg: SecAggRoundConfig, seed: Uint8Array): Uint32Array {
  const xs = cfg.include.flatMap((name) => Array.from(delta.find((d) => d.name === name)!.data));
  let sq = 0;
  for (const x of xs) sq += x * x;
  const norm = Math.sqrt(sq);
  const clip = norm > cfg.clipNorm ? cfg.clipNorm / norm : 1;
  const w = Math.min(n, cfg.weightCap) / cfg.weightCap;
  const f = w * clip * quantisation(cfg).valueScale; // M / S, less with DP noise's headroom (config.ts)
  const u = chachaWords(seed, xs.length);
  const out = new Int32Array(1 + xs.length);
  out[0] = Math.round(w * M);
  xs.forEach((x, i) => {
    const v = f * x;
    const fl = Math.floor(v);
    out[1 + i] = Math.max(-M, Math.min(M, fl + (u[i] < (v - fl) * 2 ** 32 ? 1 : 0)));
  });
  return new Uint32Array(out.buffer);
}
const hexOf = (a: ArrayBufferView): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
function refusedWith(f: () => unknown, code: status, message: string): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught, message).to.be.instanceOf(ProtocolError);
  expect([(caught as ProtocolError).code, (caught as ProtocolError).message]).to.deep.equal([code, message]);
}

describe('secagg core, exactly', () => {
  it('hashParts frames each part as a type tag, a little-endian u32 length and the bytes (hand-built preimage)', () => {
    const preimage = [
      Buffer.from([0, 1, 0, 0, 0]),
      Buffer.from('d'),
      Buffer.from([1, 2, 0, 0, 0, 0xc3, 0xa9]), // 'é' in UTF-8
      Buffer.from([2, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x70, 0x40]), // 258 as a little-endian float64
      Buffer.from([3, 3, 0, 0, 0, 7, 8, 9]),
    ];
    const bytes = new Uint8Array([0, 7, 8, 9]).subarray(1); // a view with an offset: only its own bytes count
    expect(hex(hashParts('d', 'é', 258, bytes))).to.equal(sha256(...preimage));
    // The empty string and the empty byte array are different parts (tags 1 and 3), with length 0.
    expect(hex(hashParts('', '', new Uint8Array(0)))).to.equal(sha256(Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 3, 0, 0, 0, 0])));
  });

  it('uses exactly the protocol’s domain strings (a peer built from the spec derives the same keys)', () => {
    expect(DOMAIN).to.deep.equal({
      advertise: 'fedtune/secagg/v1/advertise',
      session: 'fedtune/secagg/v1/session',
      shareKeys: 'fedtune/secagg/v1/share-keys',
      pairMask: 'fedtune/secagg/v1/pair-mask',
      shareEnc: 'fedtune/secagg/v1/share-encryption',
      shareAad: 'fedtune/secagg/v1/share-aad',
      shareCommit: 'fedtune/secagg/v1/share-commitment',
      secretCommit: 'fedtune/secagg/v1/self-mask-seed',
      graph: 'fedtune/secagg/v1/graph-permutation',
      consistency: 'fedtune/secagg/v1/consistency',
      identityCert: 'fedtune/secagg/v1/identity-certificate',
      update: 'fedtune/secagg/v1/update-digest',
    });
  });

  it('bytesEqual, hex, cmpId and isSortedUnique answer exactly', () => {
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).to.equal(true);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).to.equal(false);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).to.equal(false);
    expect(hex(new Uint8Array([0xff, 0x0a, 0x01, 0x02]).subarray(1, 3))).to.equal('0a01');
    expect([cmpId('a', 'b'), cmpId('b', 'a'), cmpId('a', 'a')]).to.deep.equal([-1, 1, 0]);
    // UTF-16 code-unit order: an astral character (surrogate 0xD83D…) sorts before U+FF5E.
    expect(cmpId('\u{1F600}', '\uFF5E')).to.equal(-1);
    expect([[], ['a'], ['a', 'b', 'c']].map(isSortedUnique)).to.deep.equal([true, true, true]);
    expect(
      [
        ['a', 'a'],
        ['b', 'a'],
        ['a', 'c', 'b'],
        ['a', 'b', 'b'],
      ].map(isSortedUnique),
    ).to.deep.equal([false, false, false, false]);
  });

  it('encodeUpdate gives exactly the documented rounding, bit for bit, across a keystream chunk and in include order, clipped or not', () => {
    // 'z' spans two keystream chunks (16384 words each); 'a' is not included; the include order is not the adapter's.
    const delta = [
      t('a', [5, 5]),
      t(
        'z',
        lcg(1, 16389).map((v) => v * 0.02),
      ),
      t('b', [0.3, -0.7, 0.05]),
    ];
    const include = ['b', 'z'];
    const base = { include, vectorLength: 1 + 3 + 16389 };
    const layout = vectorLayout(delta, include);
    expect(layout).to.deep.equal({
      entries: [
        { name: 'b', tensor: 2, offset: 1, size: 3 },
        { name: 'z', tensor: 1, offset: 4, size: 16389 },
      ],
      length: 16393,
    });
    for (const [clipNorm, n] of [
      [0.5, 37], // ‖x‖ ≈ 1.63: clipped; weight 0.37
      [4, 250], // not clipped; weight capped at 1
      [4, 1], // the smallest weight
    ]) {
      const cfg = cfgOf({ ...base, clipNorm });
      const seed = seedOf(`round ${clipNorm} ${n}`);
      expect(hexOf(encodeUpdate(delta, n, cfg, seed)), `clip ${clipNorm}, ${n} examples`).to.equal(hexOf(referenceEncoding(delta, n, cfg, seed)));
    }
  });

  it('encodeUpdate: a clip norm so small that the scale overflows saturates at ±maxAbs (0 stays 0)', () => {
    const cfg = cfgOf({ clipNorm: 1e-320, vectorLength: 5 });
    const v = new Int32Array(encodeUpdate([t('x', [0.5, -0.25, 0, 1e-30])], 100, cfg, seedOf('s')).buffer);
    expect([...v]).to.deep.equal([M, M, -M, 0, M]);
  });

  it('encodeUpdate with DP noise: each value gets its rounded Gaussian share drawn from noiseSeed, the weight slot none', () => {
    const cfg = cfgOf({ noiseMultiplier: 1, vectorLength: 1 + 16390, clipNorm: 1 });
    const x = lcg(7, 16390).map((v) => v * 0.02); // ‖x‖ ≈ 1.48: clipped
    const roundingSeed = seedOf('rounding');
    const noiseSeed = seedOf('noise');
    const noisy = new Int32Array(encodeUpdate([t('x', x)], 100, cfg, roundingSeed, noiseSeed).buffer);
    const plain = new Int32Array(referenceEncoding([t('x', x)], 100, cfg, roundingSeed).buffer);
    // The noise, drawn per keystream chunk as the encoder draws it (proto/gaussian.ts is not under test here).
    const sigma = noiseShareSigma(cfg);
    const g = new GaussianStream(noiseSeed);
    const noise = [16384, 6].flatMap((n) => {
      const b = new Float64Array(n);
      g.roundedInto(b, sigma);
      return [...b];
    });
    expect(noisy[0]).to.equal(plain[0]);
    const want = Int32Array.from(plain.subarray(1), (q, i) => Math.max(-M, Math.min(M, q + noise[i])));
    expect(hexOf(noisy.subarray(1))).to.equal(hexOf(want));
    expect(noise.filter((e) => e !== 0).length).to.be.greaterThan(16000); // the noise is really there
  });

  it('encodeUpdate without DP noise never reads noiseSeed (a 5-byte one is not refused); with noise it is', () => {
    const short = new Uint8Array(5);
    for (const noiseMultiplier of [undefined, 0]) {
      const cfg = cfgOf({ noiseMultiplier, vectorLength: 3 });
      expect([...encodeUpdate([t('x', [0, 0])], 100, cfg, seedOf('s'), short)]).to.deep.equal([M, 0, 0]);
    }
    const noisy = cfgOf({ noiseMultiplier: 1, vectorLength: 3 });
    expect(() => encodeUpdate([t('x', [0, 0])], 100, noisy, seedOf('s'), short)).to.throw(RangeError, 'the noise seed must be 32 bytes');
  });

  it('encodeUpdate refuses, with the exact error, a seed that is not 32 bytes, a bad example count, a layout of another length and a non-finite value', () => {
    const cfg = cfgOf({ include: ['y'], vectorLength: 3 });
    expect(() => encodeUpdate([t('y', [1, 2])], 1, cfg, new Uint8Array(31))).to.throw(RangeError, 'roundingSeed must be 32 bytes');
    for (const n of [0, 1.5, NaN, 2 ** 53])
      refusedWith(() => encodeUpdate([t('y', [1, 2])], n, cfg, seedOf('s')), status.INVALID_ARGUMENT, `numExamples ${n} must be a positive integer`);
    expect(encodeUpdate([t('y', [0, 0])], 1, cfg, seedOf('s'))[0]).to.equal(Math.round(M / 100)); // 1 example is accepted
    refusedWith(() => encodeUpdate([t('x', [1, 2])], 1, cfg, seedOf('s')), status.INVALID_ARGUMENT, 'secagg layout: included tensor y is not in the adapter');
    refusedWith(() => encodeUpdate([t('y', [1, 2, 3])], 1, cfg, seedOf('s')), status.INVALID_ARGUMENT, 'secagg layout: vector of 4 values, round expects 3');
    // The first non-finite value of the included tensor where the sum turned non-finite, by name and index.
    const two = cfgOf({ include: ['p', 'q'], vectorLength: 6 });
    refusedWith(
      () => encodeUpdate([t('p', [1, 2]), t('q', [3, Infinity, NaN])], 1, two, seedOf('s')),
      status.INVALID_ARGUMENT,
      'q[1] = Infinity is not finite',
    );
    refusedWith(() => encodeUpdate([t('p', [NaN, 2]), t('q', [3, 4, 5])], 1, two, seedOf('s')), status.INVALID_ARGUMENT, 'p[0] = NaN is not finite');
  });

  it('updateDigest hashes the example count, the include list and each included tensor’s own bytes (a view’s offset respected)', () => {
    const buf = new Float32Array([9, 1.5, -2, 9]);
    const y: NamedTensor = { name: 'y', dtype: 'float32', shape: [2], data: buf.subarray(1, 3) };
    const d = updateDigest([t('a', [7]), y], 12, ['y']);
    const yBytes = Buffer.from(new Float32Array([1.5, -2]).buffer);
    const num = (v: number): Buffer => {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(v);
      return b;
    };
    const part = (tag: number, b: Buffer): Buffer => Buffer.concat([Buffer.from([tag, b.length, 0, 0, 0]), b]);
    expect(hex(d)).to.equal(sha256(part(0, Buffer.from(DOMAIN.update)), part(2, num(12)), part(2, num(1)), part(1, Buffer.from('y')), part(3, yBytes)));
    refusedWith(() => updateDigest([t('a', [7])], 12, ['y']), status.INVALID_ARGUMENT, 'secagg layout: included tensor y is not in the adapter');
  });

  it('sumVectors adds views mod 2^32 and refuses no vectors or unequal lengths exactly', () => {
    const big = new Uint32Array([5, 0xffffffff, 2, 3, 5]);
    expect([...sumVectors([Uint32Array.from([1, 1, 0xfffffffe]), big.subarray(1, 4)])]).to.deep.equal([0, 3, 1]);
    expect([...sumVectors([big.subarray(1, 3)])]).to.deep.equal([0xffffffff, 2]);
    // The inputs are left as they were (the first one is copied, not summed into).
    const first = Uint32Array.from([1, 2]);
    const sum = sumVectors([first, Uint32Array.from([3, 4])]);
    expect([[...sum], [...first]]).to.deep.equal([
      [4, 6],
      [1, 2],
    ]);
    expect(() => sumVectors([])).to.throw(RangeError, 'sumVectors: no vectors');
    expect(() => sumVectors([new Uint32Array(3), new Uint32Array(2)])).to.throw(RangeError, 'sumVectors: lengths 3 and 2');
  });

  it('unmaskedSum and decodeSum: exact per-tensor sums, weight and mean; every refusal with its message', () => {
    const cfg = cfgOf({ include: ['y'], vectorLength: 3, weightCap: 10 });
    const global = [t('a', [1, 2]), t('y', [0.5, -0.5])];
    const sum = new Uint32Array(new Int32Array([2 * M, 3 * M, -M]).buffer);
    const u = unmaskedSum(sum, cfg, global);
    expect([[...u.tensors.keys()], [...u.tensors.get('y')!], u.totalWeight, u.scale]).to.deep.equal([['y'], [3 * M, -M], 2, M]);
    const { adapter, totalWeight } = decodeSum(sum, cfg, global);
    expect(totalWeight).to.equal(2);
    expect(adapter.map((x) => [x.name, x.dtype, x.shape, [...x.data]])).to.deep.equal([
      ['a', 'float32', [2], [1, 2]],
      ['y', 'float32', [2], [2, -1]], // 0.5 + 3/2, −0.5 − 1/2
    ]);
    expect(global[1].data[0]).to.equal(0.5); // the global adapter is not changed
    // With the survivors given, the sum must pass the gate: 2 sites cannot have a total weight of 2·M/10 − 1.
    refusedWith(
      () => unmaskedSum(new Uint32Array([Math.round(M / 10) * 2 - 1, 0, 0]), cfg, global, 2),
      status.FAILED_PRECONDITION,
      `secagg gate: total weight ${Math.round(M / 10) * 2 - 1} is outside [${Math.round(M / 10) * 2}, ${2 * M}], the range 2 sites with weights in [1/10, 1] can give: a weight slot was out of range`,
    );
    expect(unmaskedSum(new Uint32Array([Math.round(M / 10) * 2, 0, 0]), cfg, global, 2).totalWeight).to.equal((Math.round(M / 10) * 2) / M);
    refusedWith(() => unmaskedSum(new Uint32Array(4), cfg, global), status.INVALID_ARGUMENT, 'secagg decode: sum of 4 values, layout has 3');
    refusedWith(
      () => unmaskedSum(new Uint32Array(3), { ...cfg, vectorLength: 4 }, global),
      status.INVALID_ARGUMENT,
      'secagg decode: sum of 3 values, layout has 3',
    );
    refusedWith(
      () => unmaskedSum(new Uint32Array(4), { ...cfg, vectorLength: 4 }, global),
      status.INVALID_ARGUMENT,
      'secagg decode: sum of 4 values, layout has 3',
    );
    refusedWith(() => unmaskedSum(new Uint32Array(3), cfg, global), status.INVALID_ARGUMENT, 'secagg decode: total weight 0 must be positive');
    refusedWith(
      () => unmaskedSum(new Uint32Array([0xffffffff, 0, 0]), cfg, global),
      status.INVALID_ARGUMENT,
      'secagg decode: total weight -1 must be positive',
    );
  });

  it('Shamir sharing: refusals with their messages, x = i + 1 for holder i, exactly the first t shares used', async () => {
    const secret = seedOf('secret');
    await dealShares(new Uint8Array(31), ['a', 'b', 'c'], 2).then(
      () => expect.fail('accepted a 31-byte secret'),
      (e: Error) => expect([e.name, e.message]).to.deep.equal(['RangeError', 'secret must be 32 bytes']),
    );
    for (const [n, th] of [
      [2, 3],
      [256, 3],
    ]) {
      const holders = Array.from({ length: n }, (_, i) => `h${i}`);
      await dealShares(secret, holders, th).then(
        () => expect.fail(`accepted ${n} holders`),
        (e: Error) => expect([e.name, e.message]).to.deep.equal(['RangeError', `${n} holders for threshold ${th}`]),
      );
    }
    const holders = Array.from({ length: 255 }, (_, i) => `h${String(i).padStart(3, '0')}`);
    const shares = await dealShares(secret, holders, 3); // 255 holders and 3 holders for threshold 3 are accepted
    expect(shares.map((s) => s[32])).to.deep.equal(holders.map((_, i) => i + 1));
    expect([shareX(holders, 'h000'), shareX(holders, 'h254'), shareX(holders, 'nobody')]).to.deep.equal([1, 255, 0]);
    expect((await dealShares(secret, ['a', 'b', 'c'], 3)).length).to.equal(3);
    const junk = new Uint8Array(33).fill(7);
    expect(hex(await reconstruct([shares[4], shares[9], shares[200], junk], 3))).to.equal(hex(secret));
    expect(hex(await reconstruct([shares[7], shares[0], shares[254]], 3))).to.equal(hex(secret)); // exactly t
    expect([SHARE_BYTES, ...new Set(shares.map((x) => x.length))]).to.deep.equal([33, 33]);
    await reconstruct(shares.slice(0, 2), 3).then(
      () => expect.fail('rebuilt from 2 of 3'),
      (e: Error) => expect([e.name, e.message]).to.deep.equal(['RangeError', '2 shares, threshold 3']),
    );
  });

  it('the gate: exact weight range and norm bound (√m per site, half a weight unit per site), each refusal with its message', () => {
    // clipNorm 1, no noise: valueScale = weightScale = M, so the bound is (W + N/2) + N·√m grid units.
    const cfg = cfgOf({ include: ['y'], vectorLength: 5, weightCap: 10, clipNorm: 1 });
    const global = [t('y', [0, 0, 0, 0])];
    const gate = (ints: number[], n: number): unknown => unmaskedSum(new Uint32Array(new Int32Array(ints).buffer), cfg, global, n);
    const lo = 2 * Math.round(M / 10);
    for (const w of [lo, 2 * M]) expect(() => gate([w, 0, 0, 0, 0], 2)).to.not.throw();
    for (const w of [lo - 1, 2 * M + 1])
      refusedWith(
        () => gate([w, 0, 0, 0, 0], 2),
        status.FAILED_PRECONDITION,
        `secagg gate: total weight ${w} is outside [${lo}, ${2 * M}], the range 2 sites with weights in [1/10, 1] can give: a weight slot was out of range`,
      );
    for (const n of [0, 1.5]) refusedWith(() => gate([M, 0, 0, 0, 0], n), status.FAILED_PRECONDITION, `secagg gate: ${n} survivors`);
    // One site of weight M, m = 4 values: bound M + 0.5 + 2. Norms just inside and just outside it (and outside /
    // inside the bounds √3 or √5 in place of √m = 2 would give).
    const a = M + 2;
    const inside = [M, a, 1296, 0, 0];
    const outside = [M, a, 1587, 0, 0];
    const norm = (v: number[]): number => Math.sqrt(v.slice(1).reduce((s2, x) => s2 + x * x, 0));
    expect(norm(inside) - M).to.be.within(2.24, 2.5);
    expect(norm(outside) - M).to.be.within(2.5, 2.73);
    expect(() => gate(inside, 1)).to.not.throw();
    refusedWith(
      () => gate(outside, 1),
      status.FAILED_PRECONDITION,
      `secagg gate: the sum's norm ${norm(outside).toExponential(3)} exceeds ${(M + 2.5).toExponential(3)} (grid units), the most 1 clipped updates of total weight ${M} can reach: an input exceeded the clip norm 1`,
    );
  });

  it('the gate with DP noise: the bound adds N·(σ(√m + 10) + √m/2), to within half a grid unit either side', () => {
    const cfg = cfgOf({ include: ['y'], vectorLength: 5, weightCap: 10, clipNorm: 1, noiseMultiplier: 1 });
    const global = [t('y', [0, 0, 0, 0])];
    const { valueScale } = quantisation(cfg);
    const sigma = noiseShareSigma(cfg);
    const [w, n] = [M, 2];
    const bound = ((w + n / 2) * 1 * valueScale) / M + n * (2 + sigma * (2 + 10) + 0.5 * 2);
    /** [w, a, b, 0, 0] with a norm in (target − 0.5, target − 0.05) or, with `above`, (target + 0.05, target + 0.5). */
    const near = (target: number, above: boolean): number[] => {
      const a = Math.floor(target) - 1;
      for (let b = 0; ; b++) {
        const d = Math.sqrt(a * a + b * b) - target;
        if (above ? d > 0.05 && d < 0.5 : d > -0.5 && d < -0.05) return [w, a, b, 0, 0];
      }
    };
    const gate = (ints: number[]): unknown => unmaskedSum(new Uint32Array(new Int32Array(ints).buffer), cfg, global, n);
    expect(() => gate(near(bound, false))).to.not.throw();
    expect(() => gate(near(bound, true))).to.throw(ProtocolError, /^secagg gate: the sum's norm .* exceeds .* an input exceeded the clip norm 1$/);
  });

  it('the gate: a norm exactly at the bound passes; the bound scales with the clip norm', () => {
    // clipNorm 1, 2 sites of weight M each, m = 4: bound = (2M + 1) + 2·2 = 2M + 5, an integer a vector can reach.
    const one = cfgOf({ include: ['y'], vectorLength: 5, weightCap: 10, clipNorm: 1 });
    const global = [t('y', [0, 0, 0, 0])];
    const at = (c: SecAggRoundConfig, ints: number[], n: number): unknown => unmaskedSum(new Uint32Array(new Int32Array(ints).buffer), c, global, n);
    expect(() => at(one, [2 * M, 2 * M + 5, 0, 0, 0], 2)).to.not.throw();
    expect(() => at(one, [2 * M, 2 * M + 6, 0, 0, 0], 2)).to.throw(ProtocolError, /exceeds/);
    // clipNorm 0.5: valueScale = 2M, so the same weights allow (2M + 1)·0.5·2M/M + 4 = 2M + 5 again; with the
    // clip norm left out of the product the bound would be doubled.
    const half = cfgOf({ include: ['y'], vectorLength: 5, weightCap: 10, clipNorm: 0.5 });
    expect(quantisation(half).valueScale).to.equal(2 * M);
    expect(() => at(half, [2 * M, 2 * M + 5, 0, 0, 0], 2)).to.not.throw();
    expect(() => at(half, [2 * M, 2 * M + 6, 0, 0, 0], 2)).to.throw(ProtocolError, /exceeds/);
  });
});
