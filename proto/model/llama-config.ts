// Llama-family hyper-parameters (model_type llama, qwen2, mistral, qwen3, gemma3_text) as Hugging Face's
// config.json spells them, parsed into a typed object. Fields that would change the computation in a way fedtune
// does not implement are refused with their name, never silently ignored; metadata fields are skipped. The field
// names mirror Gpt2Config where the meaning is the same (vocabSize, nEmbd, nLayer, nHead, nPositions), so code
// that needs only those works on either family. Absent fields take the transformers class's own defaults.
import { GEMMA3_DEFAULTS, GEMMA3_FIELDS, gemma3ConfigJson, parseGemma3, type Gemma3Attention } from './gemma3-config';
import { parseRope, ropeScalingJson, type RopeScaling } from './rope-config';

export type { RopeScaling } from './rope-config';
export type LlamaModelType = 'llama' | 'qwen2' | 'mistral' | 'qwen3' | 'gemma3_text';
export const LLAMA_MODEL_TYPES: readonly LlamaModelType[] = ['llama', 'qwen2', 'mistral', 'qwen3', 'gemma3_text'];

export interface LlamaConfig {
  readonly family: 'llama';
  readonly modelType: LlamaModelType;
  readonly vocabSize: number;
  /** max_position_embeddings: the training window; also dynamic rope's threshold. */
  readonly nPositions: number;
  /** hidden_size. */
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nHead: number;
  /** num_key_value_heads (grouped-query attention when < nHead). */
  readonly nKvHead: number;
  readonly headDim: number;
  readonly intermediateSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly rope: RopeScaling;
  readonly tieWordEmbeddings: boolean;
  /** q_proj, k_proj, v_proj carry a bias (Qwen2 always; Llama and Qwen3 with attention_bias). */
  readonly qkvBias: boolean;
  /** o_proj carries a bias (Llama and Qwen3 with attention_bias). */
  readonly oBias: boolean;
  /** gate/up/down_proj carry a bias (Llama with mlp_bias). */
  readonly mlpBias: boolean;
  /** Mistral's sliding window: a query attends to keys at distance < window; undefined = full causal. */
  readonly slidingWindow?: number;
  /**
   * Qwen3's per-head RMSNorm on queries and keys (`self_attn.q_norm.weight`, `self_attn.k_norm.weight`, each
   * [head_dim], eps rms_norm_eps), applied after the projection and before the rotary embedding; Gemma 3's too.
   */
  readonly qkNorm: boolean;
  /**
   * Gemma 3 (model_type gemma3_text): local and global layers, query_pre_attn_scalar; the model type also means
   * (1 + w) norms, scaled embeddings, four norms a layer and a GELU MLP (gemma3-config.ts). Undefined otherwise.
   */
  readonly gemma3?: Gemma3Attention;
}

/** The seven nn.Linear projections of a decoder layer: the modules LoRA may target (PEFT names). */
export const LLAMA_PROJECTIONS = [
  'self_attn.q_proj',
  'self_attn.k_proj',
  'self_attn.v_proj',
  'self_attn.o_proj',
  'mlp.gate_proj',
  'mlp.up_proj',
  'mlp.down_proj',
] as const;

// Fields that never change the forward pass (ids, bookkeeping, generation defaults, HF's common attributes).
const METADATA = new Set([
  'architectures',
  'model_type',
  'transformers_version',
  'torch_dtype',
  'dtype',
  '_name_or_path',
  'bos_token_id',
  'eos_token_id',
  'pad_token_id',
  'sep_token_id',
  'decoder_start_token_id',
  'use_cache',
  'initializer_range',
  'pretraining_tp',
  'is_llama_config',
  'tokenizer_class',
  'id2label',
  'label2id',
  'return_dict',
  'output_hidden_states',
  'output_attentions',
  'torchscript',
  'use_bfloat16',
  'tie_encoder_decoder',
  'chunk_size_feed_forward',
  'is_encoder_decoder',
  'is_decoder',
  'add_cross_attention',
  'prefix',
  'problem_type',
  'finetuning_task',
  'task_specific_params',
  'bad_words_ids',
  'begin_suppress_tokens',
  'max_length',
  'min_length',
  'do_sample',
  'early_stopping',
  'num_beams',
  'temperature',
  'top_k',
  'top_p',
  'repetition_penalty',
  'length_penalty',
  'no_repeat_ngram_size',
  'num_return_sequences',
  'typical_p',
  'diversity_penalty',
  'num_beam_groups',
  'forced_bos_token_id',
  'forced_eos_token_id',
  'remove_invalid_values',
  'exponential_decay_length_penalty',
  'suppress_tokens',
  'encoder_no_repeat_ngram_size',
  'cross_attention_hidden_size',
  'output_scores',
  'return_dict_in_generate',
  'tf_legacy_loss',
  'pruned_heads',
  'tie_word_embeddings',
]);
// Fields read below (their values are checked there): those every family has, and those of all but Gemma 3.
const COMMON_READ = [
  'vocab_size',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'head_dim',
  'max_position_embeddings',
  'rms_norm_eps',
  'rope_theta',
  'rope_scaling',
  'rope_parameters',
  'attention_bias',
  'sliding_window',
  'layer_types',
  'attention_dropout',
];
const READ = new Set([...COMMON_READ, 'hidden_act', 'mlp_bias', 'use_sliding_window', 'max_window_layers', 'use_mrope', 'rope_interleaved', 'mlp_only_layers']);
const GEMMA3_READ = new Set([...COMMON_READ, ...GEMMA3_FIELDS]);

type Json = Record<string, unknown>;

function fail(msg: string): never {
  throw new Error(`config.json: ${msg}`);
}

const MISTRAL_SLIDING_WINDOW = 4096;

/**
 * What each transformers config class takes for a field config.json leaves out (its constructor's defaults, printed
 * by test/fixtures/print_config_defaults.py): kvHeads 'heads' = num_attention_heads; headDim undefined =
 * hidden_size / heads.
 */
const DEFAULTS: Record<LlamaModelType, { kvHeads: number | 'heads'; positions: number; headDim?: number; tied: boolean }> = {
  llama: { kvHeads: 'heads', positions: 2048, tied: false },
  qwen2: { kvHeads: 32, positions: 32768, tied: false },
  mistral: { kvHeads: 8, positions: 131072, tied: false },
  qwen3: { kvHeads: 32, positions: 32768, headDim: 128, tied: false },
  gemma3_text: {
    kvHeads: GEMMA3_DEFAULTS.numKeyValueHeads,
    positions: GEMMA3_DEFAULTS.maxPositionEmbeddings,
    headDim: GEMMA3_DEFAULTS.headDim,
    tied: GEMMA3_DEFAULTS.tieWordEmbeddings,
  },
};

export function parseLlamaConfig(json: unknown): LlamaConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail('not an object');
  const c = json as Json;
  const modelType = c.model_type;
  if (typeof modelType !== 'string' || !(LLAMA_MODEL_TYPES as readonly string[]).includes(modelType)) {
    fail(`model_type '${String(modelType)}' is not a Llama-family model (supported: ${LLAMA_MODEL_TYPES.join(', ')})`);
  }
  const gemma = modelType === 'gemma3_text';
  const unknown = Object.keys(c).filter((k) => !METADATA.has(k) && !(gemma ? GEMMA3_READ : READ).has(k));
  if (unknown.length > 0) fail(`field(s) ${unknown.join(', ')} are not supported for model_type ${modelType}`);
  if (c.quantization_config !== undefined) fail('quantization_config is not supported');
  const int = (k: string, dflt?: number): number => {
    const v = c[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(`${k} must be a positive integer`);
    return v;
  };
  const bool = (k: string, dflt: boolean): boolean => {
    const v = c[k] ?? dflt;
    if (typeof v !== 'boolean') fail(`${k} must be a boolean`);
    return v;
  };
  const dflt = DEFAULTS[modelType as LlamaModelType];
  const nEmbd = int('hidden_size');
  const nHead = int('num_attention_heads');
  const nLayer = int('num_hidden_layers');
  // An absent num_key_value_heads takes the class's default; null means the head count (not for Gemma 3, whose
  // attention would break on it).
  const kv = c.num_key_value_heads;
  const nKvHead = kv === undefined ? (dflt.kvHeads === 'heads' ? nHead : dflt.kvHeads) : kv === null && !gemma ? nHead : int('num_key_value_heads');
  if (nHead % nKvHead !== 0) fail(`num_attention_heads ${nHead} is not a multiple of num_key_value_heads ${nKvHead}`);
  // head_dim: Qwen3 and Gemma 3 have their own default (a null is refused); the others derive it when absent.
  const headDim =
    c.head_dim !== null && c.head_dim !== undefined
      ? int('head_dim')
      : dflt.headDim === undefined
        ? nEmbd / nHead
        : c.head_dim === undefined
          ? dflt.headDim
          : fail('head_dim must be a positive integer');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) fail(`head_dim ${headDim} must be an even integer`);
  if (!gemma) {
    const act = c.hidden_act ?? 'silu';
    if (act !== 'silu') fail(`hidden_act '${String(act)}' is not supported (only silu)`);
  }
  const eps = c.rms_norm_eps ?? 1e-6;
  if (typeof eps !== 'number' || !(eps > 0)) fail('rms_norm_eps must be a positive number');
  const dropout = c.attention_dropout ?? 0;
  if (dropout !== 0) fail(`attention_dropout ${String(dropout)} is not supported (only 0)`);
  for (const k of ['use_mrope', 'rope_interleaved']) if (c[k] === true) fail(`${k}: true is not supported`);
  if (Array.isArray(c.mlp_only_layers) && c.mlp_only_layers.length > 0) fail('mlp_only_layers is not supported');
  // Qwen3's and Gemma 3's attention is Llama's (attention_bias puts a bias on q, k, v and o); their MLP has no bias.
  const biasFields = modelType === 'llama' || gemma ? [] : modelType === 'qwen3' ? ['mlp_bias'] : ['attention_bias', 'mlp_bias'];
  for (const k of biasFields) if (c[k] !== undefined) fail(`${k} is not a ${modelType} field`);
  const attentionBias = bool('attention_bias', false);
  const { theta, rope, gemma3 } = gemma ? parseGemma3(c, nLayer) : { ...parseRope(c), gemma3: undefined };

  let slidingWindow: number | undefined;
  if (modelType === 'mistral') {
    // MistralConfig's window is 4096 when absent; null means none.
    if (c.sliding_window !== null) slidingWindow = int('sliding_window', MISTRAL_SLIDING_WINDOW);
  } else if (modelType === 'qwen2' || modelType === 'qwen3') {
    // Qwen2/3 ship sliding_window with use_sliding_window false: then the window is not applied.
    if (bool('use_sliding_window', false)) fail('use_sliding_window: true is not supported');
  } else if (!gemma && c.sliding_window !== undefined && c.sliding_window !== null) {
    fail('sliding_window is not a llama field');
  }
  if (!gemma && c.layer_types !== undefined && c.layer_types !== null) {
    const lt = c.layer_types;
    if (!Array.isArray(lt) || lt.some((t) => t !== 'full_attention' && t !== 'sliding_attention'))
      fail('layer_types must list full_attention or sliding_attention');
    if (lt.includes('sliding_attention') && modelType !== 'mistral') fail('layer_types: sliding_attention layers are not supported');
  }
  return {
    family: 'llama',
    modelType: modelType as LlamaModelType,
    vocabSize: int('vocab_size'),
    nPositions: int('max_position_embeddings', dflt.positions),
    nEmbd,
    nLayer,
    nHead,
    nKvHead,
    headDim,
    intermediateSize: int('intermediate_size'),
    rmsNormEps: eps,
    ropeTheta: theta,
    rope,
    tieWordEmbeddings: bool('tie_word_embeddings', dflt.tied),
    qkvBias: modelType === 'qwen2' || attentionBias,
    oBias: attentionBias,
    mlpBias: modelType === 'llama' && bool('mlp_bias', false),
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
    qkNorm: modelType === 'qwen3' || gemma,
    ...(gemma3 ? { gemma3 } : {}),
  };
}

/** Expected HF parameter shapes (names without the `model.` prefix of LlamaForCausalLM, lm_head as is). */
export function llamaParameterShapes(cfg: LlamaConfig): Map<string, number[]> {
  const d = cfg.nEmbd;
  const q = cfg.nHead * cfg.headDim;
  const kv = cfg.nKvHead * cfg.headDim;
  const f = cfg.intermediateSize;
  const m = new Map<string, number[]>([
    ['embed_tokens.weight', [cfg.vocabSize, d]],
    ['norm.weight', [d]],
  ]);
  for (let i = 0; i < cfg.nLayer; i++) {
    const p = `layers.${i}.`;
    m.set(p + 'input_layernorm.weight', [d]).set(p + 'post_attention_layernorm.weight', [d]);
    // Gemma 3 norms the attention output (post_attention_layernorm) and the MLP's input and output.
    if (cfg.gemma3) m.set(p + 'pre_feedforward_layernorm.weight', [d]).set(p + 'post_feedforward_layernorm.weight', [d]);
    const lin = (name: string, out: number, inF: number, bias: boolean): void => {
      m.set(p + name + '.weight', [out, inF]);
      if (bias) m.set(p + name + '.bias', [out]);
    };
    lin('self_attn.q_proj', q, d, cfg.qkvBias);
    lin('self_attn.k_proj', kv, d, cfg.qkvBias);
    lin('self_attn.v_proj', kv, d, cfg.qkvBias);
    lin('self_attn.o_proj', d, q, cfg.oBias);
    if (cfg.qkNorm) m.set(p + 'self_attn.q_norm.weight', [cfg.headDim]).set(p + 'self_attn.k_norm.weight', [cfg.headDim]);
    lin('mlp.gate_proj', f, d, cfg.mlpBias);
    lin('mlp.up_proj', f, d, cfg.mlpBias);
    lin('mlp.down_proj', d, f, cfg.mlpBias);
  }
  if (!cfg.tieWordEmbeddings) m.set('lm_head.weight', [cfg.vocabSize, d]);
  return m;
}

/** [in, out] of a layer projection, e.g. `layers.3.mlp.down_proj` → [intermediate, hidden]. */
export function llamaProjectionShape(cfg: LlamaConfig, path: string): [number, number] {
  const shape = llamaParameterShapes(cfg).get(path + '.weight');
  if (!shape || shape.length !== 2 || !/^layers\.\d+\./.test(path)) throw new Error(`${path} is not a Llama projection`);
  return [shape[1], shape[0]];
}

/** The config.json for a LlamaConfig, loadable by transformers (classic rope_theta / rope_scaling keys). */
export function toHfLlamaConfigJson(cfg: LlamaConfig, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const arch = {
    llama: 'LlamaForCausalLM',
    qwen2: 'Qwen2ForCausalLM',
    mistral: 'MistralForCausalLM',
    qwen3: 'Qwen3ForCausalLM',
    gemma3_text: 'Gemma3ForCausalLM',
  }[cfg.modelType];
  return {
    architectures: [arch],
    model_type: cfg.modelType,
    vocab_size: cfg.vocabSize,
    hidden_size: cfg.nEmbd,
    intermediate_size: cfg.intermediateSize,
    num_hidden_layers: cfg.nLayer,
    num_attention_heads: cfg.nHead,
    num_key_value_heads: cfg.nKvHead,
    head_dim: cfg.headDim,
    max_position_embeddings: cfg.nPositions,
    rms_norm_eps: cfg.rmsNormEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: ropeScalingJson(cfg.rope),
    tie_word_embeddings: cfg.tieWordEmbeddings,
    ...(cfg.gemma3 ? { attention_bias: cfg.oBias, ...gemma3ConfigJson(cfg.gemma3, cfg.ropeTheta, cfg.rope) } : { hidden_act: 'silu' }),
    ...(cfg.modelType === 'llama' ? { attention_bias: cfg.oBias, mlp_bias: cfg.mlpBias } : {}),
    ...(cfg.modelType === 'qwen3' ? { attention_bias: cfg.oBias, use_sliding_window: false } : {}),
    ...(cfg.modelType === 'mistral' ? { sliding_window: cfg.slidingWindow ?? null } : {}),
    ...extra,
  };
}
