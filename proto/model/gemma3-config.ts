// Gemma 3 text models (model_type gemma3_text, transformers' Gemma3ForCausalLM: google/gemma-3-270m, -1b) as a
// member of the Llama family: the attention settings Gemma 3 adds to LlamaConfig and how config.json spells them,
// both the hub's classic keys (rope_theta, rope_local_base_freq, rope_scaling, sliding_window_pattern) and
// transformers 5's (layer_types, rope_parameters per layer type). What model_type gemma3_text implies beyond these
// (client-sdk/model/llama.ts does it): RMSNorm weights applied as (1 + w), embeddings times √hidden_size, four
// norms a layer, per-head q/k norms, a gelu_pytorch_tanh gated MLP, a tied head by default.
import { parseRope, ropeScalingJson, type RopeScaling } from './rope-config';

export interface Gemma3Attention {
  /** Per layer: true for a local (sliding-window) layer, false for a global one (transformers' layer_types). */
  readonly slidingLayers: readonly boolean[];
  /** In a local layer a query attends to the keys at distance < slidingWindow. */
  readonly slidingWindow: number;
  /** Local layers' rotary base (rope_local_base_freq), default rope; global layers use ropeTheta and rope. */
  readonly localRopeTheta: number;
  /** Attention scores are scaled by query_pre_attn_scalar^-0.5, not head_dim^-0.5. */
  readonly queryPreAttnScalar: number;
}

/** Gemma3TextConfig's own fields that fedtune reads, beside those every Llama-family config has; others are refused. */
export const GEMMA3_FIELDS = [
  'hidden_activation',
  'rope_local_base_freq',
  'query_pre_attn_scalar',
  'sliding_window_pattern',
  'final_logit_softcapping',
  'attn_logit_softcapping',
  'use_bidirectional_attention',
  // Written by transformers beside layer_types, never read back (the pattern it reads is sliding_window_pattern),
  // and generate()'s cache choice: neither changes the forward pass.
  '_sliding_window_pattern',
  'cache_implementation',
];

/** Gemma3TextConfig's own values for absent fields (transformers' configuration_gemma3.py). */
export const GEMMA3_DEFAULTS = {
  numKeyValueHeads: 4,
  headDim: 256,
  maxPositionEmbeddings: 131072,
  tieWordEmbeddings: true,
  ropeTheta: 1e6,
  localRopeTheta: 1e4,
  queryPreAttnScalar: 256,
  slidingWindow: 4096,
  slidingWindowPattern: 6,
} as const;

type Json = Record<string, unknown>;

function fail(msg: string): never {
  throw new Error(`config.json: ${msg}`);
}

/** A config value in a message: strings as they are, anything else as JSON. */
function show(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function positive(v: unknown, what: string): number {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) fail(`${what} must be a positive number`);
  return v;
}

function positiveInt(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) fail(`${what} must be a positive integer`);
  return v;
}

/**
 * The global layers' rope: Gemma 3 ships default (1B and smaller) and linear (4B and up). Dynamic and llama3 go
 * through transformers' per-layer-type rope code, which no fixture here checks: refused rather than guessed.
 */
function globalRope(r: { theta: number; rope: RopeScaling }): { theta: number; rope: RopeScaling } {
  if (r.rope.type !== 'default' && r.rope.type !== 'linear')
    fail(`rope_scaling type '${r.rope.type}' is not supported for gemma3_text (supported: default, linear)`);
  return r;
}

/** The global layers' rope and theta, and the local layers' theta, from either spelling (never both). */
function parseGemmaRope(c: Json): { theta: number; rope: RopeScaling; localTheta: number } {
  const rp = c.rope_parameters;
  if (rp === undefined || rp === null) {
    const { theta, rope } = globalRope(parseRope({ rope_theta: c.rope_theta, rope_scaling: c.rope_scaling }, GEMMA3_DEFAULTS.ropeTheta));
    return { theta, rope, localTheta: positive(c.rope_local_base_freq ?? GEMMA3_DEFAULTS.localRopeTheta, 'rope_local_base_freq') };
  }
  if (typeof rp !== 'object' || Array.isArray(rp)) fail('rope_parameters must be an object');
  const per = rp as Json;
  const other = Object.keys(per).filter((k) => k !== 'full_attention' && k !== 'sliding_attention');
  if (other.length > 0) fail(`rope_parameters must map full_attention and sliding_attention (found ${other.join(', ')})`);
  for (const k of ['rope_theta', 'rope_scaling', 'rope_local_base_freq']) {
    if (c[k] !== undefined && c[k] !== null) fail(`rope_parameters and ${k} are both set; keep one`);
  }
  const { theta, rope } = globalRope(parseRope({ rope_parameters: per.full_attention ?? { rope_type: 'default' } }, GEMMA3_DEFAULTS.ropeTheta));
  const local = (per.sliding_attention ?? {}) as Json;
  if (typeof local !== 'object' || Array.isArray(local)) fail('rope_parameters.sliding_attention must be an object');
  const localType = local.rope_type ?? local.type ?? 'default';
  if (localType !== 'default') fail(`rope_parameters.sliding_attention rope_type '${show(localType)}' is not supported (only default)`);
  const extra = Object.keys(local).filter((k) => !['rope_type', 'type', 'rope_theta'].includes(k) && local[k] !== null);
  if (extra.length > 0) fail(`rope_parameters.sliding_attention field(s) ${extra.join(', ')} are not supported`);
  return { theta, rope, localTheta: positive(local.rope_theta ?? GEMMA3_DEFAULTS.localRopeTheta, 'rope_parameters.sliding_attention.rope_theta') };
}

function parseLayerTypes(c: Json, nLayer: number): boolean[] {
  const lt = c.layer_types;
  if (lt !== undefined && lt !== null) {
    // transformers takes layer_types over sliding_window_pattern when both are given.
    if (!Array.isArray(lt) || lt.length !== nLayer || lt.some((t) => t !== 'full_attention' && t !== 'sliding_attention'))
      fail(`layer_types must list full_attention or sliding_attention for each of the ${nLayer} layers`);
    return lt.map((t) => t === 'sliding_attention');
  }
  const pattern = positiveInt(c.sliding_window_pattern ?? GEMMA3_DEFAULTS.slidingWindowPattern, 'sliding_window_pattern');
  // Gemma3TextConfig: every pattern-th layer (1-based) is global, the rest slide.
  return Array.from({ length: nLayer }, (_, i) => (i + 1) % pattern !== 0);
}

/** The Gemma 3 settings of a gemma3_text config.json (the fields LlamaConfig shares are read by parseLlamaConfig). */
export function parseGemma3(c: Json, nLayer: number): { gemma3: Gemma3Attention; theta: number; rope: RopeScaling } {
  const act = c.hidden_activation ?? 'gelu_pytorch_tanh';
  if (act !== 'gelu_pytorch_tanh') fail(`hidden_activation '${show(act)}' is not supported (only gelu_pytorch_tanh)`);
  for (const k of ['final_logit_softcapping', 'attn_logit_softcapping']) {
    if (c[k] !== undefined && c[k] !== null) fail(`${k} ${show(c[k])} is not supported (Gemma 3 ships null; fedtune has no softcapping)`);
  }
  if (c.use_bidirectional_attention !== undefined && c.use_bidirectional_attention !== false)
    fail('use_bidirectional_attention is not supported (only causal attention)');
  if (c.sliding_window === null) fail('sliding_window must be a positive integer (Gemma 3 has sliding layers)');
  const { theta, rope, localTheta } = parseGemmaRope(c);
  return {
    theta,
    rope,
    gemma3: {
      slidingLayers: parseLayerTypes(c, nLayer),
      slidingWindow: positiveInt(c.sliding_window ?? GEMMA3_DEFAULTS.slidingWindow, 'sliding_window'),
      localRopeTheta: localTheta,
      queryPreAttnScalar: positive(c.query_pre_attn_scalar ?? GEMMA3_DEFAULTS.queryPreAttnScalar, 'query_pre_attn_scalar'),
    },
  };
}

/** config.json's Gemma 3 keys, in the hub's classic spelling (transformers 4.5x and 5 both read it). */
export function gemma3ConfigJson(g: Gemma3Attention, theta: number, rope: RopeScaling): Record<string, unknown> {
  return {
    hidden_activation: 'gelu_pytorch_tanh',
    query_pre_attn_scalar: g.queryPreAttnScalar,
    sliding_window: g.slidingWindow,
    layer_types: g.slidingLayers.map((s) => (s ? 'sliding_attention' : 'full_attention')),
    rope_theta: theta,
    rope_scaling: ropeScalingJson(rope),
    rope_local_base_freq: g.localRopeTheta,
    final_logit_softcapping: null,
    attn_logit_softcapping: null,
  };
}
