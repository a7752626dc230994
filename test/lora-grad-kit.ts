// The loss a site trains on (the negative mean log-probability of the scored pairs) and its gradient with respect
// to every LoRA A and B, flat in the adapter's tensor order: what the gradient tests compare with finite
// differences or with torch's autograd.
import * as tf from '@tensorflow/tfjs-core';
import '../client-sdk/model/gradients';
import type { CausalLm } from '../client-sdk/model/load';
import { FlatAdapter } from '../client-sdk/sft/flat-adapter';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import type { PackedBatch } from '../client-sdk/sft/pack';
import { loraScaling, type LoraConfig } from '../proto/model/lora-layout';
import type { NamedTensor } from '../proto/tensors';

/** `theta` (optional) replaces the adapter's values, flat in its tensor order. */
export async function loraLossAndGrad(
  model: CausalLm,
  adapter: readonly NamedTensor[],
  lora: LoraConfig,
  batch: PackedBatch,
  theta?: Float32Array,
): Promise<{ loss: number; grad: Float32Array }> {
  const params = new FlatAdapter(adapter);
  if (theta) params.theta.assign(tf.tensor1d(theta));
  try {
    const { value, grads } = tf.variableGrads(() => {
      const state = { modules: params.modules(), scaling: loraScaling(lora), dropout: 0 };
      return tf.neg(tf.mean(pairLogProbs(model, batch, { lora: state }, true))) as tf.Scalar;
    }, [params.theta]);
    const loss = (await value.data())[0];
    const grad = ((await grads[params.theta.name].data()) as Float32Array).slice();
    value.dispose();
    Object.values(grads).forEach((g) => g.dispose());
    return { loss, grad };
  } finally {
    params.dispose();
  }
}
