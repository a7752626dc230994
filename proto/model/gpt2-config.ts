// GPT-2 hyper-parameters as Hugging Face's config.json spells them, parsed into a typed object.

export type Activation = 'gelu_new';

export interface Gpt2Config {
  readonly vocabSize: number;
  readonly nPositions: number;
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nHead: number;
  /** MLP hidden width; HF's n_inner, null meaning 4 * n_embd. */
  readonly nInner: number;
  readonly layerNormEpsilon: number;
  readonly activation: Activation;
  /** HF scale_attn_weights: divide attention scores by sqrt(head_dim). */
  readonly scaleAttnWeights: boolean;
  /** HF scale_attn_by_inverse_layer_idx: further divide layer i's scores by i + 1. */
  readonly scaleAttnByInverseLayerIdx: boolean;
  /** HF tie_word_embeddings: the LM head is wte; otherwise lm_head.weight [V, D] is loaded. */
  readonly tieWordEmbeddings: boolean;
}

/** The config.json object Hugging Face writes for GPT2LMHeadModel (the fields fedtune reads). */
export interface HfGpt2ConfigJson {
  model_type?: string;
  vocab_size: number;
  n_positions: number;
  n_embd: number;
  n_layer: number;
  n_head: number;
  n_inner?: number | null;
  layer_norm_epsilon?: number;
  activation_function?: string;
  scale_attn_weights?: boolean;
  scale_attn_by_inverse_layer_idx?: boolean;
  tie_word_embeddings?: boolean;
  [key: string]: unknown;
}

// gelu_pytorch_tanh is the same tanh approximation under another name.
const TANH_GELU = new Set(['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast']);

export function parseGpt2Config(json: unknown): Gpt2Config {
  if (typeof json !== 'object' || json === null) throw new Error('config.json: not an object');
  const c = json as Record<string, unknown>;
  if (c.model_type !== undefined && c.model_type !== 'gpt2') {
    throw new Error(`config.json: model_type '${String(c.model_type)}' is not gpt2`);
  }
  const int = (k: string): number => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`config.json: ${k} must be a positive integer`);
    return v;
  };
  const bool = (k: string, dflt: boolean): boolean => {
    const v = c[k];
    if (v === undefined || v === null) return dflt;
    if (typeof v !== 'boolean') throw new Error(`config.json: ${k} must be a boolean`);
    return v;
  };
  const nEmbd = int('n_embd');
  const nHead = int('n_head');
  if (nEmbd % nHead !== 0) throw new Error(`config.json: n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  const act = c.activation_function ?? 'gelu_new';
  if (typeof act !== 'string' || !TANH_GELU.has(act)) {
    throw new Error(`config.json: activation_function '${String(act)}' is not supported (only the tanh GELU, gelu_new)`);
  }
  const eps = c.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0)) throw new Error('config.json: layer_norm_epsilon must be a positive number');
  const nInner = c.n_inner === undefined || c.n_inner === null ? 4 * nEmbd : int('n_inner');
  return {
    vocabSize: int('vocab_size'),
    nPositions: int('n_positions'),
    nEmbd,
    nLayer: int('n_layer'),
    nHead,
    nInner,
    layerNormEpsilon: eps,
    activation: 'gelu_new',
    scaleAttnWeights: bool('scale_attn_weights', true),
    scaleAttnByInverseLayerIdx: bool('scale_attn_by_inverse_layer_idx', false),
    tieWordEmbeddings: bool('tie_word_embeddings', true),
  };
}

/** The config.json for a Gpt2Config, loadable by transformers' GPT2LMHeadModel; `extra` adds e.g. token ids. */
export function toHfConfigJson(cfg: Gpt2Config, extra: Record<string, unknown> = {}): HfGpt2ConfigJson {
  return {
    architectures: ['GPT2LMHeadModel'],
    model_type: 'gpt2',
    vocab_size: cfg.vocabSize,
    n_positions: cfg.nPositions,
    n_ctx: cfg.nPositions,
    n_embd: cfg.nEmbd,
    n_layer: cfg.nLayer,
    n_head: cfg.nHead,
    n_inner: cfg.nInner === 4 * cfg.nEmbd ? null : cfg.nInner,
    layer_norm_epsilon: cfg.layerNormEpsilon,
    activation_function: cfg.activation,
    scale_attn_weights: cfg.scaleAttnWeights,
    scale_attn_by_inverse_layer_idx: cfg.scaleAttnByInverseLayerIdx,
    tie_word_embeddings: cfg.tieWordEmbeddings,
    ...extra,
  };
}

/** The four Conv1D projections of each block, the modules LoRA may target. */
export const BLOCK_PROJECTIONS = ['attn.c_attn', 'attn.c_proj', 'mlp.c_fc', 'mlp.c_proj'] as const;

/** Expected HF parameter shapes (names without the `transformer.` prefix). */
export function gpt2ParameterShapes(cfg: Gpt2Config): Map<string, number[]> {
  const d = cfg.nEmbd;
  const m = new Map<string, number[]>([
    ['wte.weight', [cfg.vocabSize, d]],
    ['wpe.weight', [cfg.nPositions, d]],
    ['ln_f.weight', [d]],
    ['ln_f.bias', [d]],
  ]);
  for (let i = 0; i < cfg.nLayer; i++) {
    const p = `h.${i}.`;
    m.set(p + 'ln_1.weight', [d]).set(p + 'ln_1.bias', [d]);
    m.set(p + 'attn.c_attn.weight', [d, 3 * d]).set(p + 'attn.c_attn.bias', [3 * d]);
    m.set(p + 'attn.c_proj.weight', [d, d]).set(p + 'attn.c_proj.bias', [d]);
    m.set(p + 'ln_2.weight', [d]).set(p + 'ln_2.bias', [d]);
    m.set(p + 'mlp.c_fc.weight', [d, cfg.nInner]).set(p + 'mlp.c_fc.bias', [cfg.nInner]);
    m.set(p + 'mlp.c_proj.weight', [cfg.nInner, d]).set(p + 'mlp.c_proj.bias', [d]);
  }
  if (!cfg.tieWordEmbeddings) m.set('lm_head.weight', [cfg.vocabSize, d]);
  return m;
}

/** [in, out] of a block projection, e.g. `h.3.mlp.c_fc` → [D, 4D]. */
export function projectionShape(cfg: Gpt2Config, path: string): [number, number] {
  const shape = gpt2ParameterShapes(cfg).get(path + '.weight');
  if (!shape || shape.length !== 2 || !/^h\.\d+\./.test(path)) throw new Error(`${path} is not a GPT-2 projection`);
  return [shape[0], shape[1]];
}
