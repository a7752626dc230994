// FedProx on the site (client-sdk/sft/proximal.ts, lora-trainer.ts): the gradient added to the loss gradient is
// that of μ/2·‖w − w_global‖² (central finite differences of the term in float64, and a hand value); the tfjs
// trainer applies it (one step from the global adapter is unchanged, since the term's gradient is 0 there; several
// steps with a large μ end nearer the global adapter); the WebGPU engine's program gains exactly the term's line.
import * as tf from '@tensorflow/tfjs-core';
import '../client-sdk/model/gradients';
import { selectBackend } from '../client-sdk/model/backend';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { proximalMu, proximalTerm, withProximalGradient } from '../client-sdk/sft/proximal';
import type { SftExample } from '../client-sdk/sft/types';
import type { TrainingPlan } from '../client-sdk/trainer';
import { buildProgram } from '../client-sdk/engine/program';
import { modelLayout } from '../client-sdk/engine/layout';
import { STEP } from '../client-sdk/engine/loss';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import type { NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CFG = parseGpt2Config({ model_type: 'gpt2', vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4, layer_norm_epsilon: 1e-5 });
const LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_fc'] };

function toyData(n: number, seed: number): SftExample[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => {
    const p = Array.from({ length: 6 }, () => 4 + rng.nextInt(CFG.vocabSize - 4));
    return { prompt: [...p, 1], completion: [p[5] % 2 === 0 ? 2 : 3] };
  });
}
const plan = (over: Partial<TrainingPlan>): TrainingPlan => ({
  round: 1,
  taskId: 't',
  localSteps: 1,
  batchSize: 4,
  learningRate: 0.05,
  weightDecay: 0,
  maxSeqLen: 16,
  seed: 3,
  ...over,
});
const bits = (xs: readonly NamedTensor[]): string[] => xs.map((x) => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength).toString('hex'));
const distance = (a: readonly NamedTensor[], b: readonly NamedTensor[]): number =>
  Math.sqrt(a.reduce((s, t, k) => s + t.data.reduce((u, x, i) => u + (x - b[k].data[i]) ** 2, 0), 0));

describe('FedProx (client-sdk/sft/proximal.ts)', function () {
  this.timeout(60_000);
  before(async () => {
    await selectBackend();
  });

  it("adds the proximal term's gradient: central finite differences of μ/2·‖w − w0‖² in float64, and a hand value", async () => {
    const rng = new Prng(9);
    const w = Array.from({ length: 6 }, () => Math.fround(rng.nextFloat() - 0.5));
    const w0 = Array.from({ length: 6 }, () => Math.fround(rng.nextFloat() - 0.5));
    const g = Array.from({ length: 6 }, () => Math.fround(rng.nextFloat()));
    const mu = 0.7;
    const term = (x: number[]): number => (mu / 2) * x.reduce((s, xi, i) => s + (xi - w0[i]) ** 2, 0);
    const h = 1e-4;
    const fd = w.map((_, i) => {
      const up = [...w];
      const down = [...w];
      up[i] += h;
      down[i] -= h;
      return (term(up) - term(down)) / (2 * h);
    });
    const got = tf.tidy(() => withProximalGradient(tf.tensor1d(g), tf.tensor1d(w), tf.tensor1d(w0), mu).arraySync());
    got.forEach((x, i) => expect(x - g[i], `value ${i}`).to.be.closeTo(fd[i], 1e-6));

    // By hand: μ = 2, w − w0 = [0.5, −0.25] → gradient + [1, −0.5]; the term is 2/2·(0.25 + 0.0625) = 0.3125.
    const [wt, at, gt] = [tf.tensor1d([1.5, 0]), tf.tensor1d([1, 0.25]), tf.tensor1d([0.125, 0.125])];
    expect(withProximalGradient(gt, wt, at, 2).arraySync()).to.deep.equal([1.125, -0.375]);
    expect(proximalTerm(wt, at, 2).arraySync()).to.equal(0.3125);
    // μ = 0 (or no anchor) leaves the gradient itself.
    expect(withProximalGradient(gt, wt, at, 0)).to.equal(gt);
    tf.dispose([wt, at, gt]);
  });

  it('refuses a negative or non-finite μ; an absent μ is 0', () => {
    expect(proximalMu(undefined)).to.equal(0);
    expect(proximalMu(0.5)).to.equal(0.5);
    for (const bad of [-0.1, NaN, Infinity]) expect(() => proximalMu(bad)).to.throw(/bad proximalMu/);
  });

  it('the tfjs trainer: one step from the global adapter is unchanged by μ; six steps with a large μ end nearer it', async () => {
    const model = Gpt2Model.fromTensors(CFG, randomGpt2Weights(CFG, 11, 0.3));
    try {
      const trainer = new LoraSftTrainer({ model, lora: LORA, train: toyData(16, 5) });
      // B nonzero, so that the adapter moves in every tensor from the first step.
      const global = initLoraAdapter(CFG, LORA, 7).map((t) => ({ ...t, data: t.data.map((x, i) => (x === 0 ? 0.01 * ((i % 5) - 2) : x)) }));
      const one = await Promise.all([undefined, 0, 5].map((mu) => trainer.train(global, plan({ proximalMu: mu }))));
      expect(bits(one[1].adapter)).to.deep.equal(bits(one[0].adapter));
      expect(bits(one[2].adapter)).to.deep.equal(bits(one[0].adapter));

      const free = await trainer.train(global, plan({ localSteps: 6 }));
      const held = await trainer.train(global, plan({ localSteps: 6, proximalMu: 50 }));
      const dFree = distance(free.adapter, global);
      const dHeld = distance(held.adapter, global);
      expect(dHeld).to.be.greaterThan(0);
      expect(dHeld).to.be.lessThan(0.8 * dFree);
      let bad: Error | undefined;
      await trainer.train(global, plan({ proximalMu: -1 })).catch((e: Error) => (bad = e));
      expect(bad?.message).to.equal('bad proximalMu -1: must be a finite number ≥ 0');
    } finally {
      model.dispose();
    }
  });

  it('the WebGPU engine: only its update kernel changes with FedProx (an anchor and one line); without it nothing does', () => {
    // The numbers need a GPU: `npm run test:gpu` compares the engine's FedProx run with the tfjs trainer's.
    const adapter = initLoraAdapter(CFG, LORA, 7);
    const layout = modelLayout(CFG, adapter, 2 * 16);
    const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    for (const path of ['f32', 'f16', 'tc'] as const) {
      const plain = buildProgram({ config: CFG, layout, batch: 2, seq: 16, path, loraScale: 2, adam });
      const prox = buildProgram({ config: CFG, layout, batch: 2, seq: 16, path, loraScale: 2, adam, proximal: true });
      expect(prox.kernels.map((k) => k.label)).to.deep.equal(plain.kernels.map((k) => k.label));
      prox.kernels.forEach((k, i) => {
        if (k.label !== 'adamw') expect(k.code, `${path} ${k.label}`).to.equal(plain.kernels[i].code);
      });
      const [a, b] = [plain, prox].map((p) => p.kernels.find((k) => k.label === 'adamw')!);
      expect(a.code).to.not.contain('anchor');
      expect(b.bindings.map((x) => x.buffer)).to.deep.equal([...a.bindings.map((x) => x.buffer), 'anchor']);
      // The one added line reads μ from the step word STEP.mu and sits before the moments are updated.
      const added = b.code.split('\n').filter((l) => !a.code.split('\n').includes(l));
      expect(added.map((l) => l.trim())).to.deep.equal([
        '@group(0) @binding(5) var<storage, read> anchor: array<f32>;',
        `g = g + (theta[i] - anchor[i]) * bitcast<f32>(step[${STEP.mu}]);`,
      ]);
      expect(b.code.indexOf('anchor[i]')).to.be.lessThan(b.code.indexOf('let m ='));
      expect(plain.buffers.has('anchor')).to.equal(false);
      expect(prox.buffers.get('anchor')).to.deep.equal({ elems: layout.adapterSize, type: 'f32' });
    }
  });
});
