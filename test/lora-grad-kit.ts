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
import { fillNormal } from '../client-sdk/model/init';
import { hashString, Prng } from '../proto/prng';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

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

/** One adapter tensor's steepest coordinate: tfjs autograd's gradient there and the loss's central difference. */
export interface GradientCheck {
  readonly name: string;
  readonly index: number;
  readonly grad: number;
  readonly fd: number;
}

/**
 * For each adapter tensor whose name `pick` accepts: the coordinate with the largest gradient, and the central
 * difference (step h) of the loss there — what the finite-difference gradient tests compare.
 */
export async function steepestCentralDifferences(
  model: CausalLm,
  adapter: readonly NamedTensor[],
  lora: LoraConfig,
  batch: PackedBatch,
  pick: (name: string) => boolean,
  h = 1e-2,
): Promise<GradientCheck[]> {
  const theta = new Float32Array(adapter.reduce((a, t) => a + t.data.length, 0));
  const ranges: Array<{ name: string; start: number; end: number }> = [];
  let off = 0;
  for (const t of adapter) {
    theta.set(t.data, off);
    ranges.push({ name: t.name, start: off, end: off + t.data.length });
    off += t.data.length;
  }
  const loss = async (th: Float32Array): Promise<number> => (await loraLossAndGrad(model, adapter, lora, batch, th)).loss;
  const { grad } = await loraLossAndGrad(model, adapter, lora, batch, theta);
  const out: GradientCheck[] = [];
  for (const r of ranges.filter((x) => pick(x.name))) {
    let i = r.start;
    for (let j = r.start; j < r.end; j++) if (Math.abs(grad[j]) > Math.abs(grad[i])) i = j;
    const plus = theta.slice();
    plus[i] += h;
    const minus = theta.slice();
    minus[i] -= h;
    out.push({ name: r.name, index: i - r.start, grad: grad[i], fd: ((await loss(plus)) - (await loss(minus))) / (2 * h) });
  }
  return out;
}

/** Asserts each picked tensor's steepest gradient coordinate against the central difference, to 2% of it. */
export async function expectGradientsMatchCentralDifferences(
  model: CausalLm,
  adapter: readonly NamedTensor[],
  lora: LoraConfig,
  batch: PackedBatch,
  pick: (name: string) => boolean,
): Promise<number> {
  const checks = await steepestCentralDifferences(model, adapter, lora, batch, pick);
  for (const c of checks) {
    expect(Math.abs(c.grad), `${c.name}: a gradient to compare`).to.be.greaterThan(1e-4);
    expect(Math.abs(c.fd - c.grad), `${c.name}[${c.index}]: finite difference ${c.fd}, gradient ${c.grad}`).to.be.at.most(0.02 * Math.abs(c.grad));
  }
  return checks.length;
}

/** The adapter with every B drawn from N(0, std²) (seeded) instead of zero, so that A has a gradient too. */
export function withRandomB(adapter: readonly NamedTensor[], seed = 2, std = 0.3): NamedTensor[] {
  return adapter.map((t) =>
    t.name.includes('lora_B') ? { ...t, data: fillNormal(new Float32Array(t.data.length), new Prng(seed, hashString(t.name)), std) } : t,
  );
}
