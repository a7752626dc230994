// config.json of the Llama family: what is read, and what is refused by name rather than silently ignored.
import * as fs from 'fs';
import * as path from 'path';
import { parseModelConfig } from '../proto/model/model-config';
import { llamaParameterShapes, parseLlamaConfig, toHfLlamaConfigJson } from '../proto/model/llama-config';
import { initLoraAdapter, loraTargetPaths } from '../proto/model/lora-layout';
import { peftAdapterConfig } from '../proto/model/peft-config';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.resolve(__dirname, '..', '..');
const read = (f: string): Record<string, unknown> =>
  JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'llama', f, 'base', 'config.json'), 'utf8')) as Record<string, unknown>;

describe('Llama-family config.json', () => {
  it('reads the five families transformers wrote', () => {
    const llama = parseModelConfig(read('llama'));
    expect(llama).to.include({ family: 'llama', modelType: 'llama', nEmbd: 64, nHead: 4, nKvHead: 2, headDim: 16, tieWordEmbeddings: false, qkvBias: false });
    expect(llama).to.have.deep.property('rope', { type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 16 });
    expect(parseModelConfig(read('qwen2'))).to.include({ modelType: 'qwen2', qkvBias: true, oBias: false, tieWordEmbeddings: true, ropeTheta: 1e6 });
    expect(parseModelConfig(read('mistral'))).to.include({ modelType: 'mistral', slidingWindow: 4 });
    const qwen3 = parseModelConfig(read('qwen3'));
    expect(qwen3).to.include({ modelType: 'qwen3', nEmbd: 64, nHead: 4, nKvHead: 2, headDim: 32, qkNorm: true, qkvBias: false, oBias: false });
    expect(qwen3).to.include({ tieWordEmbeddings: true, ropeTheta: 1e6, rmsNormEps: 1e-6 });
    // transformers 5 wrote layer_types and rope_parameters per layer type (and both spellings of the pattern).
    const gemma3 = parseModelConfig(read('gemma3'));
    expect(gemma3).to.include({ modelType: 'gemma3_text', nEmbd: 48, nHead: 4, nKvHead: 2, headDim: 32, qkNorm: true, tieWordEmbeddings: true });
    expect(gemma3).to.deep.include({ ropeTheta: 1e6, rope: { type: 'linear', factor: 4 } });
    expect(gemma3).to.have.deep.property('gemma3', { slidingLayers: [true, false, true], slidingWindow: 3, localRopeTheta: 1e4, queryPreAttnScalar: 24 });
  });

  it('reads config.json shaped like the hub checkpoints of Llama 3.2, Qwen2.5, SmolLM2, TinyLlama and Mistral 7B', () => {
    const common = {
      architectures: ['X'],
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: 'bfloat16',
      transformers_version: '4.45.0',
      use_cache: true,
      initializer_range: 0.02,
      hidden_act: 'silu',
      attention_dropout: 0.0,
      rms_norm_eps: 1e-5,
    };
    const llama32 = parseLlamaConfig({
      ...common,
      model_type: 'llama',
      vocab_size: 128256,
      hidden_size: 2048,
      intermediate_size: 8192,
      num_hidden_layers: 16,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      head_dim: 64,
      max_position_embeddings: 131072,
      mlp_bias: false,
      attention_bias: false,
      pretraining_tp: 1,
      rope_theta: 500000.0,
      rope_scaling: { factor: 32.0, high_freq_factor: 4.0, low_freq_factor: 1.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
      tie_word_embeddings: true,
    });
    expect(llama32).to.include({ nKvHead: 8, headDim: 64, tieWordEmbeddings: true });
    const qwen25 = parseLlamaConfig({
      ...common,
      model_type: 'qwen2',
      vocab_size: 151936,
      hidden_size: 896,
      intermediate_size: 4864,
      num_hidden_layers: 24,
      num_attention_heads: 14,
      num_key_value_heads: 2,
      max_position_embeddings: 32768,
      max_window_layers: 21,
      rope_theta: 1000000.0,
      rope_scaling: null,
      sliding_window: 32768,
      use_sliding_window: false,
      use_mrope: false,
      tie_word_embeddings: true,
      rms_norm_eps: 1e-6,
    });
    expect(qwen25).to.include({ qkvBias: true, headDim: 64 });
    expect(qwen25.slidingWindow).to.equal(undefined);
    const smol = parseLlamaConfig({
      ...common,
      model_type: 'llama',
      vocab_size: 49152,
      hidden_size: 576,
      intermediate_size: 1536,
      num_hidden_layers: 30,
      num_attention_heads: 9,
      num_key_value_heads: 3,
      max_position_embeddings: 8192,
      rope_theta: 100000,
      rope_scaling: null,
      rope_interleaved: false,
      is_llama_config: true,
      pretraining_tp: 1,
      tie_word_embeddings: true,
      pad_token_id: 2,
    });
    expect(smol).to.include({ headDim: 64, nKvHead: 3 });
    const tiny = parseLlamaConfig({
      ...common,
      model_type: 'llama',
      vocab_size: 32000,
      hidden_size: 2048,
      intermediate_size: 5632,
      num_hidden_layers: 22,
      num_attention_heads: 32,
      num_key_value_heads: 4,
      max_position_embeddings: 2048,
      rope_scaling: null,
      rope_theta: 10000.0,
      tie_word_embeddings: false,
      pretraining_tp: 1,
    });
    expect(tiny).to.have.deep.property('rope', { type: 'default' });
    const mistral = parseLlamaConfig({
      ...common,
      model_type: 'mistral',
      vocab_size: 32000,
      hidden_size: 4096,
      intermediate_size: 14336,
      num_hidden_layers: 32,
      num_attention_heads: 32,
      num_key_value_heads: 8,
      max_position_embeddings: 32768,
      rope_theta: 10000.0,
      sliding_window: 4096,
      tie_word_embeddings: false,
    });
    expect(mistral.slidingWindow).to.equal(4096);
  });

  it("takes each transformers class's own default for an absent field (Qwen2: 32 kv heads, 32768 positions; Mistral: 8 kv heads, 131072 positions, window 4096)", () => {
    // transformers 5.17.0's constructors, as test/fixtures/print_config_defaults.py printed them on the GPU machine.
    const bare = { vocab_size: 64, hidden_size: 512, intermediate_size: 64, num_hidden_layers: 1, num_attention_heads: 64 };
    const of = (model_type: string, patch: Record<string, unknown> = {}) => parseLlamaConfig({ model_type, ...bare, ...patch });
    expect(of('llama')).to.include({ nKvHead: 64, nPositions: 2048, headDim: 8, tieWordEmbeddings: false, ropeTheta: 1e4, rmsNormEps: 1e-6 });
    expect(of('qwen2')).to.include({ nKvHead: 32, nPositions: 32768, headDim: 8, tieWordEmbeddings: false, ropeTheta: 1e4 });
    expect(of('qwen2').slidingWindow, 'use_sliding_window is false by default').to.equal(undefined);
    expect(of('mistral')).to.include({ nKvHead: 8, nPositions: 131072, headDim: 8, tieWordEmbeddings: false, slidingWindow: 4096 });
    expect(of('qwen3')).to.include({ nKvHead: 32, nPositions: 32768, headDim: 128 });
    // A null num_key_value_heads is the head count in all four; a null sliding_window is Mistral without a window.
    for (const t of ['llama', 'qwen2', 'mistral', 'qwen3']) expect(of(t, { num_key_value_heads: null }).nKvHead, t).to.equal(64);
    expect(of('mistral', { sliding_window: null }).slidingWindow).to.equal(undefined);
    expect(() => of('qwen2', { num_attention_heads: 16, hidden_size: 128 })).to.throw(/num_attention_heads 16 is not a multiple of num_key_value_heads 32/);
  });

  it('round-trips through toHfLlamaConfigJson', () => {
    for (const f of ['llama', 'qwen2', 'mistral', 'qwen3', 'gemma3']) {
      const c = parseLlamaConfig(read(f));
      expect(parseLlamaConfig(toHfLlamaConfigJson(c))).to.deep.equal(c);
    }
  });

  const refusals: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      'an unsupported model_type',
      { model_type: 'gemma' },
      /model_type 'gemma' is not supported \(supported: gpt2, llama, qwen2, mistral, qwen3, gemma3_text\)/,
    ],
    ['an unknown field', { some_new_knob: 3 }, /field\(s\) some_new_knob are not supported for model_type llama/],
    ['quantisation', { quantization_config: { quant_method: 'gptq' } }, /quantization_config/],
    ['a rope type not implemented', { rope_parameters: { rope_type: 'yarn', factor: 4, rope_theta: 1e4 } }, /rope_scaling type 'yarn' is not supported/],
    ['an unknown rope field', { rope_parameters: { rope_type: 'linear', factor: 2, rope_theta: 1e4, beta_fast: 3 } }, /rope_scaling field\(s\) beta_fast/],
    ['another activation', { hidden_act: 'gelu' }, /hidden_act 'gelu' is not supported/],
    ['heads not divisible by kv heads', { num_key_value_heads: 3 }, /not a multiple of num_key_value_heads 3/],
    ['attention dropout', { attention_dropout: 0.1 }, /attention_dropout 0.1/],
    ['sliding window on llama', { sliding_window: 8 }, /sliding_window is not a llama field/],
  ];
  for (const [what, patch, re] of refusals) {
    it(`refuses ${what}, naming it`, () => {
      expect(() => parseModelConfig({ ...read('llama'), ...patch })).to.throw(re);
    });
  }

  it("refuses Qwen2's use_sliding_window: true", () => {
    expect(() => parseModelConfig({ ...read('qwen2'), use_sliding_window: true })).to.throw(/use_sliding_window: true is not supported/);
  });

  it('LoRA on any subset of the seven projections, with PEFT key names; all-linear takes all seven', () => {
    const cfg = parseModelConfig(read('llama'));
    const lora = { r: 2, alpha: 4, dropout: 0, targetModules: ['v_proj', 'down_proj'] };
    expect(loraTargetPaths(cfg, lora)).to.deep.equal([
      'layers.0.mlp.down_proj',
      'layers.0.self_attn.v_proj',
      'layers.1.mlp.down_proj',
      'layers.1.self_attn.v_proj',
    ]);
    const names = initLoraAdapter(cfg, lora, 1).map((t) => `${t.name} ${t.shape.join('x')}`);
    expect(names).to.include('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight 2x128');
    expect(names).to.include('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight 32x2');
    expect(loraTargetPaths(cfg, { ...lora, targetModules: 'all-linear' })).to.have.length(14);
    expect(() => loraTargetPaths(cfg, { ...lora, targetModules: ['c_attn'] })).to.throw(/'c_attn' matches no llama projection \(supported: q_proj, k_proj/);
    expect(peftAdapterConfig(lora, 'x', false).fan_in_fan_out).to.equal(false);
  });
});

// Qwen3-0.6B's config.json as the hub ships it: head_dim 128 although hidden_size / heads is 64.
const QWEN3_06B = {
  architectures: ['Qwen3ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  bos_token_id: 151643,
  eos_token_id: 151645,
  head_dim: 128,
  hidden_act: 'silu',
  hidden_size: 1024,
  initializer_range: 0.02,
  intermediate_size: 3072,
  max_position_embeddings: 40960,
  max_window_layers: 28,
  model_type: 'qwen3',
  num_attention_heads: 16,
  num_hidden_layers: 28,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-6,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: null,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  transformers_version: '4.51.0',
  use_cache: true,
  use_sliding_window: false,
  vocab_size: 151936,
};

describe('Qwen3 config.json', () => {
  it("reads Qwen3-0.6B's config: q/k norms, head_dim 128 against hidden 1024 / 16 heads, no biases, tied head", () => {
    const c = parseLlamaConfig(QWEN3_06B);
    expect(c).to.include({ modelType: 'qwen3', nEmbd: 1024, nHead: 16, nKvHead: 8, headDim: 128, qkNorm: true, qkvBias: false, oBias: false });
    expect(c).to.include({ mlpBias: false, tieWordEmbeddings: true, nPositions: 40960, rmsNormEps: 1e-6, ropeTheta: 1e6, nLayer: 28 });
    expect(c.slidingWindow).to.equal(undefined);
    expect(c).to.have.deep.property('rope', { type: 'default' });
    expect(parseModelConfig(QWEN3_06B)).to.deep.equal(c);
    // The other families have no q/k norm.
    for (const f of ['llama', 'qwen2', 'mistral']) expect(parseLlamaConfig(read(f)).qkNorm).to.equal(false);
  });

  it("takes transformers' Qwen3Config defaults for absent fields (head_dim 128, 32 kv heads, 32768 positions); null kv heads is the head count", () => {
    const { head_dim: _h, num_key_value_heads: _k, max_position_embeddings: _m, ...rest } = { ...QWEN3_06B, num_attention_heads: 32 };
    expect(parseLlamaConfig(rest)).to.include({ headDim: 128, nKvHead: 32, nPositions: 32768 });
    expect(parseLlamaConfig({ ...QWEN3_06B, num_key_value_heads: null })).to.include({ nKvHead: 16 });
    // Qwen2's head_dim is hidden_size / heads when absent: the default is per family.
    expect(parseLlamaConfig({ ...QWEN3_06B, model_type: 'qwen2', head_dim: undefined, attention_bias: undefined })).to.include({ headDim: 64 });
  });

  it('attention_bias puts a bias on q, k, v and o (Llama attention); parameter shapes use heads · head_dim and carry the norms', () => {
    const biased = parseLlamaConfig({ ...QWEN3_06B, attention_bias: true });
    expect(biased).to.include({ qkvBias: true, oBias: true, mlpBias: false });
    const shapes = llamaParameterShapes(biased);
    expect(shapes.get('layers.0.self_attn.q_proj.weight')).to.deep.equal([2048, 1024]);
    expect(shapes.get('layers.0.self_attn.q_proj.bias')).to.deep.equal([2048]);
    expect(shapes.get('layers.0.self_attn.k_proj.weight')).to.deep.equal([1024, 1024]);
    expect(shapes.get('layers.0.self_attn.o_proj.weight')).to.deep.equal([1024, 2048]);
    expect(shapes.get('layers.0.self_attn.o_proj.bias')).to.deep.equal([1024]);
    expect(shapes.get('layers.27.self_attn.q_norm.weight')).to.deep.equal([128]);
    expect(shapes.get('layers.27.self_attn.k_norm.weight')).to.deep.equal([128]);
    expect(shapes.has('lm_head.weight')).to.equal(false);
    expect([...shapes.keys()].filter((k) => k.includes('_norm.weight') && k.includes('self_attn'))).to.have.length(56);
    const plain = llamaParameterShapes(parseLlamaConfig(QWEN3_06B));
    expect(plain.has('layers.0.self_attn.q_proj.bias')).to.equal(false);
    expect([...llamaParameterShapes(parseLlamaConfig(read('qwen2'))).keys()].some((k) => /q_norm|k_norm/.test(k))).to.equal(false);
  });

  it('LoRA layout: q_proj B is [heads · head_dim, r], o_proj A is [r, heads · head_dim]; the norms are no LoRA target', () => {
    const c = parseLlamaConfig(QWEN3_06B);
    const lora = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'o_proj'], layersToTransform: [0] };
    const names = initLoraAdapter(c, lora, 1).map((t) => `${t.name} ${t.shape.join('x')}`);
    expect(names).to.deep.equal([
      'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight 4x1024',
      'base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight 1024x4',
      'base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight 4x2048',
      'base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight 1024x4',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight 4x1024',
      'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight 2048x4',
    ]);
    expect(() => loraTargetPaths(c, { ...lora, targetModules: ['q_norm'] })).to.throw(/'q_norm' matches no qwen3 projection/);
  });

  it('round-trips through toHfLlamaConfigJson', () => {
    for (const json of [QWEN3_06B, { ...QWEN3_06B, attention_bias: true, tie_word_embeddings: false }]) {
      const c = parseLlamaConfig(json);
      const hf = toHfLlamaConfigJson(c);
      expect(hf).to.include({ model_type: 'qwen3', head_dim: 128, use_sliding_window: false });
      expect(hf.architectures).to.deep.equal(['Qwen3ForCausalLM']);
      expect(parseLlamaConfig(hf)).to.deep.equal(c);
    }
  });

  const refusals: Array<[string, Record<string, unknown>, RegExp]> = [
    ['use_sliding_window: true', { use_sliding_window: true, sliding_window: 4096 }, /use_sliding_window: true is not supported/],
    ['sliding_attention layers', { layer_types: ['full_attention', 'sliding_attention'] }, /layer_types: sliding_attention layers are not supported/],
    ['mlp_bias (not a Qwen3 field)', { mlp_bias: true }, /mlp_bias is not a qwen3 field/],
    ['a null head_dim', { head_dim: null }, /head_dim must be a positive integer/],
    ['an odd head_dim', { head_dim: 127 }, /head_dim 127 must be an even integer/],
    [
      'YaRN rope scaling',
      { rope_scaling: { rope_type: 'yarn', factor: 4.0, original_max_position_embeddings: 32768 } },
      /rope_scaling type 'yarn' is not supported/,
    ],
    [
      'absent kv heads that do not divide the heads (default 32 against 16)',
      { num_key_value_heads: undefined },
      /num_attention_heads 16 is not a multiple of num_key_value_heads 32/,
    ],
    ['an unknown field', { use_qk_norm: false }, /field\(s\) use_qk_norm are not supported for model_type qwen3/],
  ];
  for (const [what, patch, re] of refusals) {
    it(`refuses ${what}, naming it`, () => {
      expect(() => parseModelConfig(JSON.parse(JSON.stringify({ ...QWEN3_06B, ...patch })))).to.throw(re);
    });
  }
});
