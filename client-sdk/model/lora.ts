// LoRA's tfjs state for the SDK's forward pass: an adapter's tensors as tf tensors, by module. The PEFT names,
// layout and initial adapter, which the coordinator needs too, live tfjs-free in proto/model/lora-layout.ts.
import * as tf from '@tensorflow/tfjs-core';
import type { TensorList } from '../../proto/tensors';
import { canonicalAdapter, loraScaling, parsePeftKey, type LoraConfig } from '../../proto/model/lora-layout';
import type { LoraState } from './gpt2';

/**
 * tf tensors for an adapter, ready for ForwardOptions.lora. The module set comes from the adapter itself (as
 * PEFT loads it); `dispose` frees the tensors this call created.
 */
export function loraStateFromAdapter(adapter: TensorList, lora: LoraConfig): { state: LoraState; dispose(): void } {
  const parts = new Map<string, { a?: tf.Tensor2D; b?: tf.Tensor2D }>();
  const created: tf.Tensor[] = [];
  for (const t of canonicalAdapter(adapter)) {
    const k = parsePeftKey(t.name) as { path: string; which: 'A' | 'B' };
    if (t.shape.length !== 2) throw new Error(`LoRA tensor ${t.name} must be 2-D`);
    const x = tf.tensor2d(t.data, [t.shape[0], t.shape[1]], 'float32');
    created.push(x);
    const e = parts.get(k.path) ?? {};
    if (k.which === 'A') e.a = x;
    else e.b = x;
    parts.set(k.path, e);
  }
  const modules = new Map<string, { a: tf.Tensor2D; b: tf.Tensor2D }>();
  for (const [path, e] of parts) {
    if (!e.a || !e.b) throw new Error(`LoRA module ${path} lacks lora_${e.a ? 'B' : 'A'}`);
    if (e.a.shape[0] !== lora.r || e.b.shape[1] !== lora.r) {
      throw new Error(`LoRA module ${path} has rank ${e.a.shape[0]}/${e.b.shape[1]}, config says r=${lora.r}`);
    }
    modules.set(path, { a: e.a, b: e.b });
  }
  return {
    state: { modules, scaling: loraScaling(lora), dropout: lora.dropout },
    dispose: () => created.forEach((t) => t.dispose()),
  };
}
