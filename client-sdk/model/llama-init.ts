// Random Llama-family weights with Hugging Face's initialisation (normal(0, initializer_range) for projections
// and embeddings, RMSNorm weights 1 (Gemma 3's 0, its scale being 1 + w), biases 0), seeded, with HF's saved names (`model.layers.0.…`,
// `lm_head.weight`). Used by tests and to make small bases from scratch.
import type { NamedTensor } from '../../proto/tensors';
import { numel, sortByName } from '../../proto/tensors';
import { llamaParameterShapes, type LlamaConfig } from '../../proto/model/llama-config';
import { hashString, Prng } from '../../proto/prng';
import { fillNormal } from './init';

export function randomLlamaWeights(cfg: LlamaConfig, seed: number, initializerRange = 0.02): NamedTensor[] {
  const out: NamedTensor[] = [];
  for (const [name, shape] of llamaParameterShapes(cfg)) {
    const data = new Float32Array(numel(shape));
    const full = name === 'lm_head.weight' ? name : 'model.' + name;
    if (name.endsWith('norm.weight')) data.fill(cfg.gemma3 ? 0 : 1);
    else if (name.endsWith('.weight')) fillNormal(data, new Prng(seed, hashString(full)), initializerRange);
    out.push({ name: full, dtype: 'float32', shape, data });
  }
  return sortByName(out);
}
