// SCAFFOLD's local half on the tfjs trainer (lora-trainer.ts), over the flat adapter (flat-adapter.ts):
//   - every local step uses g + (c − c_i) in place of the loss gradient g (before FedProx's term, when both are on;
//     the optimiser then does what it always does with the gradient it is given, AdamW or SGD);
//   - the raw loss gradients g are summed over the K steps, and their mean is the site's next control variate
//     c_i⁺ (client-sdk/scaffold-site.ts). With plain SGD that is exactly the paper's option II:
//     y = x − η·Σ_k (g_k + c − c_i), so c_i − c + (x − y)/(K·η) = mean_k g_k. Computed directly, it stays a
//     gradient estimate under AdamW too, where (x − y)/(K·η) measures Adam's normalised steps instead (≈ 1 per
//     value), which would swamp the gradient it is added to.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { parsePeftKey, peftKey } from '../../proto/model/lora-layout';

const canonical = (name: string): string => {
  const k = parsePeftKey(name);
  return k ? peftKey(k.path, k.which) : name;
};

export class LocalControl {
  private readonly corr: tf.Tensor1D;
  private readonly sum: tf.Variable<tf.Rank.R1>;
  private stepsRecorded = 0;

  /**
   * `trained`: the trained tensors in the flat variable's order (canonical names); `correction`: c − c_i for each
   * of them, named as the site's global adapter spells them (with or without PEFT's `.default` infix).
   */
  constructor(
    private readonly trained: TensorList,
    correction: TensorList,
  ) {
    const byName = new Map(correction.map((t) => [canonical(t.name), t]));
    const n = trained.reduce((a, t) => a + t.data.length, 0);
    const flat = new Float32Array(n);
    let off = 0;
    for (const t of trained) {
      const c = byName.get(t.name);
      if (!c) throw new Error(`SCAFFOLD: no control variate for ${t.name}`);
      if (c.data.length !== t.data.length)
        throw new Error(`SCAFFOLD: the control variate of ${t.name} holds ${c.data.length} values; the tensor has ${t.data.length}`);
      flat.set(c.data, off);
      off += t.data.length;
    }
    if (byName.size !== trained.length) throw new Error(`SCAFFOLD: ${byName.size} control variate tensors for ${trained.length} trained tensors`);
    this.corr = tf.tensor1d(flat);
    this.sum = tf.variable(tf.zeros([n]), false);
  }

  /** Adds g to the round's sum (call inside tf.tidy, once per step that took a gradient). */
  record(g: tf.Tensor1D): void {
    this.sum.assign(tf.add(this.sum, g));
    this.stepsRecorded++;
  }

  /** g + (c − c_i). */
  corrected(g: tf.Tensor1D): tf.Tensor1D {
    return tf.add(g, this.corr);
  }

  /** The mean of the recorded gradients per trained tensor (canonical names), and K; zeros when K is 0. */
  async meanGradient(): Promise<{ tensors: NamedTensor[]; steps: number }> {
    const s = await this.sum.data();
    const k = this.stepsRecorded;
    const out: NamedTensor[] = [];
    let off = 0;
    for (const t of this.trained) {
      const data = new Float32Array(t.data.length);
      // One division per value in float64, one rounding to float32.
      if (k > 0) for (let j = 0; j < data.length; j++) data[j] = s[off + j] / k;
      out.push({ name: t.name, dtype: 'float32', shape: [...t.shape], data });
      off += t.data.length;
    }
    return { tensors: out, steps: k };
  }

  dispose(): void {
    this.corr.dispose();
    this.sum.dispose();
  }
}
