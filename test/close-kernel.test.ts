// FedAvg's WebAssembly close (coordinator/strategy/close-kernel.ts) against the JavaScript step it replaces.
import fc from 'fast-check';
import wabtInit from 'wabt';
import { CLOSE_BLOCK, CLOSE_WASM, closeFedAvg } from '../coordinator/strategy/close-kernel';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { SCALE } from '../coordinator/strategy/fixed-point';
import { stepAlongMeanDelta } from '../coordinator/strategy/mean-delta';
import { kernelWat } from './kernel-wat';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** The JavaScript form: delta = s / d in float64, then next = g + delta rounded once to float32. */
function closeJs(s: Float64Array, g: Float32Array, d: number): Float32Array {
  const out = new Float32Array(g.length);
  for (let j = 0; j < g.length; j++) out[j] = g[j] + s[j] / d;
  return out;
}

describe('FedAvg close in WebAssembly', () => {
  it('the shipped module is the text in close-kernel.ts (wabt)', async () => {
    const { wat } = await kernelWat('close-kernel.ts');
    const wabt = await wabtInit();
    expect(Buffer.from(wabt.parseWat('close.wat', wat).toBinary({}).buffer).equals(CLOSE_WASM)).to.equal(true);
  });

  it('the same bits as the JavaScript step, value for value, across block boundaries', () => {
    const n = CLOSE_BLOCK + 1234;
    const s = new Float64Array(n);
    const g = new Float32Array(n);
    let x = 12345;
    const rnd = (): number => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    for (let j = 0; j < n; j++) {
      s[j] = Math.round(rnd() * 2 ** (10 + (j % 40))); // integers on the fixed-point grid, small to large
      g[j] = rnd() * 2 ** ((j % 30) - 20);
    }
    for (const d of [SCALE, 7 * SCALE, 3.5 * 2 ** 30, 1e3 * SCALE]) {
      const out = new Float32Array(n);
      expect(closeFedAvg(s, g, d, out)).to.equal(true);
      expect(Buffer.from(out.buffer).equals(Buffer.from(closeJs(s, g, d).buffer))).to.equal(true);
    }
  });

  it('any sum, global and denominator: the same bits (fast-check)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: -(2 ** 52), max: 2 ** 52 }), fc.float({ noNaN: true, noDefaultInfinity: true })), { minLength: 1, maxLength: 300 }),
        fc.double({ min: 1, max: 2 ** 60, noNaN: true }),
        (pairs, d) => {
          const s = Float64Array.from(pairs.map((p) => p[0]));
          const g = Float32Array.from(pairs.map((p) => p[1]));
          const out = new Float32Array(g.length);
          closeFedAvg(s, g, d, out);
          return Buffer.from(out.buffer).equals(Buffer.from(closeJs(s, g, d).buffer));
        },
      ),
      { seed: 42, numRuns: 300 },
    );
  });

  it('FedAvg commits the same adapter with the module as through the JavaScript step', () => {
    const n = 3000;
    const global = [{ name: 'w', dtype: 'float32' as const, shape: [n], data: Float32Array.from({ length: n }, (_, j) => Math.sin(j)) }];
    const strategy = new FedAvg();
    const a = strategy.begin(global);
    for (const [id, k, v] of [
      ['a', 3, 0.01],
      ['b', 5, -0.02],
    ] as const) {
      const u = {
        clientId: id,
        numExamples: k,
        delta: [{ name: 'w', dtype: 'float32' as const, shape: [n], data: Float32Array.from({ length: n }, (_, j) => v * Math.cos(j * k)) }],
      };
      a.admit(u);
      a.add(u);
    }
    const viaModule = strategy.aggregate(global, a.sum())[0].data;
    const viaJs = stepAlongMeanDelta('FedAvg', global, a.sum(), (_n, g, delta, next) => {
      for (let j = 0; j < next.length; j++) next[j] = g[j] + delta[j];
    })[0].data;
    expect(Buffer.from(viaModule.buffer).equals(Buffer.from(viaJs.buffer))).to.equal(true);
  });
});
