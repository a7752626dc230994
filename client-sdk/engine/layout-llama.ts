// The Llama family's packing for the engine: frozen projection weights transposed to [in, out] (the orientation
// the GPT-2 kernels use, so every matmul spec reads the same way) in `w`, RMSNorm weights and the optional
// biases (Qwen2's q/k/v, attention_bias, mlp_bias) and Qwen3's per-head q/k norm weights in `vec`, and the flat adapter's offsets for the seven LoRA
// module names. Gemma 3: its two feed-forward norms follow the layer's two, and every norm weight w goes up as the
// scale it stands for, 1 + w (float32, as model/llama.ts adds it), so the norm kernels stay Llama's. Nothing reads
// `vec` back as weights (LoRA never trains a norm; FLoRA merges touch `w` only). Pure arithmetic, so CI checks it
// without a GPU.
import type { NamedTensor } from '../../proto/tensors';
import { LLAMA_PROJECTIONS, type LlamaConfig } from '../../proto/model/llama-config';
import { adapterOffsets } from './layout';

export type LlamaProjection = (typeof LLAMA_PROJECTIONS)[number];

export interface LlamaProjLayout {
  readonly layer: number;
  readonly proj: LlamaProjection;
  readonly inF: number;
  readonly outF: number;
  /** Element offset of W [in, out] in `w`; of the bias in `vec` (undefined when the projection has none). */
  readonly w: number;
  readonly bias?: number;
  /** LoRA: offsets of A [r, in] and B [out, r] in the flat adapter, and of its low-rank input in `low`. */
  readonly lora?: { readonly a: number; readonly b: number; readonly low: number };
}

export interface LlamaLayerLayout {
  /** RMSNorm weight offsets in `vec`. */
  readonly inputNorm: number;
  readonly postNorm: number;
  /** Gemma 3's pre_feedforward_layernorm (the MLP's input norm) and post_feedforward_layernorm; undefined otherwise. */
  readonly preFfnNorm?: number;
  readonly postFfnNorm?: number;
  /** Qwen3's q_norm / k_norm weights ([head_dim] each) in `vec`; undefined without qkNorm. */
  readonly qNorm?: number;
  readonly kNorm?: number;
  readonly proj: Readonly<Record<LlamaProjection, LlamaProjLayout>>;
}

export interface LlamaModelLayout {
  readonly family: 'llama';
  readonly layers: readonly LlamaLayerLayout[];
  readonly norm: number;
  readonly wSize: number;
  readonly vecSize: number;
  readonly adapterSize: number;
  readonly loraModules: number;
  readonly r: number;
}

/** [in, out] of each projection of a layer. */
export function llamaProjDims(cfg: LlamaConfig): Record<LlamaProjection, [number, number]> {
  const D = cfg.nEmbd;
  const Q = cfg.nHead * cfg.headDim;
  const KV = cfg.nKvHead * cfg.headDim;
  const F = cfg.intermediateSize;
  return {
    'self_attn.q_proj': [D, Q],
    'self_attn.k_proj': [D, KV],
    'self_attn.v_proj': [D, KV],
    'self_attn.o_proj': [Q, D],
    'mlp.gate_proj': [D, F],
    'mlp.up_proj': [D, F],
    'mlp.down_proj': [F, D],
  };
}

function hasBias(cfg: LlamaConfig, p: LlamaProjection): boolean {
  if (p.startsWith('mlp.')) return cfg.mlpBias;
  return p === 'self_attn.o_proj' ? cfg.oBias : cfg.qkvBias;
}

export function llamaLayout(cfg: LlamaConfig, adapter: readonly NamedTensor[], rows: number): LlamaModelLayout {
  const D = cfg.nEmbd;
  const offs = adapterOffsets(adapter);
  const firstA = [...offs].find(([k]) => k.endsWith(':A'));
  const r = firstA ? firstA[1].shape[0] : 0;
  const dims = llamaProjDims(cfg);
  let w = 0;
  let vec = 0;
  let mods = 0;
  const layers: LlamaLayerLayout[] = [];
  for (let l = 0; l < cfg.nLayer; l++) {
    const inputNorm = vec;
    const postNorm = vec + D;
    vec += 2 * D;
    let ffn: { preFfnNorm: number; postFfnNorm: number } | undefined;
    if (cfg.gemma3) {
      ffn = { preFfnNorm: vec, postFfnNorm: vec + D };
      vec += 2 * D;
    }
    let qNorm: number | undefined;
    let kNorm: number | undefined;
    if (cfg.qkNorm) {
      qNorm = vec;
      kNorm = vec + cfg.headDim;
      vec += 2 * cfg.headDim;
    }
    const proj = {} as Record<LlamaProjection, LlamaProjLayout>;
    for (const p of LLAMA_PROJECTIONS) {
      const [inF, outF] = dims[p];
      const a = offs.get(`layers.${l}.${p}:A`);
      const b = offs.get(`layers.${l}.${p}:B`);
      if ((a === undefined) !== (b === undefined)) throw new Error(`LoRA module layers.${l}.${p} lacks A or B`);
      const lora = a && b ? { a: a.offset, b: b.offset, low: mods++ * rows * r } : undefined;
      let bias: number | undefined;
      if (hasBias(cfg, p)) {
        bias = vec;
        vec += outF;
      }
      proj[p] = { layer: l, proj: p, inF, outF, w, bias, lora };
      w += inF * outF;
    }
    layers.push({ inputNorm, postNorm, ...ffn, ...(qNorm === undefined ? {} : { qNorm, kNorm }), proj });
  }
  const norm = vec;
  vec += D;
  const adapterSize = adapter.reduce((s, t) => s + t.data.length, 0);
  return { family: 'llama', layers, norm, wSize: w, vecSize: vec, adapterSize, loraModules: mods, r };
}

/** nn.Linear's [out, in] `src` written transposed, [in, out], into `dst` at `at`. */
export function transposeInto(dst: Float32Array, at: number, src: Float32Array, outF: number, inF: number): void {
  for (let o = 0; o < outF; o++) for (let i = 0; i < inF; i++) dst[at + i * outF + o] = src[o * inF + i];
}

/**
 * Fills `w` and `vec` from HF-named weights (`model.` prefix optional; nn.Linear's [out, in] transposed to
 * [in, out]), and returns the embedding and the LM head ([V, D]; the embedding itself when tied).
 */
export function packLlamaWeights(
  cfg: LlamaConfig,
  layout: LlamaModelLayout,
  weights: readonly NamedTensor[],
): { w: Float32Array; vec: Float32Array; embed: Float32Array; head: Float32Array } {
  const byName = new Map<string, Float32Array>();
  for (const t of weights) byName.set(t.name.startsWith('model.') ? t.name.slice(6) : t.name, t.data);
  const get = (name: string): Float32Array => {
    const t = byName.get(name);
    if (!t) throw new Error(`weight ${name} missing`);
    return t;
  };
  if (cfg.nLayer !== layout.layers.length) throw new Error('layout does not match the config');
  const w = new Float32Array(layout.wSize);
  const vec = new Float32Array(layout.vecSize);
  // A norm's scale: w, or Gemma 3's 1 + w (Math.fround: float32's sum, the one tfjs and transformers compute).
  const setNorm = (name: string, at: number, n: number): void => {
    const t = get(name);
    if (t.length !== n) throw new Error(`weight ${name.replace(/\.weight$/, '')} has ${t.length} values, expected ${n}`);
    vec.set(cfg.gemma3 ? t.map((x) => Math.fround(1 + x)) : t, at);
  };
  const D = cfg.nEmbd;
  layout.layers.forEach((L, l) => {
    setNorm(`layers.${l}.input_layernorm.weight`, L.inputNorm, D);
    setNorm(`layers.${l}.post_attention_layernorm.weight`, L.postNorm, D);
    for (const [n, at, len] of [
      ['pre_feedforward_layernorm', L.preFfnNorm, D],
      ['post_feedforward_layernorm', L.postFfnNorm, D],
      ['self_attn.q_norm', L.qNorm, cfg.headDim],
      ['self_attn.k_norm', L.kNorm, cfg.headDim],
    ] as const)
      if (at !== undefined) setNorm(`layers.${l}.${n}.weight`, at, len);
    for (const p of LLAMA_PROJECTIONS) {
      const P = L.proj[p];
      const src = get(`layers.${l}.${p}.weight`); // [out, in]
      if (src.length !== P.inF * P.outF) throw new Error(`weight layers.${l}.${p} has ${src.length} values, expected ${P.inF * P.outF}`);
      transposeInto(w, P.w, src, P.outF, P.inF);
      if (P.bias !== undefined) vec.set(get(`layers.${l}.${p}.bias`), P.bias);
    }
  });
  setNorm('norm.weight', layout.norm, D);
  const embed = get('embed_tokens.weight');
  const head = cfg.tieWordEmbeddings ? embed : get('lm_head.weight');
  return { w, vec, embed, head };
}
