// proto/secagg's encoding: quantisation, clipping, stochastic rounding, decoding, no wrap at maxClients, sums mod 2^32.
import { ProtocolError } from '../proto/errors';
import { decodeSum, encodeUpdate, quantisation, sumVectors } from '../proto/secagg';
import { baseConfig, hexOf, seedOf, t } from './secagg-core-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('secagg encoding', () => {
  const cfg = baseConfig({ selected: ['a', 'b', 'c', 'd', 'e'], include: ['x'], vectorLength: 4 });
  const M = 2 ** 21 - 1; // maxClients 1024 → b = 22 bits

  it("quantises hand-checked values: weight slot, two's complement, stochastic rounding to a neighbour", () => {
    expect(quantisation(cfg)).to.deep.equal({ bits: 22, maxAbs: M, valueScale: M, weightScale: M });
    const v = encodeUpdate([t('x', [0.5, -0.25, 0])], 100, cfg, seedOf('s'));
    expect(v[0]).to.equal(M);
    expect([1048575, 1048576]).to.include(v[1]); // 0.5·M = 1048575.5
    expect([2 ** 32 - 524288, 2 ** 32 - 524287]).to.include(v[2]); // −524287.75
    expect(v[3]).to.equal(0);
    expect(encodeUpdate([t('x', [0.5, -0.25, 0])], 50, cfg, seedOf('s'))[0]).to.equal(Math.round(0.5 * M));
    expect(encodeUpdate([t('x', [0.5, -0.25, 0])], 5000, cfg, seedOf('s'))[0]).to.equal(M); // capped
  });

  it('clips to the L2 norm and keeps excluded tensors out of the vector', () => {
    const c2 = baseConfig({ selected: cfg.selected, include: ['y'], vectorLength: 3 });
    const v = encodeUpdate([t('a', [100, 100]), t('y', [3, 4])], 100, c2, seedOf('s')); // ‖y‖ = 5 → ×0.2
    expect(v.length).to.equal(3);
    expect(Math.abs(v[1] - 0.6 * M)).to.be.lessThan(1);
    expect(Math.abs(v[2] - 0.8 * M)).to.be.lessThan(1);
    expect(() => encodeUpdate([t('a', [1, 1])], 1, c2, seedOf('s'))).to.throw(ProtocolError, /not in the adapter/);
    expect(() => encodeUpdate([t('y', [1, NaN])], 1, c2, seedOf('s'))).to.throw(ProtocolError, /not finite/);
    expect(() => encodeUpdate([t('y', [1, 2, 3])], 1, c2, seedOf('s'))).to.throw(ProtocolError, /round expects 3/);
  });

  it('rounds stochastically without bias, deterministically for a given seed', () => {
    const n = 20000;
    const c = baseConfig({ selected: cfg.selected, vectorLength: n + 1, clipNorm: 1e6 });
    const s = quantisation(c).valueScale;
    const x = new Float32Array(n).fill(Math.fround((1000 + 0.3) / s));
    const exact = x[0] * s;
    const v = encodeUpdate([{ name: 'x', dtype: 'float32', shape: [n], data: x }], 100, c, seedOf('u'));
    let ups = 0;
    for (let i = 1; i <= n; i++) {
      expect(v[i] === Math.floor(exact) || v[i] === Math.floor(exact) + 1).to.equal(true);
      ups += v[i] - Math.floor(exact);
    }
    expect(Math.abs(ups / n - (exact - Math.floor(exact)))).to.be.lessThan(0.015); // sd ≈ 0.0032
    expect(hexOf(encodeUpdate([{ name: 'x', dtype: 'float32', shape: [n], data: x }], 100, c, seedOf('u')))).to.equal(hexOf(v));
    expect(hexOf(encodeUpdate([{ name: 'x', dtype: 'float32', shape: [n], data: x }], 100, c, seedOf('w')))).to.not.equal(hexOf(v));
  });

  it('decodes one client to its delta within a grid step; excluded tensors keep the global values', () => {
    const c = baseConfig({ selected: cfg.selected, include: ['y'], vectorLength: 4 });
    const global = [t('a', [1, 2]), t('y', [0.5, 0.5, 0.5])];
    const delta = [t('a', [9, 9]), t('y', [0.1, -0.2, 0.3])];
    const { adapter, totalWeight } = decodeSum(encodeUpdate(delta, 100, c, seedOf('d')), c, global);
    expect(totalWeight).to.equal(1);
    expect(Array.from(adapter[0].data)).to.deep.equal([1, 2]);
    const step = 1 / quantisation(c).valueScale;
    adapter[1].data.forEach((v, i) => expect(Math.abs(v - (0.5 + delta[1].data[i]))).to.be.lessThan(step + 1e-7));
  });

  it('never wraps at N = maxClients with every value at ±clip', () => {
    for (const maxClients of [8, 1000]) {
      const c = baseConfig({ selected: cfg.selected, maxClients, vectorLength: 3, clipNorm: 2 });
      const { maxAbs } = quantisation(c);
      const global = [t('x', [0, 0])];
      for (const x of [
        [2, 0],
        [0, -2],
        [Math.SQRT2, -Math.SQRT2],
      ]) {
        const vs = Array.from({ length: maxClients }, (_, i) => encodeUpdate([t('x', x)], 100, c, seedOf(`v${i}`)));
        const sum = sumVectors(vs);
        const ints = new Int32Array(sum.buffer);
        expect(ints[0]).to.equal(maxClients * maxAbs);
        if (x[0] === 2) expect(ints[1]).to.equal(maxClients * maxAbs);
        if (x[1] === -2) expect(ints[2]).to.equal(-maxClients * maxAbs);
        const mean = decodeSum(sum, c, global).adapter[0].data;
        expect(mean[0]).to.be.closeTo(Math.fround(x[0]), 1e-5);
        expect(mean[1]).to.be.closeTo(Math.fround(x[1]), 1e-5);
      }
    }
  });

  it('sums order-independently mod 2^32', () => {
    const a = Uint32Array.from([0xffffffff, 1, 7]);
    const b = Uint32Array.from([2, 0xfffffffe, 9]);
    expect(Array.from(sumVectors([a, b]))).to.deep.equal([1, 0xffffffff, 16]);
    expect(hexOf(sumVectors([b, a]))).to.equal(hexOf(sumVectors([a, b])));
  });
});
