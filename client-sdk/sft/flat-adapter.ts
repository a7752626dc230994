// All LoRA tensors of an adapter held as ONE flat trainable variable. The optimiser then runs its ~12 ops once
// per step instead of once per tensor (a 4-layer model has 32 LoRA tensors), and the per-module views are cut
// with one split, whose gradient is one concat. Per-op overhead dominates small models on GPU backends, and
// fewer ops help wasm too.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor } from '../../proto/tensors';
import { parsePeftKey } from '../../proto/model/lora-layout';

export class FlatAdapter {
  readonly theta: tf.Variable<tf.Rank.R1>;
  private readonly sizes: number[];

  /** `layout`: canonical, sorted LoRA tensors; their data seeds the variable (copied, never aliased). */
  constructor(private readonly layout: readonly NamedTensor[]) {
    this.sizes = layout.map((t) => t.data.length);
    const flat = new Float32Array(this.sizes.reduce((a, b) => a + b, 0));
    let off = 0;
    for (const t of layout) {
      flat.set(t.data, off);
      off += t.data.length;
    }
    this.theta = tf.tidy(() => tf.variable(tf.tensor1d(flat), true));
  }

  /** Per-module A/B views of theta, for ForwardOptions.lora; call inside the gradient scope. */
  modules(): Map<string, { a: tf.Tensor2D; b: tf.Tensor2D }> {
    const parts = tf.split(this.theta, this.sizes);
    const out = new Map<string, { a: tf.Tensor2D; b: tf.Tensor2D }>();
    this.layout.forEach((t, i) => {
      const k = parsePeftKey(t.name) as { path: string; which: 'A' | 'B' };
      const view = tf.reshape(parts[i], [t.shape[0], t.shape[1]]) as tf.Tensor2D;
      const e = out.get(k.path) ?? ({} as { a: tf.Tensor2D; b: tf.Tensor2D });
      if (k.which === 'A') e.a = view;
      else e.b = view;
      out.set(k.path, e);
    });
    return out;
  }

  /** The current values as NamedTensors in the layout's order (asynchronous read, works on GPU backends). */
  async read(): Promise<NamedTensor[]> {
    const flat = await this.theta.data();
    let off = 0;
    return this.layout.map((t) => {
      const data = new Float32Array(flat.subarray(off, off + t.data.length));
      off += t.data.length;
      return { name: t.name, dtype: 'float32', shape: [...t.shape], data };
    });
  }

  dispose(): void {
    this.theta.dispose();
  }
}
