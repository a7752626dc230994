// The adaptive optimisers' WebAssembly close (coordinator/strategy/fedopt-kernel.ts) against the JavaScript loop of
// fedopt.ts it stands in for: m, v (as stored: rounded to float32) and the next values bit for bit, for each second moment, with
// and without bias correction, with the noise-aware floor, in a first round (no prior m, v) and after one.
import fc from 'fast-check';
import wabtInit from 'wabt';
import { FedAdagrad, FedAdam, FedYogi } from '../coordinator/strategy/fedopt';
import { FEDOPT_BLOCK, FEDOPT_WASM, stepFedOpt, type FedOptConstants, type SecondMoment } from '../coordinator/strategy/fedopt-kernel';
import { SCALE } from '../coordinator/strategy/fixed-point';
import { wasmApi } from '../coordinator/strategy/fold-kernel';
import type { NamedTensor } from '../proto/tensors';
import type { ServerState, WeightedSum } from '../coordinator/strategy/strategy';
import { kernelWat } from './kernel-wat';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

interface Prior {
  mPrev: Float32Array | undefined;
  vPrev: Float32Array | undefined;
  v0: number;
}

/** The JavaScript form: fedopt.ts's loop over mean-delta.ts's Δ, word for word. */
function stepJs(c: FedOptConstants, s: Float64Array, g: Float32Array, denom: number, p: Prior) {
  const second = {
    adam: (v: number, d2: number) => c.beta2 * v + (1 - c.beta2) * d2,
    adagrad: (v: number, d2: number) => v + d2,
    yogi: (v: number, d2: number) => v - (1 - c.beta2) * d2 * Math.sign(v - d2),
  }[c.mode];
  const { beta1, bc1, bc2, sHat, floor, eta, tau } = c;
  const delta = new Float64Array(g.length);
  for (let j = 0; j < g.length; j++) delta[j] = s[j] / denom;
  const m = new Float64Array(g.length);
  const v = new Float64Array(g.length);
  const next = new Float32Array(g.length);
  for (let j = 0; j < g.length; j++) {
    const d = delta[j];
    m[j] = beta1 * (p.mPrev ? p.mPrev[j] : 0) + (1 - beta1) * d;
    v[j] = second(p.vPrev ? p.vPrev[j] : p.v0, d * d);
    const vHat = sHat > 0 ? Math.max(v[j] / bc2 - sHat, floor) : v[j] / bc2;
    next[j] = g[j] + (eta * (m[j] / bc1)) / (Math.sqrt(vHat) + tau);
  }
  // Rounded as OptimizerState.write stores them.
  return { m: Float32Array.from(m), v: Float32Array.from(v), next };
}

function stepWasm(c: FedOptConstants, s: Float64Array, g: Float32Array, denom: number, p: Prior) {
  const out = { m: new Float32Array(g.length), v: new Float32Array(g.length), next: new Float32Array(g.length) };
  expect(stepFedOpt(c, s, g, denom, p, out)).to.equal(true);
  return out;
}

const bytes = (a: Float64Array | Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
function expectSame(c: FedOptConstants, s: Float64Array, g: Float32Array, denom: number, p: Prior): void {
  const js = stepJs(c, s, g, denom, p);
  const wasm = stepWasm(c, s, g, denom, p);
  for (const k of ['m', 'v', 'next'] as const) expect(bytes(wasm[k]).equals(bytes(js[k])), k).to.equal(true);
}

/** A round's constants as FedOpt.aggregate derives them. */
function constants(mode: SecondMoment, round: number, bias: boolean, noise: number): FedOptConstants {
  const beta1 = 0.9;
  const beta2 = mode === 'adagrad' ? 0 : 0.99;
  const bc1 = bias ? 1 - beta1 ** round : 1;
  const bc2 = bias && beta2 > 0 ? 1 - beta2 ** round : 1;
  const sHat = noise > 0 ? ((1 - beta2) * noise) / bc2 : 0;
  const eta = 1e-2 * (1 + Math.cos((Math.PI * (round - 1)) / 30)) * 0.5;
  return { mode, beta1, oneMinusBeta1: 1 - beta1, beta2, oneMinusBeta2: 1 - beta2, bc1, bc2, sHat, floor: 0.1 * sHat, eta, tau: 1e-3 };
}

const VARIANTS: [SecondMoment, boolean, number][] = [
  ['adam', false, 0],
  ['adam', true, 0],
  ['adam', true, 1e-6],
  ['yogi', false, 0],
  ['yogi', true, 0],
  ['adagrad', false, 0],
  ['adagrad', true, 0],
];

describe('adaptive optimisers close in WebAssembly', () => {
  it('the shipped module is the text in fedopt-kernel.ts (wabt)', async () => {
    const { wat } = await kernelWat('fedopt-kernel.ts');
    const wabt = await wabtInit();
    expect(Buffer.from(wabt.parseWat('fedopt.wat', wat).toBinary({}).buffer).equals(FEDOPT_WASM)).to.equal(true);
  });

  it("f64.max is Math.max on NaN and signed zeros, and the kernel's sign is Math.sign", async () => {
    const wabt = await wabtInit();
    const wat = `(module
      (func (export "max") (param $a f64) (param $b f64) (result f64) (f64.max (local.get $a) (local.get $b)))
      (func (export "sign") (param $x f64) (result f64)
        (select (f64.const 1)
          (select (f64.const -1) (local.get $x) (f64.lt (local.get $x) (f64.const 0)))
          (f64.gt (local.get $x) (f64.const 0)))))`;
    const bin = wabt.parseWat('probe.wat', wat).toBinary({}).buffer;
    const { max, sign } = new wasmApi!.Instance(new wasmApi!.Module(bin)).exports as unknown as {
      max: (a: number, b: number) => number;
      sign: (x: number) => number;
    };
    const xs = [NaN, 0, -0, 1, -1, 2 ** -1074, -(2 ** -1074), Infinity, -Infinity, 0.5];
    for (const a of xs) {
      expect(Object.is(sign(a), Math.sign(a)), `sign ${a}`).to.equal(true);
      for (const b of xs) expect(Object.is(max(a, b), Math.max(a, b)), `max ${a} ${b}`).to.equal(true);
    }
  });

  it('the same m, v and next bits as the JavaScript loop, value for value, across block boundaries, each variant', () => {
    const n = FEDOPT_BLOCK + 1234;
    const s = new Float64Array(n);
    const g = new Float32Array(n);
    const mPrev = new Float32Array(n);
    const vPrev = new Float32Array(n);
    let x = 12345;
    const rnd = (): number => ((x = (x * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
    for (let j = 0; j < n; j++) {
      s[j] = j % 97 === 0 ? 0 : Math.round(rnd() * 2 ** (10 + (j % 30))); // integers on the fixed-point grid, 0 included
      g[j] = rnd() * 2 ** ((j % 30) - 20);
      mPrev[j] = rnd() * 2 ** -((j % 20) + 4);
      vPrev[j] = j % 89 === 0 ? 0 : Math.abs(rnd()) * 2 ** -((j % 30) + 6);
    }
    for (const [mode, bias, noise] of VARIANTS) {
      const v0 = bias ? 0 : 1e-6;
      for (const round of [1, 2, 7]) {
        const c = constants(mode, round, bias, noise);
        for (const denom of [SCALE, 7 * SCALE]) {
          expectSame(c, s, g, denom, { mPrev: undefined, vPrev: undefined, v0 }); // the first step: no prior m, v
          expectSame(c, s, g, denom, { mPrev, vPrev, v0 });
        }
      }
    }
  });

  it('any sum, global, state and constants: the same bits (fast-check)', () => {
    const finite = fc.float({ noNaN: true, noDefaultInfinity: true, min: -1e6, max: 1e6 });
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: -(2 ** 52), max: 2 ** 52 }), finite, finite, fc.float({ noNaN: true, min: 0, max: 1e6 })), {
          minLength: 1,
          maxLength: 200,
        }),
        fc.constantFrom<SecondMoment>('adam', 'adagrad', 'yogi'),
        fc.integer({ min: 1, max: 1000 }),
        fc.boolean(),
        fc.boolean(),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.double({ min: 1, max: 2 ** 60, noNaN: true }),
        (rows, mode, round, bias, prior, noise, denom) => {
          const c = constants(mode, round, bias, mode === 'adam' ? noise : 0);
          const s = Float64Array.from(rows.map((r) => r[0]));
          const g = Float32Array.from(rows.map((r) => r[1]));
          const p = prior
            ? { mPrev: Float32Array.from(rows.map((r) => r[2])), vPrev: Float32Array.from(rows.map((r) => r[3])), v0: 0 }
            : { mPrev: undefined, vPrev: undefined, v0: bias ? 0 : 1e-6 };
          const js = stepJs(c, s, g, denom, p);
          const wasm = stepWasm(c, s, g, denom, p);
          return (['m', 'v', 'next'] as const).every((k) => bytes(wasm[k]).equals(bytes(js[k])));
        },
      ),
      { seed: 42, numRuns: 300 },
    );
  });

  it('FedAdam, FedYogi, FedAdagrad commit the same adapters and states through the module as through the JavaScript loop', () => {
    const n = 3000;
    const tensor = (name: string, f: (j: number) => number) => ({
      name,
      dtype: 'float32' as const,
      shape: [n],
      data: Float32Array.from({ length: n }, (_, j) => f(j)),
    });
    const sumOf = (r: number, noiseStd?: number): WeightedSum => ({
      tensors: new Map([
        ['a', Float64Array.from({ length: n }, (_, j) => Math.round(SCALE * 0.02 * Math.cos(j * r + 1)))],
        ['b', Float64Array.from({ length: n }, (_, j) => Math.round(SCALE * 0.001 * Math.sin(j * (r + 2))))],
      ]),
      totalWeight: 8,
      scale: SCALE,
      ...(noiseStd === undefined ? {} : { noiseStd }),
    });
    const base = { serverLearningRate: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3, serverSchedule: 'cosine' as const, roundsTotal: 10 };
    const cases = [
      { make: (s: typeof base) => new FedAdam({ ...s, biasCorrection: true }), noise: undefined },
      { make: (s: typeof base) => new FedAdam(s), noise: undefined },
      { make: (s: typeof base) => new FedAdam({ ...s, biasCorrection: true, noiseAware: true, noiseFloor: 0.25 }), noise: 0.002 },
      { make: (s: typeof base) => new FedYogi({ ...s, biasCorrection: true }), noise: undefined },
      { make: (s: typeof base) => new FedAdagrad(s), noise: undefined },
    ];
    for (const { make, noise } of cases) {
      const viaModule = make(base);
      // The same strategy with the module switched off: fedopt.ts's JavaScript loop.
      const viaJs = Object.assign(make(base), { closeInWasm: false });
      let global: NamedTensor[] = [tensor('a', (j) => Math.sin(j)), tensor('b', (j) => 0.01 * Math.cos(j)), tensor('c', (j) => j)];
      let gJs = global;
      let st: ServerState = { tensors: [], round: 1 };
      let stJs: ServerState = { tensors: [], round: 1 };
      for (let r = 1; r <= 3; r++) {
        st = { tensors: st.tensors, round: r };
        stJs = { tensors: stJs.tensors, round: r };
        global = viaModule.aggregate(global, sumOf(r, noise), st);
        gJs = viaJs.aggregate(gJs, sumOf(r, noise), stJs);
        expect(global.map((t) => bytes(t.data).toString('hex'))).to.deep.equal(gJs.map((t) => bytes(t.data).toString('hex')));
        expect(st.tensors.map((t) => [t.name, bytes(t.data).toString('hex')])).to.deep.equal(stJs.tensors.map((t) => [t.name, bytes(t.data).toString('hex')]));
      }
    }
  });
});
