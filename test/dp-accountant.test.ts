// coordinator/privacy/accountant.ts against published figures: Opacus's compute_rdp docstring example (0.336 at
// order 23), Opacus's RDPAccountant test (7.32911117143 with its default fractional orders), and the rough figures
// in the design note (integer orders 2..256).
import { DEFAULT_ORDERS, composeRdp, epsilonFromRdp, epsilonSpent, logErfc, rdpSampledGaussian } from '../coordinator/privacy/accountant';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const range = (lo: number, hi: number): number[] => Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
const OPACUS_DEFAULT = [...range(1, 99).map((x) => 1 + x / 10), ...range(12, 63)];

describe('privacy accountant (RDP of the sampled Gaussian mechanism)', () => {
  it("reproduces Opacus's compute_rdp docstring example: ε = 0.336 at order 23", () => {
    const orders = range(2, 32);
    const rdp = composeRdp(
      [
        { q: 1e-5, z: 1.0, steps: 10 },
        { q: 1e-4, z: 3.0, steps: 4 },
      ],
      orders,
    );
    const { epsilon, order } = epsilonFromRdp(rdp, orders, 1e-5);
    expect(order).to.equal(23);
    expect(epsilon).to.be.closeTo(0.336344063, 1e-8);
  });

  it("reproduces Opacus's RDPAccountant test: z 1.5, q 0.04, 2250 steps, δ 1e-5 → 7.32911117143 (fractional order 3.9)", () => {
    const { epsilon, order } = epsilonFromRdp(composeRdp([{ q: 0.04, z: 1.5, steps: 2250 }], OPACUS_DEFAULT), OPACUS_DEFAULT, 1e-5);
    expect(order).to.equal(3.9);
    expect(epsilon).to.be.closeTo(7.32911117143, 1e-9);
  });

  it('matches the design note figures with integer orders 2..256', () => {
    const orders = range(2, 256);
    const eps = (q: number, z: number, steps: number, delta: number): number => epsilonFromRdp(composeRdp([{ q, z, steps }], orders), orders, delta).epsilon;
    expect(eps(1, 1, 100, 1e-5)).to.be.closeTo(110.1266311, 1e-6);
    expect(eps(1, 5, 100, 1e-5)).to.be.closeTo(10.8016915, 1e-6);
    expect(eps(0.01, 1, 1000, 1e-6)).to.be.closeTo(2.4366938, 1e-6);
  });

  it('q = 1 is the Gaussian mechanism (α/2z²); q = 0 costs nothing; z = 0 is no privacy', () => {
    expect(rdpSampledGaussian(1, 2, 8)).to.equal(1);
    expect(rdpSampledGaussian(0, 2, 8)).to.equal(0);
    expect(rdpSampledGaussian(0.5, 0, 8)).to.equal(Infinity);
    expect(epsilonSpent([{ q: 1, z: 0, steps: 1 }], 1e-5)).to.equal(Infinity);
    expect(epsilonSpent([], 1e-5)).to.equal(0);
    // Integer and fractional evaluations agree where they meet (the fractional series at α = 4 ± 1e-9).
    expect(rdpSampledGaussian(0.1, 1.2, 4 + 1e-9)).to.be.closeTo(rdpSampledGaussian(0.1, 1.2, 4), 1e-7);
  });

  it('composition adds: T rounds cost what one segment of T steps costs, and ε grows with rounds', () => {
    const split = epsilonSpent(
      [
        { q: 1, z: 2, steps: 3 },
        { q: 1, z: 2, steps: 7 },
      ],
      1e-5,
    );
    expect(split).to.be.closeTo(epsilonSpent([{ q: 1, z: 2, steps: 10 }], 1e-5), 1e-12);
    let prev = 0;
    for (const t of [1, 2, 5, 10, 50]) {
      const e = epsilonSpent([{ q: 1, z: 2, steps: t }], 1e-5, DEFAULT_ORDERS);
      expect(e).to.be.greaterThan(prev);
      prev = e;
    }
  });

  it('log erfc is accurate from the body to the far tail', () => {
    // Reference values: log(erfc(x)) from scipy (log 2 + log_ndtr(−x√2)).
    const want: [number, number][] = [
      [-3, 0.6931361352504468],
      [-0.5, 0.4190391477755596],
      [0.3, -0.39843005144008525],
      [1, -1.849605509933249],
      [2, -5.36494126461664],
      [5, -27.200889545537446],
      [30, -903.9741171106442],
    ];
    for (const [x, y] of want) expect(logErfc(x), String(x)).to.be.closeTo(y, 1e-12 * Math.max(1, Math.abs(y)));
  });

  it('refuses invalid parameters by name', () => {
    expect(() => rdpSampledGaussian(1.5, 1, 2)).to.throw(/sampling rate 1.5/);
    expect(() => rdpSampledGaussian(0.5, NaN, 2)).to.throw(/noise multiplier NaN/);
    expect(() => rdpSampledGaussian(0.5, 1, 1)).to.throw(/order 1/);
    expect(() => epsilonFromRdp([1], [2], 0)).to.throw(/delta 0/);
  });
});
