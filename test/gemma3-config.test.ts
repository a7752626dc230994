// Gemma 3's config.json (model_type gemma3_text): the hub's classic spelling and transformers 5's read alike, absent
// fields take Gemma3TextConfig's defaults, and what fedtune does not implement is refused by name.
import { parseModelConfig } from '../proto/model/model-config';
import { llamaParameterShapes, parseLlamaConfig, toHfLlamaConfigJson } from '../proto/model/llama-config';
import { initLoraAdapter, loraTargetPaths } from '../proto/model/lora-layout';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

// google/gemma-3-1b-it's config.json as the hub ships it: head_dim 256 although hidden_size / heads is 288; every
// sixth layer global (sliding_window_pattern 6).
const GEMMA3_1B = {
  architectures: ['Gemma3ForCausalLM'],
  attention_bias: false,
  attention_dropout: 0.0,
  attn_logit_softcapping: null,
  bos_token_id: 2,
  cache_implementation: 'hybrid',
  eos_token_id: [1, 106],
  final_logit_softcapping: null,
  head_dim: 256,
  hidden_activation: 'gelu_pytorch_tanh',
  hidden_size: 1152,
  initializer_range: 0.02,
  intermediate_size: 6912,
  max_position_embeddings: 32768,
  model_type: 'gemma3_text',
  num_attention_heads: 4,
  num_hidden_layers: 26,
  num_key_value_heads: 1,
  pad_token_id: 0,
  query_pre_attn_scalar: 256,
  rms_norm_eps: 1e-6,
  rope_local_base_freq: 10000,
  rope_scaling: null,
  rope_theta: 1000000,
  sliding_window: 512,
  sliding_window_pattern: 6,
  torch_dtype: 'bfloat16',
  transformers_version: '4.50.0.dev0',
  use_cache: true,
  vocab_size: 262144,
};
const GLOBAL_1B = [5, 11, 17, 23];

const types = (n: number, global: number[]): string[] => Array.from({ length: n }, (_, i) => (global.includes(i) ? 'full_attention' : 'sliding_attention'));

describe('Gemma 3 config.json', () => {
  it("reads gemma-3-1b's config: every sixth layer global, window 512, head_dim 256 against 1152 / 4 heads, one kv head, tied", () => {
    const c = parseLlamaConfig(GEMMA3_1B);
    expect(c).to.include({ family: 'llama', modelType: 'gemma3_text', nEmbd: 1152, nHead: 4, nKvHead: 1, headDim: 256, nLayer: 26 });
    expect(c).to.include({ qkNorm: true, qkvBias: false, oBias: false, mlpBias: false, tieWordEmbeddings: true, nPositions: 32768, ropeTheta: 1e6 });
    expect(c.slidingWindow, "Mistral's all-layer window").to.equal(undefined);
    expect(c).to.have.deep.property('rope', { type: 'default' });
    expect(c.gemma3).to.deep.equal({
      slidingLayers: Array.from({ length: 26 }, (_, i) => !GLOBAL_1B.includes(i)),
      slidingWindow: 512,
      localRopeTheta: 1e4,
      queryPreAttnScalar: 256,
    });
    expect(parseModelConfig(GEMMA3_1B)).to.deep.equal(c);
    // gemma-3-270m's spelling (transformers 4.55): layer_types listed, the pattern kept as _sliding_window_pattern.
    const { sliding_window_pattern: _p, ...noPattern } = GEMMA3_1B;
    const m270 = { ...noPattern, layer_types: types(26, GLOBAL_1B), _sliding_window_pattern: 6, use_bidirectional_attention: false };
    expect(parseLlamaConfig(m270)).to.deep.equal(c);
    // layer_types wins over sliding_window_pattern, as in transformers.
    expect(parseLlamaConfig({ ...GEMMA3_1B, layer_types: types(26, [0]) }).gemma3?.slidingLayers[0]).to.equal(false);
  });

  it("transformers 5's spelling (rope_parameters per layer type) reads as the classic one (rope_theta, rope_local_base_freq, rope_scaling)", () => {
    const { rope_theta: _t, rope_local_base_freq: _l, rope_scaling: _s, sliding_window_pattern: _p, ...rest } = GEMMA3_1B;
    const v5 = {
      ...rest,
      layer_types: types(26, GLOBAL_1B),
      rope_parameters: { full_attention: { rope_type: 'linear', factor: 8, rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4 } },
    };
    const classic = { ...GEMMA3_1B, rope_scaling: { rope_type: 'linear', factor: 8 } };
    expect(parseLlamaConfig(v5)).to.deep.equal(parseLlamaConfig(classic));
    expect(parseLlamaConfig(v5)).to.deep.include({ rope: { type: 'linear', factor: 8 }, ropeTheta: 1e6 });
  });

  it("takes Gemma3TextConfig's defaults for absent fields (4 kv heads, head_dim 256, 131072 positions, window 4096 every sixth layer global, scalar 256, tied)", () => {
    const c = parseLlamaConfig({
      model_type: 'gemma3_text',
      vocab_size: 64,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 7,
      num_attention_heads: 8,
    });
    expect(c).to.include({ nKvHead: 4, headDim: 256, nPositions: 131072, tieWordEmbeddings: true, ropeTheta: 1e6, rmsNormEps: 1e-6 });
    expect(c.gemma3).to.deep.equal({
      slidingLayers: [true, true, true, true, true, false, true],
      slidingWindow: 4096,
      localRopeTheta: 1e4,
      queryPreAttnScalar: 256,
    });
  });

  it('parameter shapes: four norms a layer and the q/k norms, q_proj out heads · head_dim, no lm_head when tied; LoRA on the seven projections only', () => {
    const c = parseLlamaConfig({ ...GEMMA3_1B, attention_bias: true, tie_word_embeddings: false });
    const shapes = llamaParameterShapes(c);
    for (const n of ['input_layernorm', 'post_attention_layernorm', 'pre_feedforward_layernorm', 'post_feedforward_layernorm'])
      expect(shapes.get(`layers.25.${n}.weight`), n).to.deep.equal([1152]);
    expect(shapes.get('layers.0.self_attn.q_norm.weight')).to.deep.equal([256]);
    expect(shapes.get('layers.0.self_attn.q_proj.weight')).to.deep.equal([1024, 1152]);
    expect(shapes.get('layers.0.self_attn.o_proj.bias'), 'attention_bias: q, k, v and o').to.deep.equal([1152]);
    expect(shapes.has('layers.0.mlp.up_proj.bias')).to.equal(false);
    expect(shapes.get('lm_head.weight')).to.deep.equal([262144, 1152]);
    expect(llamaParameterShapes(parseLlamaConfig(GEMMA3_1B)).has('lm_head.weight')).to.equal(false);
    expect(llamaParameterShapes(parseLlamaConfig(GEMMA3_1B)).size).to.equal(2 + 26 * 13);
    const lora = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'o_proj'], layersToTransform: [5] };
    expect(initLoraAdapter(c, lora, 1).map((t) => `${t.name} ${t.shape.join('x')}`)).to.deep.equal([
      'base_model.model.model.layers.5.self_attn.o_proj.lora_A.weight 4x1024',
      'base_model.model.model.layers.5.self_attn.o_proj.lora_B.weight 1152x4',
      'base_model.model.model.layers.5.self_attn.q_proj.lora_A.weight 4x1152',
      'base_model.model.model.layers.5.self_attn.q_proj.lora_B.weight 1024x4',
    ]);
    expect(loraTargetPaths(c, { ...lora, targetModules: 'all-linear', layersToTransform: undefined })).to.have.length(26 * 7);
    expect(() => loraTargetPaths(c, { ...lora, targetModules: ['pre_feedforward_layernorm'] })).to.throw(/matches no gemma3_text projection/);
  });

  it('round-trips through toHfLlamaConfigJson (Gemma3ForCausalLM, hidden_activation, layer_types, both rope bases)', () => {
    for (const json of [GEMMA3_1B, { ...GEMMA3_1B, rope_scaling: { rope_type: 'linear', factor: 8 }, attention_bias: true, tie_word_embeddings: false }]) {
      const c = parseLlamaConfig(json);
      const hf = toHfLlamaConfigJson(c);
      expect(hf).to.include({ model_type: 'gemma3_text', hidden_activation: 'gelu_pytorch_tanh', rope_local_base_freq: 1e4, query_pre_attn_scalar: 256 });
      expect(hf).not.to.have.property('hidden_act');
      expect(hf.architectures).to.deep.equal(['Gemma3ForCausalLM']);
      expect(parseLlamaConfig(hf)).to.deep.equal(c);
    }
  });

  const refusals: Array<[string, Record<string, unknown>, RegExp]> = [
    ['final logit softcapping', { final_logit_softcapping: 30 }, /final_logit_softcapping 30 is not supported/],
    ['attention logit softcapping', { attn_logit_softcapping: 50 }, /attn_logit_softcapping 50 is not supported/],
    ['bidirectional attention (EmbeddingGemma)', { use_bidirectional_attention: true }, /use_bidirectional_attention is not supported/],
    ['another activation', { hidden_activation: 'gelu' }, /hidden_activation 'gelu' is not supported \(only gelu_pytorch_tanh\)/],
    ["Llama's hidden_act (not a Gemma 3 field)", { hidden_act: 'silu' }, /field\(s\) hidden_act are not supported for model_type gemma3_text/],
    ['mlp_bias', { mlp_bias: false }, /field\(s\) mlp_bias are not supported for model_type gemma3_text/],
    ['an unknown field', { some_new_knob: 1 }, /field\(s\) some_new_knob are not supported for model_type gemma3_text/],
    ['a null head_dim', { head_dim: null }, /head_dim must be a positive integer/],
    ['null kv heads', { num_key_value_heads: null }, /num_key_value_heads must be a positive integer/],
    ['a null sliding_window', { sliding_window: null }, /sliding_window must be a positive integer/],
    [
      'layer_types of the wrong length',
      { layer_types: ['full_attention'] },
      /layer_types must list full_attention or sliding_attention for each of the 26 layers/,
    ],
    ['an unknown layer type', { layer_types: types(25, []).concat(['chunked_attention']) }, /layer_types must list/],
    ['a zero sliding_window_pattern', { sliding_window_pattern: 0 }, /sliding_window_pattern must be a positive integer/],
    ['YaRN on the global layers', { rope_scaling: { rope_type: 'yarn', factor: 8 } }, /rope_scaling type 'yarn' is not supported/],
    [
      'dynamic rope (not checked against transformers for Gemma 3)',
      { rope_scaling: { rope_type: 'dynamic', factor: 2 } },
      /rope_scaling type 'dynamic' is not supported for gemma3_text \(supported: default, linear\)/,
    ],
    [
      'llama3 rope in the v5 spelling',
      {
        rope_theta: undefined,
        rope_local_base_freq: undefined,
        rope_scaling: undefined,
        rope_parameters: {
          full_attention: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
        },
      },
      /rope_scaling type 'llama3' is not supported for gemma3_text/,
    ],
    ['attention dropout', { attention_dropout: 0.1 }, /attention_dropout 0.1 is not supported/],
    [
      'rope_parameters beside rope_theta',
      { rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1e6 } } },
      /rope_parameters and rope_theta are both set; keep one/,
    ],
  ];
  for (const [what, patch, re] of refusals) {
    it(`refuses ${what}, naming it`, () => {
      expect(() => parseModelConfig(JSON.parse(JSON.stringify({ ...GEMMA3_1B, ...patch })))).to.throw(re);
    });
  }

  const v5Refusals: Array<[string, Record<string, unknown>, RegExp]> = [
    [
      'a flat rope_parameters',
      { rope_type: 'default', rope_theta: 1e6 },
      /rope_parameters must map full_attention and sliding_attention \(found rope_type, rope_theta\)/,
    ],
    [
      'scaled local layers',
      { sliding_attention: { rope_type: 'linear', factor: 2, rope_theta: 1e4 } },
      /rope_parameters\.sliding_attention rope_type 'linear' is not supported \(only default\)/,
    ],
  ];
  for (const [what, rope_parameters, re] of v5Refusals) {
    it(`refuses ${what}, naming it`, () => {
      const { rope_theta: _t, rope_local_base_freq: _l, rope_scaling: _s, ...rest } = GEMMA3_1B;
      expect(() => parseModelConfig({ ...rest, rope_parameters })).to.throw(re);
    });
  }
});
