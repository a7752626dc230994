// A round's mean update Δ = Σ w_k·q_k / (W·scale): the pseudo-gradient of Reddi et al. 2021, which every server
// step starts from (FedAvg adds it as it is; FedAvgM and the adaptive optimisers step along it). One correctly
// rounded float64 division per value, so Δ is a function of the exact integer sum alone: whatever order the
// updates arrived in, every step sees the same Δ. Computed one tensor at a time, so the float64 copy never
// exceeds the largest tensor.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import type { WeightedSum } from './strategy';

/**
 * Writes the next value of every element of one tensor into `out` (float32: one rounding, on assignment).
 * `g` is the global tensor, `delta` its mean update in float64.
 */
export type ServerStep = (name: string, g: Float32Array, delta: Float64Array, out: Float32Array) => void;

/**
 * The same next values as `step` over the mean delta, computed at once from the sum and the denominator (the
 * WebAssembly closes: FedAvg's, close-kernel.ts; the adaptive optimisers', fedopt-kernel.ts); false where it cannot
 * run, and `step` is used. `name` is the tensor's, as `step` gets it.
 */
export type DirectStep = (s: Float64Array, g: Float32Array, denom: number, out: Float32Array, name: string) => boolean;

/**
 * The next adapter: for each global tensor with an entry in the sum, `step` over its mean delta; a tensor the sum
 * lacks keeps its global value (and `step` is not called for it). `label` names the strategy in errors.
 */
export function stepAlongMeanDelta(label: string, global: TensorList, sum: WeightedSum, step: ServerStep, direct?: DirectStep): NamedTensor[] {
  if (!(sum.totalWeight > 0)) throw new Error(`${label}: no updates to aggregate`);
  const denom = sum.totalWeight * sum.scale;
  return global.map((g) => {
    const s = sum.tensors.get(g.name);
    const out = new Float32Array(g.data.length);
    if (!s) out.set(g.data);
    else {
      if (s.length !== out.length) throw new RangeError(`sum of ${g.name} holds ${s.length} values; the tensor has ${out.length}`);
      if (direct && s instanceof Float64Array && direct(s, g.data, denom, out, g.name)) return { name: g.name, dtype: g.dtype, shape: g.shape, data: out };
      const delta = new Float64Array(out.length);
      // Stryker disable next-line EqualityOperator: equivalent: `<=` also writes delta[out.length], which a typed array ignores.
      for (let j = 0; j < out.length; j++) delta[j] = s[j] / denom;
      step(g.name, g.data, delta, out);
    }
    return { name: g.name, dtype: g.dtype, shape: g.shape, data: out };
  });
}
