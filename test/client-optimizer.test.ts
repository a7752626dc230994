// The client optimiser in the task plan (training.optimizer: proto/model/client-optimizer.ts): SGD and SGD with
// momentum against hand-computed values for two steps (sft/local-optimizer.ts), the tfjs trainer's two SGD steps
// against the same rule applied to gradients taken independently, the WebGPU engine's update kernel (only it
// changes), the site's refusal of an optimiser it does not know, and a federation over real gRPC whose sites
// receive SGD in their plans and whose manifests record it.
import * as tf from '@tensorflow/tfjs-core';
import '../client-sdk/model/gradients';
import { selectBackend } from '../client-sdk/model/backend';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { ExampleStream, LoraSftTrainer, STREAM_SHUFFLE } from '../client-sdk/sft/lora-trainer';
import { createLocalOptimizer } from '../client-sdk/sft/local-optimizer';
import { FlatAdapter } from '../client-sdk/sft/flat-adapter';
import { withProximalGradient } from '../client-sdk/sft/proximal';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { completionPairs, fitToWindow, packBatch } from '../client-sdk/sft/pack';
import type { SftExample } from '../client-sdk/sft/types';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FederationClient } from '../client-sdk/client';
import { buildProgram, type Program } from '../client-sdk/engine/program';
import { buildLlamaProgram } from '../client-sdk/engine/program-llama';
import { llamaLayout } from '../client-sdk/engine/layout-llama';
import { parseLlamaConfig } from '../proto/model/llama-config';
import { modelLayout } from '../client-sdk/engine/layout';
import { clientOptimizerOf, type ClientOptimizer } from '../proto/model/client-optimizer';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter, loraScaling, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import type { TensorList } from '../proto/tensors';
import { startCoordinator, tempDir, testIdentity } from './harness';
import { startHostileCoordinator } from './hostile-coordinator';
import { promises as fs } from 'node:fs';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CFG = parseGpt2Config({ model_type: 'gpt2', vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4, layer_norm_epsilon: 1e-5 });
const LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_fc'] };
const LLAMA = parseLlamaConfig({
  model_type: 'llama',
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 32,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: true,
});

function toyData(n: number, seed: number): SftExample[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => {
    const p = Array.from({ length: 6 }, () => 4 + rng.nextInt(CFG.vocabSize - 4));
    return { prompt: [...p, 1], completion: [p[5] % 2 === 0 ? 2 : 3] };
  });
}

/** Two updates of w from w0 = [1, −2] with loss ½‖w‖² (gradient w, taken before any decay), read back. */
function twoSteps(opt: ClientOptimizer | undefined, lr: number, weightDecay = 0): number[][] {
  const w = tf.variable(tf.tensor1d([1, -2]), true, 'w');
  const o = createLocalOptimizer(opt, lr, weightDecay);
  const out: number[][] = [];
  try {
    for (let s = 0; s < 2; s++) {
      tf.tidy(() => o.apply([w], [{ name: w.name, tensor: tf.clone(w) }]));
      out.push(Array.from(w.dataSync()));
    }
  } finally {
    o.dispose();
    w.dispose();
  }
  return out;
}

describe('client optimiser (training.optimizer)', function () {
  this.timeout(120_000);
  before(async () => {
    await selectBackend();
  });

  it('SGD, SGD with momentum and decoupled decay give the hand-computed values over two steps', () => {
    // lr 0.25: w1 = w0 − 0.25·w0 = [0.75, −1.5]; w2 = w1 − 0.25·w1 = [0.5625, −1.125].
    expect(twoSteps({ name: 'sgd', momentum: 0 }, 0.25)).to.deep.equal([
      [0.75, -1.5],
      [0.5625, -1.125],
    ]);
    // Momentum 0.5: b1 = g1 = [1, −2], w1 = [0.75, −1.5]; b2 = 0.5·b1 + w1 = [1.25, −2.5], w2 = w1 − 0.25·b2.
    expect(twoSteps({ name: 'sgd', momentum: 0.5 }, 0.25)).to.deep.equal([
      [0.75, -1.5],
      [0.4375, -0.875],
    ]);
    // Weight decay 2 at lr 0.25 shrinks by 1 − 0.5 first: w1 = 0.5·w0 − 0.25·w0 = [0.25, −0.5]; then again ·0.25.
    expect(twoSteps({ name: 'sgd', momentum: 0 }, 0.25, 2)).to.deep.equal([
      [0.25, -0.5],
      [0.0625, -0.125],
    ]);
    // AdamW (the default, absent or named) moves each coordinate by about lr·sign(g) on its first step.
    const adam = twoSteps(undefined, 0.25);
    expect(twoSteps({ name: 'adamw' }, 0.25)).to.deep.equal(adam);
    expect(adam[0][0]).to.be.closeTo(0.75, 1e-5);
    expect(adam[0][1]).to.be.closeTo(-1.75, 1e-5);
  });

  it('a site reads the plan: empty is AdamW, sgd carries its momentum, anything else is refused by name', () => {
    expect(clientOptimizerOf('', 0)).to.deep.equal({ name: 'adamw' });
    expect(clientOptimizerOf(undefined, undefined)).to.deep.equal({ name: 'adamw' });
    expect(clientOptimizerOf('sgd', 0.9)).to.deep.equal({ name: 'sgd', momentum: 0.9 });
    expect(() => clientOptimizerOf('lion', 0)).to.throw('the coordinator asks for client optimizer "lion", which this site does not know (known: adamw, sgd)');
    expect(() => clientOptimizerOf('sgd', 1)).to.throw('bad SGD momentum 1: must be a number in [0, 1)');
    expect(() => clientOptimizerOf('sgd', NaN)).to.throw('bad SGD momentum NaN');
    expect(() => clientOptimizerOf('adamw', 0.9)).to.throw("momentum 0.9 is for the 'sgd' optimiser; AdamW takes none");
  });

  it('the tfjs trainer: two SGD-with-momentum steps under FedProx equal the rule applied to gradients taken independently, bit for bit', async () => {
    const model = Gpt2Model.fromTensors(CFG, randomGpt2Weights(CFG, 11, 0.3));
    const train = toyData(12, 5);
    const global = initLoraAdapter(CFG, LORA, 7).map((t) => ({ ...t, data: t.data.map((x, i) => (x === 0 ? 0.01 * ((i % 5) - 2) : x)) }));
    const lr = 0.05;
    const momentum = 0.9;
    const mu = 2;
    const plan: TrainingPlan = { round: 1, taskId: 't', localSteps: 2, batchSize: 4, learningRate: lr, weightDecay: 0, maxSeqLen: 16, seed: 3 };
    try {
      const got = await new LoraSftTrainer({ model, lora: LORA, train }).train(global, { ...plan, optimizer: { name: 'sgd', momentum }, proximalMu: mu });
      // The reference: the trainer's batches (same seeded stream), each gradient from tf.variableGrads.
      const stream = new ExampleStream(train.length, new Prng(plan.seed, STREAM_SHUFFLE));
      const windows = train.map((ex) => fitToWindow(ex, 16));
      const flat = new FlatAdapter(global);
      const anchor = flat.theta.clone();
      const grad = (): tf.Tensor1D => {
        const picks = Array.from({ length: plan.batchSize }, () => stream.next());
        const packed = packBatch(
          picks.map((i) => ({ tokens: windows[i].tokens, pairs: completionPairs(windows[i]) })),
          16,
        );
        return tf.tidy(() => {
          const { grads } = tf.variableGrads(() => {
            const lora = { modules: flat.modules(), scaling: loraScaling(LORA), dropout: 0 };
            return tf.neg(tf.mean(pairLogProbs(model, packed, { lora }, true))) as tf.Scalar;
          }, [flat.theta]);
          return tf.keep(grads[flat.theta.name] as tf.Tensor1D);
        });
      };
      const g1 = grad();
      flat.theta.assign(tf.sub(flat.theta, tf.mul(g1, lr)));
      // FedProx's gradient at θ1: g2 + μ·(θ1 − θ0) (at θ0 it is 0, so g1 is the loss gradient alone).
      const g2 = withProximalGradient(grad(), flat.theta, anchor, mu);
      const b2 = tf.add(tf.mul(g1, momentum), g2);
      flat.theta.assign(tf.sub(flat.theta, tf.mul(b2, lr)));
      const want = await flat.read();
      expect(got.adapter.map((t) => t.name)).to.deep.equal(want.map((t) => t.name));
      got.adapter.forEach((t, k) => expect(Buffer.compare(Buffer.from(t.data.buffer), Buffer.from(want[k].data.buffer)), t.name).to.equal(0));
      // Without μ, plain SGD and AdamW (absent) each end elsewhere.
      const plainSgd = await new LoraSftTrainer({ model, lora: LORA, train }).train(global, { ...plan, optimizer: { name: 'sgd', momentum: 0 } });
      const adamw = await new LoraSftTrainer({ model, lora: LORA, train }).train(global, plan);
      expect(plainSgd.adapter.some((t, k) => t.data.some((x, i) => x !== got.adapter[k].data[i]))).to.equal(true);
      expect(adamw.adapter.some((t, k) => t.data.some((x, i) => x !== plainSgd.adapter[k].data[i]))).to.equal(true);
      tf.dispose([g1, g2, b2, anchor]);
      flat.dispose();
    } finally {
      model.dispose();
    }
  });

  it('the WebGPU engine, GPT-2 and Llama programs: SGD replaces only the update kernel; AdamW programs are unchanged', () => {
    // The numbers need a GPU: `npm run test:gpu` compares the engine's SGD kernel and run with tfjs.
    const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    const gpt2 = { config: CFG, layout: modelLayout(CFG, initLoraAdapter(CFG, LORA, 7), 2 * 16), batch: 2, seq: 16, path: 'f32' as const, loraScale: 2, adam };
    const llama = {
      ...gpt2,
      config: LLAMA,
      layout: llamaLayout(LLAMA, initLoraAdapter(LLAMA, { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj', 'down_proj'] }, 7), 2 * 16),
    };
    const families: [string, (x: { optimizer?: ClientOptimizer; clip?: boolean; proximal?: boolean }) => Program][] = [
      ['gpt2', (x) => buildProgram({ ...gpt2, ...x })],
      ['llama', (x) => buildLlamaProgram({ ...llama, ...x })],
    ];
    for (const [family, build] of families) {
      const plain = build({});
      expect(
        build({ optimizer: { name: 'adamw' } }).kernels.map((k) => k.code),
        family,
      ).to.deep.equal(plain.kernels.map((k) => k.code));
      for (const momentum of [0, 0.9]) {
        const s = build({ optimizer: { name: 'sgd', momentum }, clip: false, proximal: true });
        const p = build({ proximal: true });
        expect(
          s.kernels.map((k) => k.label),
          family,
        ).to.deep.equal(p.kernels.map((k) => k.label.replace('adamw', 'sgd')));
        s.kernels.forEach((k, i) => {
          if (k.label !== 'sgd') expect(k.code, `${family} ${k.label}`).to.equal(p.kernels[i].code);
        });
        const k = s.kernels.find((x) => x.label === 'sgd')!;
        expect(k.bindings.map((b) => b.buffer)).to.deep.equal(['step', 'grad', 'theta', ...(momentum > 0 ? ['adamM'] : []), 'anchor']);
        expect(k.code).to.not.contain('adamV');
        expect(k.code).to.contain(momentum > 0 ? 'theta[i] = th - lr * b;' : 'theta[i] = th - lr * g;');
        // FedProx's term is added before the update, as under AdamW.
        expect(k.code.indexOf('anchor[i]')).to.be.lessThan(k.code.indexOf('let th ='));
      }
    }
  });

  it('over real gRPC: sites get SGD and its momentum in the plan, manifests record it; a site told an unknown name refuses', async () => {
    const dir = await tempDir('clientopt');
    const h = await startCoordinator(
      dir,
      { total: 2, minClients: 3, minUpdates: 2, clientsPerRound: 3, deadlineMs: 2500, maxAttempts: 1 },
      { training: { optimizer: 'sgd', momentum: 0.9, learningRate: 0.01 } },
    );
    // site-2 sees its plan's optimiser renamed; the others see what the coordinator sent.
    const hostile = await startHostileCoordinator(h.address, (site, ev) =>
      site === 'site-2' && ev.train ? { ...ev, train: { ...ev.train, config: { ...ev.train.config!, optimizer: 'lion' } } } : ev,
    );
    const trainers = [0, 1, 2].map((i) => new PlanTrainer(0.01 * (i + 1)));
    const failed: string[] = [];
    const sites = trainers.map((trainer, i) => {
      const c = new FederationClient({ address: hostile.address, name: `site-${i}`, identity: testIdentity(`site-${i}`), trainer });
      c.on('taskFailed', (e: { error: string }) => failed.push(e.error));
      return c;
    });
    const runs = sites.map((c) => c.run().catch(() => undefined));
    try {
      const final = await h.coordinator.done;
      expect(final.manifest.version).to.equal(2);
      for (let v = 1; v <= 2; v++) {
        const m = (await h.coordinator.store.read(v)).manifest;
        expect(m.clientTraining).to.deep.equal({ learningRate: 0.01, proximalMu: 0, loraDropout: 0.05, optimizer: 'sgd', momentum: 0.9 });
        expect((m.config.training as Record<string, unknown>).optimizer).to.equal('sgd');
        expect(m.participants.map((p) => p.clientId).sort()).to.have.length(2);
      }
      expect(trainers[0].optimizers).to.deep.equal([
        { name: 'sgd', momentum: 0.9 },
        { name: 'sgd', momentum: 0.9 },
      ]);
      expect(trainers[2].optimizers).to.deep.equal([]);
      expect(failed).to.include('the coordinator asks for client optimizer "lion", which this site does not know (known: adamw, sgd)');
    } finally {
      await Promise.all(sites.map((c) => c.stop().catch(() => undefined)));
      await Promise.all(runs);
      await hostile.stop();
      await h.coordinator.stop(200).catch(() => undefined);
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

/** Records each plan's optimiser and moves every value by a constant. */
class PlanTrainer implements Trainer {
  readonly backend = 'test';
  readonly optimizers: (ClientOptimizer | undefined)[] = [];
  constructor(private readonly value: number) {}
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    this.optimizers.push(plan.optimizer);
    return { adapter: global.map((t) => ({ ...t, data: t.data.map((x) => x + this.value) })), numExamples: 10, metrics: {} };
  }
}
