// A Llama-family decoder (LlamaForCausalLM, Qwen2ForCausalLM, MistralForCausalLM, Qwen3ForCausalLM,
// Gemma3ForCausalLM) in tfjs-core with Hugging Face's parameter names: RMSNorm, rotary embeddings, grouped-query
// attention, SwiGLU MLP, optional q/k/v(/o) and MLP biases, tied or untied LM head, Mistral's sliding window, Qwen3's
// per-head q/k RMSNorm (plain tfjs ops, so LoRA gradients of q_proj and k_proj flow through it), and Gemma 3's
// differences: (1 + w) norms, embeddings × √hidden, norms around both sublayers, q/k norms, a tanh-GELU gated MLP,
// query_pre_attn_scalar, and local (sliding-window, own rope base) and global layers. Base weights are frozen plain tensors;
// gradients flow only to the LoRA tensors in ForwardOptions (the same LoraState as Gpt2Model, keyed by
// `layers.{i}.self_attn.q_proj` …). The public surface matches Gpt2Model so the SFT code runs on either.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { numel } from '../../proto/tensors';
import { LLAMA_PROJECTIONS, llamaParameterShapes, type LlamaConfig } from '../../proto/model/llama-config';
import type { ForwardOptions } from './gpt2';
import { customUnary, dropoutMask, geluNew, loraDown } from './layers';
import { mm } from './matmul';
import { ropeTables, rotateHalfMatrix } from './rope';

/** Buffers some checkpoints carry that are not parameters. */
const IGNORED = /(^|\.)rotary_emb\.inv_freq$/;

/** [rows, cols] row-major → [cols, rows]: HF's nn.Linear stores [out, in]; x @ Wᵀ becomes a plain matmul. */
function transposeData(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  return out;
}

export function rmsNorm(x: tf.Tensor2D, weight: tf.Tensor1D, eps: number): tf.Tensor2D {
  return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), weight) as tf.Tensor2D);
}

export function silu(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)) as tf.Tensor2D);
}

/** Additive mask [T, T]: -1e9 above the diagonal and, with a sliding window w, where i - j ≥ w (HF's rule). */
export function llamaMask(t: number, window?: number): tf.Tensor2D {
  const m = new Float32Array(t * t);
  for (let i = 0; i < t; i++) for (let j = 0; j < t; j++) if (j > i || (window !== undefined && i - j >= window)) m[i * t + j] = -1e9;
  return tf.tensor2d(m, [t, t]);
}

/** One kind of layer's rotary tables [1, T, 1, head_dim] and additive mask [T, T] for a sequence length T. */
interface AttentionTables {
  readonly cos: tf.Tensor4D;
  readonly sin: tf.Tensor4D;
  readonly mask: tf.Tensor2D;
}

export class LlamaModel {
  private readonly params: Map<string, tf.Tensor>;
  private readonly headT: tf.Tensor2D;
  private readonly headOp: (h: tf.Tensor2D) => tf.Tensor2D;
  private readonly rotate: tf.Tensor2D;
  /** Per sequence length: the tables of global layers (every layer outside Gemma 3) and of Gemma 3's local ones. */
  private readonly tables = new Map<number, { global: AttentionTables; local?: AttentionTables }>();

  private constructor(
    readonly config: LlamaConfig,
    params: Map<string, tf.Tensor>,
  ) {
    this.params = params;
    const head = this.headWeight();
    const headT = tf.transpose(head);
    this.headT = headT;
    this.headOp = customUnary((h: tf.Tensor2D) => ({
      value: tf.matMul(h, headT),
      gradFunc: (dy: tf.Tensor2D) => tf.matMul(dy, head),
    }));
    this.rotate = tf.tensor2d(rotateHalfMatrix(config.headDim), [config.headDim, config.headDim]);
  }

  /**
   * Builds the model from HF-named tensors (`model.` prefix optional). Projection weights are kept transposed
   * ([in, out]); a tied lm_head.weight and rotary buffers are skipped; anything unexpected, missing or
   * misshapen is an error naming the tensor.
   */
  static fromTensors(config: LlamaConfig, tensors: TensorList): LlamaModel {
    const expected = llamaParameterShapes(config);
    const found = new Map<string, NamedTensor>();
    for (const t of tensors) {
      const name = t.name.startsWith('model.') ? t.name.slice('model.'.length) : t.name;
      if (IGNORED.test(name)) continue;
      if (name === 'lm_head.weight' && config.tieWordEmbeddings) continue;
      const shape = expected.get(name);
      if (!shape) throw new Error(`unexpected tensor '${t.name}' for a ${config.modelType} model with this config`);
      if (shape.join(',') !== t.shape.join(',')) throw new Error(`tensor '${t.name}' has shape [${t.shape}], config implies [${shape}]`);
      if (found.has(name)) throw new Error(`tensor '${name}' appears twice`);
      found.set(name, t);
    }
    const missing = [...expected.keys()].filter((k) => !found.has(k));
    if (missing.length > 0) throw new Error(`missing ${config.modelType} tensors: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`);
    const params = new Map<string, tf.Tensor>();
    for (const [name, t] of found) {
      if (/^layers\.\d+\..*_proj\.weight$/.test(name)) {
        params.set(name, tf.tensor2d(transposeData(t.data, t.shape[0], t.shape[1]), [t.shape[1], t.shape[0]]));
      } else {
        params.set(name, tf.tensor(t.data, [...t.shape], 'float32'));
      }
    }
    return new LlamaModel(config, params);
  }

  /** The frozen parameters with HF's saved names (`model.layers.0.…`, `lm_head.weight`), sorted, [out, in] again. */
  async namedWeights(): Promise<NamedTensor[]> {
    const out: NamedTensor[] = [];
    for (const [name, shape] of llamaParameterShapes(this.config)) {
      const data = new Float32Array(await this.p(name).data());
      const hf = /_proj\.weight$/.test(name) ? transposeData(data, shape[1], shape[0]) : data;
      if (hf.length !== numel(shape)) throw new Error(`internal: ${name} size`);
      out.push({ name: name === 'lm_head.weight' ? name : 'model.' + name, dtype: 'float32', shape, data: hf });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Module paths of all layer projections (`layers.{i}.self_attn.q_proj`, …), the candidates for LoRA. */
  projectionPaths(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.config.nLayer; i++) for (const p of LLAMA_PROJECTIONS) out.push(`layers.${i}.${p}`);
    return out;
  }

  private p<R extends tf.Rank>(name: string): tf.Tensor<R> {
    const t = this.params.get(name);
    if (!t) throw new Error(`${this.config.modelType} parameter ${name} is missing`);
    return t as tf.Tensor<R>;
  }

  /** A projection's weight with ΔW ([out, in], PEFT's B·A) added, for ForwardOptions.merged (stored [in, out]: ΔWᵀ). */
  mergedWeights(path: string, delta: tf.Tensor2D): Map<string, tf.Tensor2D> {
    const name = `${path}.weight`;
    return new Map([[name, tf.tidy(() => tf.add<tf.Tensor2D>(this.p<tf.Rank.R2>(name), tf.transpose(delta)))]]);
  }

  /** The rotary tables and masks for sequence length T, made once per T and kept. */
  private tablesFor(seq: number): { global: AttentionTables; local?: AttentionTables } {
    let e = this.tables.get(seq);
    if (!e) {
      const cfg = this.config;
      const make = (rope: LlamaConfig, window?: number): AttentionTables => {
        const { cos, sin } = ropeTables(rope, seq);
        const hd = cfg.headDim;
        return tf.tidy(() => ({
          cos: tf.keep(tf.tensor4d(cos, [1, seq, 1, hd])),
          sin: tf.keep(tf.tensor4d(sin, [1, seq, 1, hd])),
          mask: tf.keep(llamaMask(seq, window)),
        }));
      };
      const g = cfg.gemma3;
      // Gemma 3's local layers: their own rope base (default rope, rope_scaling is the global layers') and window.
      const local = g && make({ ...cfg, ropeTheta: g.localRopeTheta, rope: { type: 'default' } }, g.slidingWindow);
      e = { global: make(cfg, cfg.slidingWindow), ...(local ? { local } : {}) };
      this.tables.set(seq, e);
    }
    return e;
  }

  /** An RMSNorm by its weight's name; Gemma 3 stores w for a scale of (1 + w), added in float32 as transformers does. */
  private norm(name: string, x: tf.Tensor2D): tf.Tensor2D {
    const w = this.p<tf.Rank.R1>(name + '.weight');
    return tf.tidy(() => rmsNorm(x, this.config.gemma3 ? tf.add(w, 1) : w, this.config.rmsNormEps));
  }

  /** Final hidden states after the last RMSNorm, [B, T, D], for int32 token ids [B, T]. */
  hiddenStates(inputIds: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor3D {
    const [batch, seq] = inputIds.shape;
    const cfg = this.config;
    if (inputIds.dtype !== 'int32') throw new Error(`input ids must be int32, got ${inputIds.dtype}`);
    const tables = this.tablesFor(seq);
    const gemma = cfg.gemma3;
    return tf.tidy(() => {
      const d = cfg.nEmbd;
      let x = tf.gather(this.p<tf.Rank.R2>('embed_tokens.weight'), tf.reshape(inputIds, [batch * seq])) as tf.Tensor2D;
      // Gemma 3 scales the embeddings by √hidden_size (a float32 scalar, as transformers' buffer is in float32).
      if (gemma) x = tf.mul(x, Math.sqrt(d));
      for (let i = 0; i < cfg.nLayer; i++) {
        const l = `layers.${i}.`;
        const a = this.norm(l + 'input_layernorm', x);
        const q = this.headNorm(l + 'self_attn.q_norm', this.linear(l + 'self_attn.q_proj', a, opts, seq));
        const k = this.headNorm(l + 'self_attn.k_norm', this.linear(l + 'self_attn.k_proj', a, opts, seq));
        const v = this.linear(l + 'self_attn.v_proj', a, opts, seq);
        const ctx = this.attention(q, k, v, batch, seq, (gemma?.slidingLayers[i] && tables.local) || tables.global);
        const attn = this.linear(l + 'self_attn.o_proj', ctx, opts, seq);
        // Llama: post_attention_layernorm is the MLP's input norm. Gemma 3: it norms the attention output, and
        // pre_/post_feedforward_layernorm norm the MLP's input and output.
        x = tf.add(x, gemma ? this.norm(l + 'post_attention_layernorm', attn) : attn);
        const m = this.norm(l + (gemma ? 'pre_feedforward_layernorm' : 'post_attention_layernorm'), x);
        const act = gemma ? geluNew : silu; // gelu_pytorch_tanh is the tanh GELU, gelu_new's function
        const gated = tf.mul(act(this.linear(l + 'mlp.gate_proj', m, opts, seq)), this.linear(l + 'mlp.up_proj', m, opts, seq)) as tf.Tensor2D;
        const mlp = this.linear(l + 'mlp.down_proj', gated, opts, seq);
        x = tf.add(x, gemma ? this.norm(l + 'post_feedforward_layernorm', mlp) : mlp);
      }
      return tf.reshape(this.norm('norm', x), [batch, seq, d]) as tf.Tensor3D;
    });
  }

  /**
   * Grouped-query attention: the G = nHead / nKvHead query heads sharing a key/value head are stacked along the
   * time axis ([B, KV, G·T, hd]), so keys and values are used as they are instead of repeated (HF's repeat_kv
   * gives query head h the kv head ⌊h / G⌋, which is this grouping).
   */
  private attention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, batch: number, seq: number, { cos, sin, mask }: AttentionTables): tf.Tensor2D {
    const { nHead, nKvHead, headDim: hd, gemma3 } = this.config;
    const g = nHead / nKvHead;
    const rope = (x: tf.Tensor2D, heads: number): tf.Tensor4D => {
      const x4 = tf.reshape(x, [batch, seq, heads, hd]);
      const rot = tf.reshape(tf.matMul(tf.reshape(x, [batch * seq * heads, hd]), this.rotate), [batch, seq, heads, hd]);
      return tf.transpose(tf.add(tf.mul(x4, cos), tf.mul(rot, sin)), [0, 2, 1, 3]) as tf.Tensor4D;
    };
    const qh = tf.reshape(rope(q, nHead), [batch, nKvHead, g * seq, hd]);
    const kh = rope(k, nKvHead);
    const vh = tf.transpose(tf.reshape(v, [batch, seq, nKvHead, hd]), [0, 2, 1, 3]);
    const scores = tf.mul(tf.matMul(qh, kh, false, true), gemma3 ? gemma3.queryPreAttnScalar ** -0.5 : 1 / Math.sqrt(hd));
    const probs = tf.softmax(tf.add(tf.reshape(scores, [batch, nKvHead, g, seq, seq]), mask));
    const ctx = tf.matMul(tf.reshape(probs, [batch, nKvHead, g * seq, seq]), vh); // [B, KV, G·T, hd]
    return tf.reshape(tf.transpose(tf.reshape(ctx, [batch, nHead, seq, hd]), [0, 2, 1, 3]), [batch * seq, nHead * hd]) as tf.Tensor2D;
  }

  /** Qwen3's and Gemma 3's q_norm / k_norm: RMSNorm over each head's head_dim slice of [N, heads·head_dim]. */
  private headNorm(path: string, x: tf.Tensor2D): tf.Tensor2D {
    if (!this.config.qkNorm) return x;
    const hd = this.config.headDim;
    const [n, w] = x.shape;
    return tf.tidy(() => tf.reshape(this.norm(path, tf.reshape(x, [(n * w) / hd, hd])), [n, w]));
  }

  /** x @ Wᵀ (+ b) (+ dropout(x) @ Aᵀ @ Bᵀ · scaling) for one projection. */
  private linear(path: string, x: tf.Tensor2D, opts: ForwardOptions, seq: number): tf.Tensor2D {
    return tf.tidy(() => {
      let y = tf.matMul(x, opts.merged?.get(path + '.weight') ?? this.p<tf.Rank.R2>(path + '.weight'));
      const bias = this.params.get(path + '.bias');
      if (bias) y = tf.add(y, bias);
      const mod = opts.lora?.modules.get(path);
      if (mod && opts.lora) {
        const p = opts.lora.dropout;
        const dm = opts.dropoutStep !== undefined && p > 0 ? dropoutMask(opts.dropoutStep, path, x.shape[0], x.shape[1], seq, p) : undefined;
        const low = loraDown(x, { a: mod.a, dropoutMask: dm });
        y = tf.add(y, mm(low, tf.mul(mod.b, opts.lora.scaling), false, true));
      }
      return y as tf.Tensor2D;
    });
  }

  /** LM head on selected hidden rows: [N, D] → logits [N, V]. */
  lmHead(hidden: tf.Tensor2D): tf.Tensor2D {
    return this.headOp(hidden);
  }

  /** The logit of one given token per row without the N×V matmul (see Gpt2Model.tokenLogits). */
  tokenLogits(hidden: tf.Tensor2D, tokenIds: tf.Tensor1D): tf.Tensor1D {
    return tf.tidy(() => tf.sum(tf.mul(hidden, tf.gather(this.headWeight(), tokenIds)), 1) as tf.Tensor1D);
  }

  private headWeight(): tf.Tensor2D {
    return this.config.tieWordEmbeddings ? this.p<tf.Rank.R2>('embed_tokens.weight') : this.p<tf.Rank.R2>('lm_head.weight');
  }

  /** Full logits [B, T, V]. */
  forward(inputIds: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor3D {
    return tf.tidy(() => {
      const h = this.hiddenStates(inputIds, opts);
      const [b, t, d] = h.shape;
      return tf.reshape(this.lmHead(tf.reshape(h, [b * t, d])), [b, t, this.config.vocabSize]) as tf.Tensor3D;
    });
  }

  dispose(): void {
    this.headT.dispose();
    this.rotate.dispose();
    for (const e of this.tables.values()) for (const t of [e.global, e.local]) if (t) [t.cos, t.sin, t.mask].forEach((x) => x.dispose());
    this.tables.clear();
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
  }
}
