// The model side on a tiny random GPT-2: weight I/O, LoRA semantics, SFT training and evaluation, memory
// hygiene, and agreement between the wasm and pure-JS backends.
import * as tf from '@tensorflow/tfjs-core';
import '../client-sdk/model/gradients';
import type { NamedTensor } from '../proto/tensors';
import { readSafetensors, writeSafetensors } from '../proto/safetensors';
import { selectBackend } from '../client-sdk/model/backend';
import { parseGpt2Config, toHfConfigJson, type Gpt2Config } from '../proto/model/gpt2-config';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { canonicalAdapter, initLoraAdapter, loraTargetPaths, parsePeftKey, peftAdapterConfig, type LoraConfig } from '../proto/model/lora-layout';
import { loraStateFromAdapter } from '../client-sdk/model/lora';
import { loraConfigFromPeft } from '../proto/model/peft-config';
import { Prng } from '../proto/prng';
import { evaluateAdapter } from '../client-sdk/sft/evaluate';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { completionPairs, fitToWindow, packBatch } from '../client-sdk/sft/pack';
import type { SftExample } from '../client-sdk/sft/types';
import type { TrainingPlan } from '../client-sdk/trainer';

// chai 6 is ESM-only: Node 20.19+ can require() it, but TypeScript's CommonJS output cannot `import` it.
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CFG: Gpt2Config = parseGpt2Config({
  model_type: 'gpt2',
  vocab_size: 64,
  n_positions: 32,
  n_embd: 32,
  n_layer: 2,
  n_head: 4,
  layer_norm_epsilon: 1e-5,
});
const LORA: LoraConfig = { r: 8, alpha: 16, dropout: 0.05, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
// A larger init than GPT-2's 0.02 so that the tied LM head can move logits far enough to learn in 30 steps.
const INIT_STD = 0.3;

/** Toy task: the prompt's last content token's parity picks the completion token (2 or 3). */
function toyData(n: number, seed: number): SftExample[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => {
    const p = Array.from({ length: 6 }, () => 4 + rng.nextInt(CFG.vocabSize - 4));
    return { prompt: [...p, 1], completion: [p[5] % 2 === 0 ? 2 : 3] };
  });
}

const plan = (over: Partial<TrainingPlan> = {}): TrainingPlan => ({
  round: 0,
  taskId: 't',
  localSteps: 30,
  batchSize: 8,
  learningRate: 1e-2,
  weightDecay: 0,
  maxSeqLen: 16,
  seed: 3,
  ...over,
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).to.equal(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const copyAdapter = (xs: readonly NamedTensor[]): NamedTensor[] => xs.map((t) => ({ ...t, data: new Float32Array(t.data) }));

describe('model: GPT-2 + LoRA + SFT on a tiny random model', function () {
  let model: Gpt2Model;
  let weights: NamedTensor[];
  const ids = (): tf.Tensor2D =>
    tf.tensor2d(
      [
        [5, 9, 1, 33, 2, 60, 7, 7],
        [0, 63, 12, 4, 4, 4, 18, 2],
      ],
      undefined,
      'int32',
    );

  before(async function () {
    expect(await selectBackend()).to.be.oneOf(['wasm', 'webgpu', 'tensorflow']);
    weights = randomGpt2Weights(CFG, 11, INIT_STD);
    model = Gpt2Model.fromTensors(CFG, weights);
  });

  after(function () {
    model.dispose();
  });

  it('selectBackend is idempotent and the backend it names is the one in use', async function () {
    expect(await selectBackend()).to.equal(await selectBackend());
    expect(tf.getBackend()).to.equal(await selectBackend());
  });

  it('a forced backend that cannot load throws and leaves the current one in place', async function () {
    const before = tf.getBackend();
    let err: Error | undefined;
    try {
      await selectBackend({ force: 'tensorflow' });
    } catch (e) {
      err = e as Error;
    }
    if (err === undefined) return this.skip(); // tfjs-node-gpu is installed here: nothing to test
    expect(err.message).to.match(/backend 'tensorflow' was forced but cannot be used: /);
    expect(tf.getBackend()).to.equal(before);
  });

  it('round-trips through HF safetensors and config.json', async function () {
    const bytes = writeSafetensors(await model.namedWeights());
    const file = readSafetensors(bytes);
    // HF files carry a `transformer.` prefix and may carry attention-mask buffers: both must be accepted.
    const prefixed = file.tensors.map((t) => ({ ...t, name: 'transformer.' + t.name }));
    const cfg2 = parseGpt2Config(JSON.parse(JSON.stringify(toHfConfigJson(CFG))));
    expect(cfg2).to.deep.equal(CFG);
    const again = Gpt2Model.fromTensors(cfg2, prefixed);
    const back = await again.namedWeights();
    expect(back.map((t) => t.name)).to.deep.equal(weights.map((t) => t.name));
    back.forEach((t, i) => expect(maxAbsDiff(t.data, weights[i].data), t.name).to.equal(0));
    const x = ids();
    const a = model.forward(x);
    const b = again.forward(x);
    expect(a.shape).to.deep.equal([2, 8, CFG.vocabSize]);
    expect(maxAbsDiff(await a.data(), await b.data())).to.equal(0);
    tf.dispose([x, a, b]);
    again.dispose();
  });

  it('rejects weights that do not fit the config', function () {
    const bad = weights.map((t) => (t.name === 'h.0.mlp.c_fc.weight' ? { ...t, shape: [t.shape[1], t.shape[0]] } : t));
    expect(() => Gpt2Model.fromTensors(CFG, bad)).to.throw(/h\.0\.mlp\.c_fc\.weight/);
    expect(() =>
      Gpt2Model.fromTensors(
        CFG,
        weights.filter((t) => t.name !== 'ln_f.bias'),
      ),
    ).to.throw(/missing/);
  });

  it('LoRA with B = 0 gives exactly the base logits', async function () {
    const adapter = initLoraAdapter(CFG, LORA, 1);
    const lora = loraStateFromAdapter(adapter, LORA);
    const x = ids();
    const base = model.forward(x);
    const withLora = model.forward(x, { lora: lora.state });
    expect(maxAbsDiff(await base.data(), await withLora.data())).to.equal(0);
    tf.dispose([x, base, withLora]);
    lora.dispose();
  });

  it('initialises adapters as PEFT does: names, shapes, kaiming-uniform A, zero B, sorted, seeded', function () {
    const adapter = initLoraAdapter(CFG, LORA, 1);
    expect(adapter).to.have.length(2 * 2 * 4); // 2 layers × (c_attn, attn.c_proj, c_fc, mlp.c_proj) × {A, B}
    expect(adapter.map((t) => t.name)).to.deep.equal([...adapter.map((t) => t.name)].sort());
    const a = adapter.find((t) => t.name === 'base_model.model.transformer.h.1.mlp.c_proj.lora_A.weight');
    const b = adapter.find((t) => t.name === 'base_model.model.transformer.h.1.attn.c_attn.lora_B.weight');
    expect(a?.shape).to.deep.equal([8, 128]);
    expect(b?.shape).to.deep.equal([96, 8]);
    expect(Math.max(...Array.from(a?.data ?? [], Math.abs))).to.be.at.most(1 / Math.sqrt(128));
    expect(Array.from(b?.data ?? []).every((v) => v === 0)).to.equal(true);
    expect(initLoraAdapter(CFG, LORA, 1)[0].data).to.deep.equal(adapter[0].data);
    expect(initLoraAdapter(CFG, LORA, 2)[0].data).to.not.deep.equal(adapter[0].data);
  });

  it('matches target modules as PEFT does and accepts the .default adapter-name infix', function () {
    expect(loraTargetPaths(CFG, { ...LORA, targetModules: ['c_proj'] })).to.deep.equal([
      'h.0.attn.c_proj',
      'h.0.mlp.c_proj',
      'h.1.attn.c_proj',
      'h.1.mlp.c_proj',
    ]);
    expect(loraTargetPaths(CFG, { ...LORA, targetModules: ['attn.c_proj'] })).to.deep.equal(['h.0.attn.c_proj', 'h.1.attn.c_proj']);
    expect(loraTargetPaths(CFG, { ...LORA, targetModules: '.*\\.h\\.1\\.mlp\\.c_fc' })).to.deep.equal(['h.1.mlp.c_fc']);
    expect(() => loraTargetPaths(CFG, { ...LORA, targetModules: ['wte'] })).to.throw(/matches no GPT-2 projection/);
    expect(parsePeftKey('base_model.model.transformer.h.3.mlp.c_fc.lora_B.default.weight')).to.deep.equal({ path: 'h.3.mlp.c_fc', which: 'B' });
    const adapter = initLoraAdapter(CFG, LORA, 1);
    const withInfix = adapter.map((t) => ({ ...t, name: t.name.replace('.weight', '.default.weight') }));
    expect(canonicalAdapter(withInfix).map((t) => t.name)).to.deep.equal(adapter.map((t) => t.name));
  });

  it('writes an adapter_config.json that reads back to the same LoRA config', function () {
    const cfg = peftAdapterConfig(LORA, 'fedtune-demo');
    expect(cfg).to.include({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 8, lora_alpha: 16, fan_in_fan_out: true, bias: 'none', inference_mode: true });
    expect(cfg.base_model_name_or_path).to.equal('fedtune-demo');
    expect(loraConfigFromPeft(JSON.parse(JSON.stringify(cfg)))).to.deep.equal({ ...LORA, useRslora: false });
  });

  it('truncates the prompt from the left so the completion survives', function () {
    const w = fitToWindow({ prompt: [1, 2, 3, 4, 5, 6], completion: [7, 8, 9] }, 5);
    expect(w).to.deep.equal({ tokens: [5, 6, 7, 8, 9], lossStart: 2 });
    expect(completionPairs(w)).to.deep.equal([
      { pos: 1, target: 7 },
      { pos: 2, target: 8 },
      { pos: 3, target: 9 },
    ]);
    // A completion longer than the window keeps one prompt token and is cut on the right.
    expect(fitToWindow({ prompt: [1, 2], completion: [3, 4, 5, 6, 7] }, 4)).to.deep.equal({ tokens: [2, 3, 4, 5], lossStart: 1 });
    const packed = packBatch([{ tokens: w.tokens, pairs: completionPairs(w) }], 32);
    expect(packed.seq).to.equal(8); // padded to a multiple of 8, not to the window
  });

  it('LoRA gradients agree with finite differences of the loss', async function () {
    const adapter = initLoraAdapter(CFG, LORA, 5).map((t) => {
      if (!t.name.includes('lora_B')) return t;
      const rng = new Prng(9);
      return { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.2) };
    });
    const data = toyData(4, 1);
    const reqs = data.map((ex) => {
      const w = fitToWindow(ex, 16);
      return { tokens: w.tokens, pairs: completionPairs(w) };
    });
    const packed = packBatch(reqs, 16);
    const lossAt = async (ad: NamedTensor[]): Promise<number> => {
      const l = loraStateFromAdapter(ad, { ...LORA, dropout: 0 });
      const t = tf.tidy(() => tf.neg(tf.mean(pairLogProbs(model, packed, { lora: l.state }, true))));
      const v = (await t.data())[0];
      tf.dispose(t);
      l.dispose();
      return v;
    };
    const l = loraStateFromAdapter(adapter, { ...LORA, dropout: 0 });
    const vars = [...l.state.modules.values()].flatMap((m) => [m.a, m.b]);
    const names = [...l.state.modules.keys()].flatMap((p) => [p + '.A', p + '.B']);
    const grads = tf.tidy(() =>
      tf.grads((...xs: tf.Tensor[]) => {
        const modules = new Map([...l.state.modules.keys()].map((p, i) => [p, { a: xs[2 * i] as tf.Tensor2D, b: xs[2 * i + 1] as tf.Tensor2D }]));
        return tf.neg(tf.mean(pairLogProbs(model, packed, { lora: { ...l.state, modules } }, true))) as tf.Scalar;
      })(vars),
    );
    // Directional derivative along a random direction, against a central difference.
    const rng = new Prng(4);
    const dir = adapter.map((t) => Float32Array.from(t.data, () => rng.nextFloat() - 0.5));
    const byName = new Map(canonicalAdapter(adapter).map((t, i) => [t.name, i]));
    let analytic = 0;
    for (let k = 0; k < grads.length; k++) {
      const [path, which] = [names[k].slice(0, -2), names[k].slice(-1) as 'A' | 'B'];
      const idx = byName.get(`base_model.model.transformer.${path}.lora_${which}.weight`) as number;
      const gd = await grads[k].data();
      for (let i = 0; i < gd.length; i++) analytic += gd[i] * dir[idx][i];
    }
    const eps = 1e-2;
    const shifted = (s: number): NamedTensor[] => adapter.map((t, i) => ({ ...t, data: Float32Array.from(t.data, (v, j) => v + s * eps * dir[i][j]) }));
    const numeric = ((await lossAt(shifted(1))) - (await lossAt(shifted(-1)))) / (2 * eps);
    tf.dispose(grads);
    l.dispose();
    expect(Math.abs(analytic)).to.be.greaterThan(1e-3);
    expect(Math.abs(numeric - analytic) / Math.abs(analytic)).to.be.lessThan(2e-2);
  });

  it('training lowers the completion loss, returns PEFT-named LoRA tensors and leaves the input alone', async function () {
    const train = toyData(64, 5);
    const ev = toyData(32, 6);
    const trainer = new LoraSftTrainer({ model, lora: LORA, train, eval: ev, choices: [[2], [3]] });
    const global = initLoraAdapter(CFG, LORA, 7);
    const snapshot = copyAdapter(global);
    const before = await trainer.evaluate(global);
    const out = await trainer.train(global, plan());
    const after = await trainer.evaluate(out.adapter);
    expect(before.eval_tokens).to.equal(32);
    expect(after.eval_loss).to.be.lessThan(0.5 * before.eval_loss);
    // Accuracy recomputed without evaluate.ts: the forward pass's last-position logits, choice 2 against 3.
    const accuracyOf = async (adapter: readonly NamedTensor[]): Promise<number> => {
      const lora = loraStateFromAdapter(adapter, LORA);
      let right = 0;
      for (const ex of ev) {
        const logits = model.forward(tf.tensor2d([[...ex.prompt]], undefined, 'int32'), { lora: lora.state });
        const last = (await logits.data()).slice((ex.prompt.length - 1) * CFG.vocabSize, ex.prompt.length * CFG.vocabSize);
        logits.dispose();
        if ((last[2] > last[3] ? 2 : 3) === ex.completion[0]) right++;
      }
      lora.dispose();
      return right / ev.length;
    };
    expect(before.eval_accuracy).to.equal(await accuracyOf(global));
    expect(after.eval_accuracy).to.equal(await accuracyOf(out.adapter));
    expect(out.metrics.train_loss).to.be.a('number').and.lessThan(before.eval_loss);
    expect(out.metrics.train_tokens).to.equal(30 * 8);
    expect(out.numExamples).to.equal(64); // 240 draws over 64 examples: every example seen
    expect(out.adapter.map((t) => t.name)).to.deep.equal(global.map((t) => t.name));
    expect(out.adapter.map((t) => t.shape)).to.deep.equal(global.map((t) => t.shape));
    expect(out.adapter.every((t) => parsePeftKey(t.name) !== undefined && t.name.startsWith('base_model.model.transformer.h.'))).to.equal(true);
    global.forEach((t, i) => expect(t.data).to.deep.equal(snapshot[i].data, `${t.name} was modified`));
    expect(out.adapter.some((t, i) => maxAbsDiff(t.data, global[i].data) > 0)).to.equal(true);
  });

  it("keeps the caller's key spelling (PEFT .default infix) in the trained adapter", async function () {
    const trainer = new LoraSftTrainer({ model, lora: LORA, train: toyData(8, 5) });
    const global = initLoraAdapter(CFG, LORA, 7).map((t) => ({ ...t, name: t.name.replace('.weight', '.default.weight') }));
    const out = await trainer.train(global, plan({ localSteps: 1 }));
    expect(out.adapter.map((t) => t.name)).to.deep.equal(global.map((t) => t.name));
  });

  it('scores multi-token choices by their summed log-probabilities and reports token-mean eval_loss', async function () {
    const prompt = [9, 17, 33, 1];
    const choices = [
      [2, 3],
      [3, 2],
      [5, 6, 7],
    ];
    // Reference scores from full logits.
    const logp = async (c: number[]): Promise<number> => {
      const x = tf.tensor2d([[...prompt, ...c]], undefined, 'int32');
      const l = tf.logSoftmax(model.forward(x));
      const v = await l.data();
      tf.dispose([x, l]);
      let s = 0;
      c.forEach((tok, i) => (s += v[(prompt.length - 1 + i) * CFG.vocabSize + tok]));
      return s;
    };
    const scores = await Promise.all(choices.map(logp));
    const best = scores.indexOf(Math.max(...scores));
    const worst = scores.indexOf(Math.min(...scores));
    const right = await evaluateAdapter(model, null, [{ prompt, completion: choices[best] }], choices, 2);
    const wrong = await evaluateAdapter(model, null, [{ prompt, completion: choices[worst] }], choices, 2);
    expect(right.eval_accuracy).to.equal(1);
    expect(wrong.eval_accuracy).to.equal(0);
    expect(right.eval_tokens).to.equal(choices[best].length);
    expect(right.eval_loss).to.be.closeTo(-scores[best] / choices[best].length, 1e-4);
  });

  it('is reproducible from the plan seed (shuffling and dropout)', async function () {
    const trainer = new LoraSftTrainer({ model, lora: LORA, train: toyData(32, 5) });
    const global = initLoraAdapter(CFG, LORA, 7);
    const a = await trainer.train(global, plan({ localSteps: 3 }));
    const b = await trainer.train(global, plan({ localSteps: 3 }));
    const c = await trainer.train(global, plan({ localSteps: 3, seed: 4 }));
    a.adapter.forEach((t, i) => expect(maxAbsDiff(t.data, b.adapter[i].data)).to.equal(0));
    expect(a.adapter.some((t, i) => maxAbsDiff(t.data, c.adapter[i].data) > 0)).to.equal(true);
  });

  it('leaks no tensors across training rounds and evaluations', async function () {
    const trainer = new LoraSftTrainer({ model, lora: LORA, train: toyData(16, 5), eval: toyData(8, 6), choices: [[2], [3]] });
    const global = initLoraAdapter(CFG, LORA, 7);
    await trainer.train(global, plan({ localSteps: 2, weightDecay: 0.1 })); // warm-up: backend-internal caches
    const start = tf.memory().numTensors;
    for (let round = 0; round < 2; round++) {
      const out = await trainer.train(global, plan({ localSteps: 3, round, weightDecay: 0.1 }));
      await trainer.evaluate(out.adapter);
    }
    await evaluateAdapter(model, null, toyData(5, 7), [[2, 3], [3]], 2);
    expect(tf.memory().numTensors).to.equal(start);
  });

  it('stops between steps when aborted and still frees its tensors', async function () {
    const trainer = new LoraSftTrainer({ model, lora: LORA, train: toyData(16, 5) });
    const start = tf.memory().numTensors;
    const ctl = new AbortController();
    setTimeout(() => ctl.abort(new Error('round cancelled')), 50);
    const signalled = trainer.train(initLoraAdapter(CFG, LORA, 7), plan({ localSteps: 1000 }), ctl.signal);
    let err: Error | undefined;
    try {
      await signalled;
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).to.equal('round cancelled');
    expect(tf.memory().numTensors).to.equal(start);
  });

  it('wasm and cpu agree on one training step to 1e-4', async function () {
    const original = await selectBackend();
    // A model of its own, created on wasm: moving tensors off a GPU backend needs a synchronous read, which
    // webgpu cannot do in Node.
    await selectBackend({ force: 'wasm' });
    const local = Gpt2Model.fromTensors(CFG, weights);
    const trainer = new LoraSftTrainer({ model: local, lora: LORA, train: toyData(8, 5) });
    const global = initLoraAdapter(CFG, LORA, 7).map((t) => {
      const rng = new Prng(3);
      return t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.1) } : t;
    });
    const p = plan({ localSteps: 1, learningRate: 1e-3, weightDecay: 0.01 });
    try {
      const onWasm = await trainer.train(global, p);
      await selectBackend({ force: 'cpu' });
      const onCpu = await trainer.train(global, p);
      expect(Math.abs((onWasm.metrics.train_loss ?? NaN) - (onCpu.metrics.train_loss ?? NaN))).to.be.at.most(1e-4);
      onWasm.adapter.forEach((t, i) => expect(maxAbsDiff(t.data, onCpu.adapter[i].data), t.name).to.be.at.most(1e-4));
    } finally {
      local.dispose();
      await selectBackend({ force: original });
    }
  });
});
