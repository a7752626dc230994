// Random GPT-2 weights with Hugging Face's initialisation (normal(0, 0.02); residual projections scaled by
// 1/sqrt(2·n_layer); LayerNorm 1/0; biases 0), from a seeded PRNG. Used by tests and for pretraining from scratch.
import type { NamedTensor } from '../../proto/tensors';
import { numel, sortByName } from '../../proto/tensors';
import type { Gpt2Config } from '../../proto/model/gpt2-config';
import { gpt2ParameterShapes } from '../../proto/model/gpt2-config';
import { hashString, Prng } from '../../proto/prng';

/** Standard normal samples by Box–Muller. */
export function fillNormal(out: Float32Array, rng: Prng, std: number): Float32Array {
  for (let i = 0; i < out.length; i += 2) {
    const u1 = 1 - rng.nextFloat(); // (0, 1], keeps log finite
    const u2 = rng.nextFloat();
    const r = Math.sqrt(-2 * Math.log(u1)) * std;
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** `initializerRange` is HF's initializer_range (std of the normal init), 0.02 for GPT-2. */
export function randomGpt2Weights(cfg: Gpt2Config, seed: number, initializerRange = 0.02): NamedTensor[] {
  const out: NamedTensor[] = [];
  for (const [name, shape] of gpt2ParameterShapes(cfg)) {
    const data = new Float32Array(numel(shape));
    if (name.endsWith('.weight') && shape.length === 2) {
      const residual = /\.(attn|mlp)\.c_proj\.weight$/.test(name);
      const std = residual ? initializerRange / Math.sqrt(2 * cfg.nLayer) : initializerRange;
      fillNormal(data, new Prng(seed, hashString(name)), std);
    } else if (/ln_\d\.weight$|ln_f\.weight$/.test(name)) {
      data.fill(1);
    }
    out.push({ name, dtype: 'float32', shape, data });
  }
  return sortByName(out);
}
