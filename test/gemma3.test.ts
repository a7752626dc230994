// Gemma 3 on tfjs, on a tiny model built here (test/tiny-gemma3.ts; parity with transformers + peft is in
// test/llama-parity.test.ts): local layers attend within their window and rotate with their own base, global layers
// do neither; every norm is read, as w (namedWeights gives back w, not 1 + w); a missing Gemma norm is named and a
// Qwen3-typed config refuses them; LoRA gradients match finite differences through local and global layers; the
// WebGPU engine serves Gemma 3 (its layer against tfjs and torch: test/gpu-engine-llama.ts; its program:
// test/engine-gemma3.test.ts), so FEDTUNE_ENGINE=auto trains it there wherever a GPU adapter exists.
// A real round on a Gemma 3 directory through the site CLI is in test/own-data-site.test.ts.
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../client-sdk/model/backend';
import { LlamaModel } from '../client-sdk/model/llama';
import { packBatch } from '../client-sdk/sft/pack';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { parseLlamaConfig } from '../proto/model/llama-config';
import type { NamedTensor } from '../proto/tensors';
import { expectGradientsMatchCentralDifferences, withRandomB } from './lora-grad-kit';
import { expectEngineServes } from './engine-serves';
import { tinyGemma3Config, tinyGemma3Weights, TINY_GEMMA3_JSON } from './tiny-gemma3';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ALL7: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
const T = 8;
const IDS = [
  [5, 77, 301, 12, 9, 250, 3, 44],
  [399, 0, 18, 18, 120, 7, 66, 2],
];

/** Largest |a - b| over the positions in [from, to) of every row, logits [B, T, V]. */
function diffAt(a: Float32Array, b: Float32Array, from: number, to: number): number {
  const v = a.length / (IDS.length * T);
  let m = 0;
  for (let r = 0; r < IDS.length; r++) for (let i = (r * T + from) * v; i < (r * T + to) * v; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function logits(cfg: ReturnType<typeof tinyGemma3Config>, weights: NamedTensor[]): Promise<Float32Array> {
  const model = LlamaModel.fromTensors(cfg, weights);
  const x = tf.tensor2d(IDS, undefined, 'int32');
  const out = model.forward(x);
  const v = (await out.data()) as Float32Array;
  [x, out].forEach((t) => t.dispose());
  model.dispose();
  return v;
}

const layers = (...kinds: Array<'s' | 'g'>): string[] => kinds.map((k) => (k === 's' ? 'sliding_attention' : 'full_attention'));

describe('Gemma 3 on tfjs: local and global layers, (1 + w) norms, loading, gradients; served by the engine', function () {
  this.timeout(120_000);
  let original: string;
  before(async function () {
    original = await selectBackend();
  });

  it('local layers attend within sliding_window and rotate with rope_local_base_freq; global layers do neither', async function () {
    const cfg = tinyGemma3Config();
    expect(cfg.gemma3?.slidingLayers).to.deep.equal([true, false, true]);
    const w = tinyGemma3Weights(cfg, 5, 0.2);
    const windowed = await logits(cfg, w);
    // A window of 4 hides nothing from the first 4 positions, and something from every later one.
    const wide = await logits(tinyGemma3Config({ sliding_window: 100 }), w);
    expect(diffAt(windowed, wide, 0, 4), 'positions inside the window').to.be.at.most(1e-6);
    for (let t = 4; t < T; t++) expect(diffAt(windowed, wide, t, t + 1), `position ${t}`).to.be.greaterThan(1e-3);
    // The window is the local layers' alone: with every layer global it changes nothing.
    const global = { layer_types: layers('g', 'g', 'g') };
    expect(diffAt(await logits(tinyGemma3Config({ ...global, sliding_window: 2 }), w), await logits(tinyGemma3Config(global), w), 0, T)).to.equal(0);
    // Local layers use rope_local_base_freq and no rope_scaling: all-local with a wide window is all-global with
    // that base and no scaling.
    const allLocal = await logits(tinyGemma3Config({ layer_types: layers('s', 's', 's'), sliding_window: 100 }), w);
    const plainGlobal = await logits(tinyGemma3Config({ ...global, rope_theta: 10000, rope_scaling: null }), w);
    expect(diffAt(allLocal, plainGlobal, 0, T)).to.equal(0);
    expect(diffAt(allLocal, await logits(tinyGemma3Config(global), w), 0, T), 'the global rope differs').to.be.greaterThan(1e-3);
  });

  it('every norm is read (a zero w, i.e. a scale of 1, changes the logits) and namedWeights gives back w itself', async function () {
    const cfg = tinyGemma3Config();
    const w = tinyGemma3Weights(cfg, 7, 0.2);
    const base = await logits(cfg, w);
    const norms = [
      'input_layernorm',
      'post_attention_layernorm',
      'pre_feedforward_layernorm',
      'post_feedforward_layernorm',
      'self_attn.q_norm',
      'self_attn.k_norm',
    ];
    for (const name of [...norms.map((n) => `model.layers.1.${n}.weight`), 'model.norm.weight']) {
      expect(w.some((t) => t.name === name)).to.equal(true);
      const zeroed = w.map((t) => (t.name === name ? { ...t, data: new Float32Array(t.data.length) } : t));
      expect(diffAt(base, await logits(cfg, zeroed), 0, T), name).to.be.greaterThan(1e-3);
    }
    const model = LlamaModel.fromTensors(cfg, w);
    const back = await model.namedWeights();
    model.dispose();
    expect(back.map((t) => t.name)).to.deep.equal(w.map((t) => t.name));
    for (const t of back) expect(Buffer.from(t.data.buffer).equals(Buffer.from(w.find((x) => x.name === t.name)!.data.buffer)), t.name).to.equal(true);
  });

  it("a missing Gemma norm is named; a Qwen3-typed config of the same shapes refuses Gemma's extra norms", function () {
    const cfg = tinyGemma3Config();
    const w = tinyGemma3Weights(cfg, 3);
    expect(w.filter((t) => t.name.includes('layers.0.'))).to.have.length(13);
    const missing = w.filter((t) => t.name !== 'model.layers.2.pre_feedforward_layernorm.weight');
    expect(() => LlamaModel.fromTensors(cfg, missing)).to.throw(/missing gemma3_text tensors: layers\.2\.pre_feedforward_layernorm\.weight/);
    const qwen3 = parseLlamaConfig({ model_type: 'qwen3', ...pick(TINY_GEMMA3_JSON), tie_word_embeddings: true });
    expect(() => LlamaModel.fromTensors(qwen3, w)).to.throw(/unexpected tensor 'model\.layers\.0\.(pre|post)_feedforward_layernorm\.weight' for a qwen3 model/);
  });

  it('LoRA gradients through local and global layers: the steepest A and B coordinate of each projection matches a central difference to 2%', async function () {
    await selectBackend({ force: 'cpu' });
    const cfg = tinyGemma3Config();
    const model = LlamaModel.fromTensors(cfg, tinyGemma3Weights(cfg, 11, 0.2));
    const adapter = withRandomB(initLoraAdapter(cfg, ALL7, 1));
    const batch = packBatch(
      IDS.map((row) => ({ tokens: row, pairs: row.slice(1).map((target, pos) => ({ pos, target })) })),
      T,
    );
    try {
      // Layer 0 is local, layer 1 global.
      expect(await expectGradientsMatchCentralDifferences(model, adapter, ALL7, batch, (n) => /layers\.[01]\./.test(n))).to.equal(28);
    } finally {
      model.dispose();
      await selectBackend({ force: original as 'wasm' });
    }
  });

  it('the WebGPU engine serves Gemma 3, its windows too: FEDTUNE_ENGINE=auto picks it where a GPU adapter exists, and otherwise falls back for want of a GPU, not for the model', async function () {
    const cfg = tinyGemma3Config(); // window 4 < 128 positions
    const model = LlamaModel.fromTensors(cfg, tinyGemma3Weights(cfg, 1));
    try {
      await expectEngineServes(model, ALL7);
    } finally {
      model.dispose();
    }
  });
});

/** The fields a Qwen3 config shares with the tiny Gemma 3's. */
function pick(j: typeof TINY_GEMMA3_JSON): Record<string, unknown> {
  const { vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps } = j;
  return { vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps };
}
