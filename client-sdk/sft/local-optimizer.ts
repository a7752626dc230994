// The site's local optimiser over the flat adapter (the tfjs trainer's; the WebGPU engine has the same rules as
// kernels in engine/optimizer.ts). Chosen by the coordinator in the task plan (proto/model/client-optimizer.ts)
// and created fresh every round: no optimiser state survives a round or is federated.
//   AdamW: tfjs's Adam (epsilon 1e-8 as in PyTorch), after decoupled weight decay — the trainer's code from before
//          the choice existed, op for op, so AdamW runs stay bit for bit what they were.
//   SGD:   decoupled weight decay, then b ← momentum·b + g (only when momentum > 0) and w ← w − lr·b.
import * as tf from '@tensorflow/tfjs-core';
import { ADAMW, type ClientOptimizer } from '../../proto/model/client-optimizer';

export interface LocalOptimizer {
  /** One update of `vars` from their gradients (call inside tf.tidy). */
  apply(vars: readonly tf.Variable[], grads: readonly { name: string; tensor: tf.Tensor }[]): void;
  dispose(): void;
}

export function createLocalOptimizer(opt: ClientOptimizer | undefined, learningRate: number, weightDecay: number): LocalOptimizer {
  const o = opt ?? ADAMW;
  const decay = weightDecay > 0 ? 1 - learningRate * weightDecay : 1;
  const shrink = (vars: readonly tf.Variable[]): void => {
    if (decay !== 1) for (const v of vars) v.assign(tf.mul(v, decay));
  };
  if (o.name === 'adamw') {
    const adam = tf.train.adam(learningRate, 0.9, 0.999, 1e-8);
    return {
      apply(vars, grads) {
        // Decoupled weight decay (AdamW): shrink the weights, then apply the Adam update.
        shrink(vars);
        adam.applyGradients([...grads]);
      },
      dispose: () => adam.dispose(),
    };
  }
  const { momentum } = o;
  // The momentum buffers start at zero each round, so the first step's b is g itself (0·m + g = g exactly).
  const buffers = new Map<string, tf.Variable>();
  return {
    apply(vars, grads) {
      shrink(vars);
      for (const v of vars) {
        const g = grads.find((x) => x.name === v.name)?.tensor;
        if (!g) throw new Error(`no gradient for ${v.name}`);
        let step = g;
        if (momentum > 0) {
          let b = buffers.get(v.name);
          if (!b) buffers.set(v.name, (b = tf.variable(tf.zerosLike(v), false)));
          b.assign(tf.add(tf.mul(b, momentum), g));
          step = b;
        }
        v.assign(tf.sub(v, tf.mul(step, learningRate)));
      }
    },
    dispose: () => {
      for (const b of buffers.values()) b.dispose();
      buffers.clear();
    },
  };
}
