// What the FedAvg suites share (test/fedavg.test.ts, test/fedavg-streaming.test.ts): tensors and updates by hand,
// an exact BigInt reference of the weighted mean on the 2^-24 grid, seeded random updates, every arrival order.
import { SCALE } from '../coordinator/strategy/fixed-point';
import type { ClientUpdate } from '../coordinator/strategy/strategy';
import type { NamedTensor } from '../proto/tensors';
import type { Prng } from '../proto/prng';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

export const t = (name: string, values: number[], shape: number[] = [values.length]): NamedTensor => ({
  name,
  dtype: 'float32',
  shape,
  data: Float32Array.from(values),
});
export const upd = (clientId: string, numExamples: number, delta: NamedTensor[]): ClientUpdate => ({ clientId, numExamples, delta });
export const hex = (xs: readonly NamedTensor[]): string =>
  xs.map((x) => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength).toString('hex')).join('|');

export function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [[...xs]];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

/** Exact reference: q = round-half-away(x·2^24) and Σ n·q in BigInt; the one division in float64. */
export function referenceFedAvg(global: readonly NamedTensor[], updates: readonly ClientUpdate[]): Float32Array[] {
  const total = updates.reduce((s, u) => s + u.numExamples, 0);
  return global.map((g, ti) => {
    const out = new Float32Array(g.data.length);
    for (let i = 0; i < out.length; i++) {
      let sum = 0n;
      for (const u of updates) {
        const s = u.delta[ti].data[i] * SCALE; // exact
        const q = BigInt(Math.sign(s) * Math.floor(Math.abs(s) + 0.5));
        sum += BigInt(u.numExamples) * q;
      }
      expect(sum < 2n ** 53n && sum > -(2n ** 53n)).to.equal(true);
      out[i] = g.data[i] + Number(sum) / (total * SCALE);
    }
    return out;
  });
}

export function randomUpdate(rng: Prng, id: string, sizes: number[], scale: number, examples: number): ClientUpdate {
  return upd(
    id,
    examples,
    sizes.map((n, k) =>
      t(
        `w${k}`,
        Array.from({ length: n }, () => (rng.nextFloat() * 2 - 1) * scale),
      ),
    ),
  );
}
