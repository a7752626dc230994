// All trainable LoRA tensors of an adapter held as ONE flat trainable variable. The optimiser then runs its ~12
// ops once per step instead of once per tensor (a 4-layer model has 32 LoRA tensors), and the per-module views
// are cut with one split, whose gradient is one concat. Per-op overhead dominates small models on GPU backends,
// and fewer ops help wasm too. Frozen tensors (lora_A under FFA-LoRA) are constants outside the variable: no
// gradient, no Adam moment and no weight decay reach them, and read() returns their bytes unchanged.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor } from '../../proto/tensors';
import { parsePeftKey } from '../../proto/model/lora-layout';

export class FlatAdapter {
  readonly theta: tf.Variable<tf.Rank.R1>;
  private readonly sizes: number[];
  private readonly trained: NamedTensor[];
  private readonly frozen = new Map<string, tf.Tensor2D>();

  /**
   * `layout`: canonical, sorted LoRA tensors; their data seeds the variable (copied, never aliased).
   * `isFrozen`: tensors kept constant (default none).
   */
  constructor(
    private readonly layout: readonly NamedTensor[],
    private readonly isFrozen: (name: string) => boolean = () => false,
  ) {
    this.trained = layout.filter((t) => !isFrozen(t.name));
    if (this.trained.length === 0) throw new Error('FlatAdapter: every tensor is frozen; nothing to train');
    this.sizes = this.trained.map((t) => t.data.length);
    const flat = new Float32Array(this.sizes.reduce((a, b) => a + b, 0));
    let off = 0;
    for (const t of this.trained) {
      flat.set(t.data, off);
      off += t.data.length;
    }
    this.theta = tf.tidy(() => tf.variable(tf.tensor1d(flat), true));
    for (const t of layout) if (isFrozen(t.name)) this.frozen.set(t.name, tf.tensor2d(t.data, [t.shape[0], t.shape[1]], 'float32'));
  }

  /** Per-module A/B views of theta (and the frozen constants), for ForwardOptions.lora; call inside the gradient scope. */
  modules(): Map<string, { a: tf.Tensor2D; b: tf.Tensor2D }> {
    const parts = tf.split(this.theta, this.sizes);
    const views = new Map(this.trained.map((t, i) => [t.name, tf.reshape<tf.Rank.R2>(parts[i], [t.shape[0], t.shape[1]])]));
    const out = new Map<string, { a: tf.Tensor2D; b: tf.Tensor2D }>();
    for (const t of this.layout) {
      const k = parsePeftKey(t.name) as { path: string; which: 'A' | 'B' };
      const view = views.get(t.name) ?? this.frozen.get(t.name)!;
      const e = out.get(k.path) ?? ({} as { a: tf.Tensor2D; b: tf.Tensor2D });
      if (k.which === 'A') e.a = view;
      else e.b = view;
      out.set(k.path, e);
    }
    return out;
  }

  /** The current values as NamedTensors in the layout's order (asynchronous read, works on GPU backends). */
  async read(): Promise<NamedTensor[]> {
    const flat = await this.theta.data();
    const values = new Map<string, Float32Array>();
    let off = 0;
    for (const t of this.trained) {
      values.set(t.name, new Float32Array(flat.subarray(off, off + t.data.length)));
      off += t.data.length;
    }
    return this.layout.map((t) => ({ name: t.name, dtype: 'float32', shape: [...t.shape], data: values.get(t.name) ?? t.data.slice() }));
  }

  dispose(): void {
    this.theta.dispose();
    for (const t of this.frozen.values()) t.dispose();
  }
}
