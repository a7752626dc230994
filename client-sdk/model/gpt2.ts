// A GPT-2 decoder (GPT2LMHeadModel) in tfjs-core whose parameters carry Hugging Face's names and layouts, so
// base models load from HF safetensors unchanged. Base weights are plain (non-variable) tensors: they are frozen,
// and gradients only ever flow to LoRA tensors passed in ForwardOptions.
//
// The LM head (a matmul over the whole vocabulary) dominates the cost, so the model exposes hidden states and
// lets the loss apply the head only at the positions it needs (see lmHead).
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { readSafetensors } from '../../proto/safetensors';
import { BLOCK_PROJECTIONS, gpt2ParameterShapes, type Gpt2Config } from '../../proto/model/gpt2-config';
import { causalAttention, causalMask, conv1d, customUnary, dropoutMask, geluNew, layerNorm, loraDown } from './layers';

/** LoRA tensors keyed by module path (`h.0.attn.c_attn`), A [r, in], B [out, r]. */
export interface LoraState {
  readonly modules: ReadonlyMap<string, { readonly a: tf.Tensor2D; readonly b: tf.Tensor2D }>;
  readonly scaling: number;
  /** Dropout probability on the LoRA input, applied only when ForwardOptions.dropoutStep is given. */
  readonly dropout: number;
}

export interface ForwardOptions {
  readonly lora?: LoraState;
  /**
   * The key of this training step's LoRA dropout masks (dropout-mask.ts: dropoutStepKey(plan seed, step)); pass it
   * only while training (dropout is off otherwise).
   */
  readonly dropoutStep?: number;
  /**
   * Projection weights to use instead of the model's, by parameter name (mergedWeights): a FLoRA site's base with the
   * version's delta merged in, W0 + ΔW (client-sdk/sft/flora-site.ts). Frozen like the weights they replace.
   */
  readonly merged?: ReadonlyMap<string, tf.Tensor2D>;
}

/** HF buffers that may appear in GPT-2 checkpoints but are not parameters. */
const IGNORED_SUFFIXES = ['.attn.bias', '.attn.masked_bias'];
const QKV_SUFFIX = [':q', ':k', ':v'] as const;

/** Splits a row-major [rows, cols] array into `parts` column blocks. */
function splitColumns(data: Float32Array, rows: number, cols: number, parts: number): Float32Array[] {
  const w = cols / parts;
  return Array.from({ length: parts }, (_, j) => {
    const out = new Float32Array(rows * w);
    for (let r = 0; r < rows; r++) out.set(data.subarray(r * cols + j * w, r * cols + (j + 1) * w), r * w);
    return out;
  });
}

export class Gpt2Model {
  private readonly params: Map<string, tf.Tensor>;
  /**
   * The LM head transposed, [D, V], kept next to the [V, D] table: logits = h @ headT is an untransposed matmul
   * (fast on wasm, see matmul.ts) and its gradient dh = dlogits @ head is one too. Costs one extra copy of wte.
   */
  private readonly headT: tf.Tensor2D;
  private readonly headOp: (h: tf.Tensor2D) => tf.Tensor2D;

  private constructor(
    readonly config: Gpt2Config,
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
  }

  /**
   * Builds the model from HF-named tensors. Names may carry a `transformer.` prefix; attention mask buffers and
   * a tied lm_head.weight are ignored; anything else unexpected, missing or misshapen is an error.
   */
  static fromTensors(config: Gpt2Config, tensors: TensorList): Gpt2Model {
    const expected = gpt2ParameterShapes(config);
    const found = new Map<string, NamedTensor>();
    for (const t of tensors) {
      const name = t.name.startsWith('transformer.') ? t.name.slice('transformer.'.length) : t.name;
      if (IGNORED_SUFFIXES.some((s) => name.endsWith(s))) continue;
      if (name === 'lm_head.weight' && config.tieWordEmbeddings) continue;
      const shape = expected.get(name);
      if (!shape) throw new Error(`unexpected tensor '${t.name}' for a GPT-2 with this config`);
      if (shape.join(',') !== t.shape.join(',')) {
        throw new Error(`tensor '${t.name}' has shape [${t.shape}], config implies [${shape}]`);
      }
      if (found.has(name)) throw new Error(`tensor '${name}' appears twice`);
      found.set(name, t);
    }
    const missing = [...expected.keys()].filter((k) => !found.has(k));
    if (missing.length > 0) throw new Error(`missing GPT-2 tensors: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`);
    const params = new Map<string, tf.Tensor>();
    for (const [name, t] of found) {
      if (/\.attn\.c_attn\.(weight|bias)$/.test(name)) {
        // Stored as separate q, k, v parts: slicing the fused [N, 3D] output costs more than three matmuls.
        const rows = t.shape.length === 2 ? t.shape[0] : 1;
        const cols = t.shape[t.shape.length - 1];
        splitColumns(t.data, rows, cols, 3).forEach((part, j) => {
          const shape = t.shape.length === 2 ? [rows, cols / 3] : [cols / 3];
          params.set(`${name}${QKV_SUFFIX[j]}`, tf.tensor(part, shape, 'float32'));
        });
      } else {
        params.set(name, tf.tensor(t.data, [...t.shape], 'float32'));
      }
    }
    return new Gpt2Model(config, params);
  }

  static fromSafetensors(config: Gpt2Config, bytes: Uint8Array): Gpt2Model {
    return Gpt2Model.fromTensors(config, readSafetensors(bytes).tensors);
  }

  /**
   * The frozen parameters with HF names (no prefix), sorted, copied out of the backend. Asynchronous because
   * GPU backends cannot read synchronously in Node (webgpu's dataSync needs OffscreenCanvas).
   */
  async namedWeights(): Promise<NamedTensor[]> {
    const out: NamedTensor[] = [];
    const names = [...gpt2ParameterShapes(this.config)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [name, shape] of names) {
      const t =
        this.params.get(name) ??
        tf.concat(
          QKV_SUFFIX.map((s) => this.p(name + s)),
          -1,
        );
      const data = new Float32Array(await t.data());
      if (!this.params.has(name)) t.dispose();
      out.push({ name, dtype: 'float32', shape, data });
    }
    return out;
  }

  /** Module paths of all block projections (`h.{i}.attn.c_attn`, …), the candidates for LoRA. */
  projectionPaths(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.config.nLayer; i++) for (const p of BLOCK_PROJECTIONS) out.push(`h.${i}.${p}`);
    return out;
  }

  private p<R extends tf.Rank>(name: string): tf.Tensor<R> {
    const t = this.params.get(name);
    if (!t) throw new Error(`GPT-2 parameter ${name} is missing`);
    return t as tf.Tensor<R>;
  }

  /** A projection weight, merged (ForwardOptions.merged) when the forward pass has one. */
  private w(name: string, opts: ForwardOptions): tf.Tensor2D {
    return opts.merged?.get(name) ?? this.p<tf.Rank.R2>(name);
  }

  /**
   * A projection's weight(s) with ΔW ([out, in], PEFT's B·A) added, by parameter name, for ForwardOptions.merged:
   * Conv1D stores [in, out], so ΔWᵀ; c_attn's three parts take ΔWᵀ's q, k and v columns. The caller disposes them.
   */
  mergedWeights(path: string, delta: tf.Tensor2D): Map<string, tf.Tensor2D> {
    const names = path.endsWith('.attn.c_attn') ? QKV_SUFFIX.map((s) => `${path}.weight${s}`) : [`${path}.weight`];
    const d = delta.shape[0] / names.length;
    const merged = tf.tidy(() => {
      const dT = tf.transpose(delta);
      return names.map((n, j) => tf.add<tf.Tensor2D>(this.p<tf.Rank.R2>(n), names.length === 1 ? dT : tf.slice(dT, [0, j * d], [dT.shape[0], d])));
    });
    return new Map(names.map((n, j) => [n, merged[j]]));
  }

  /** Final hidden states after ln_f, [B, T, D], for int32 token ids [B, T] (T ≤ n_positions). */
  hiddenStates(inputIds: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor3D {
    const [batch, seq] = inputIds.shape;
    const cfg = this.config;
    if (seq > cfg.nPositions) throw new Error(`sequence length ${seq} exceeds n_positions ${cfg.nPositions}`);
    if (inputIds.dtype !== 'int32') throw new Error(`input ids must be int32, got ${inputIds.dtype}`);
    return tf.tidy(() => {
      const d = cfg.nEmbd;
      // Embedding lookup by gather is fine: no gradient is taken with respect to the frozen tables.
      const tok = tf.gather(this.p<tf.Rank.R2>('wte.weight'), tf.reshape(inputIds, [batch * seq]));
      const pos = tf.slice(this.p<tf.Rank.R2>('wpe.weight'), [0, 0], [seq, d]);
      let x = tf.reshape(tf.add(tf.reshape(tok, [batch, seq, d]), pos), [batch * seq, d]) as tf.Tensor2D;
      const mask = causalMask(seq);
      const headDim = d / cfg.nHead;
      for (let i = 0; i < cfg.nLayer; i++) {
        const h = `h.${i}.`;
        let scale = cfg.scaleAttnWeights ? 1 / Math.sqrt(headDim) : 1;
        if (cfg.scaleAttnByInverseLayerIdx) scale /= i + 1;
        const a = layerNorm(x, this.p(h + 'ln_1.weight'), this.p(h + 'ln_1.bias'), cfg.layerNormEpsilon);
        const [q, k, v] = this.qkv(h + 'attn.c_attn', a, opts, seq);
        const ctx = causalAttention(q, k, v, { batch, seq, nHead: cfg.nHead }, scale, mask);
        x = tf.add(x, this.proj(h + 'attn.c_proj', ctx, opts, seq));
        const m = layerNorm(x, this.p(h + 'ln_2.weight'), this.p(h + 'ln_2.bias'), cfg.layerNormEpsilon);
        const f = geluNew(this.proj(h + 'mlp.c_fc', m, opts, seq));
        x = tf.add(x, this.proj(h + 'mlp.c_proj', f, opts, seq));
      }
      const out = layerNorm(x, this.p('ln_f.weight'), this.p('ln_f.bias'), cfg.layerNormEpsilon);
      return tf.reshape(out, [batch, seq, d]) as tf.Tensor3D;
    });
  }

  /** LM head on selected hidden rows: [N, D] → logits [N, V] (tied to wte unless the config unties it). */
  lmHead(hidden: tf.Tensor2D): tf.Tensor2D {
    return this.headOp(hidden);
  }

  /**
   * The logit of one given token per row, [N, D] × token ids [N] → [N], without the N×V matmul. The head rows
   * are gathered from the frozen table, so no gradient ever needs gather's (wasm-missing) backward kernel.
   */
  tokenLogits(hidden: tf.Tensor2D, tokenIds: tf.Tensor1D): tf.Tensor1D {
    return tf.tidy(() => tf.sum(tf.mul(hidden, tf.gather(this.headWeight(), tokenIds)), 1) as tf.Tensor1D);
  }

  private headWeight(): tf.Tensor2D {
    return this.config.tieWordEmbeddings ? this.p<tf.Rank.R2>('wte.weight') : this.p<tf.Rank.R2>('lm_head.weight');
  }

  /** Full logits [B, T, V]. Prefer hiddenStates + lmHead on the needed rows when not all positions matter. */
  forward(inputIds: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor3D {
    return tf.tidy(() => {
      const h = this.hiddenStates(inputIds, opts);
      const [b, t, d] = h.shape;
      return tf.reshape(this.lmHead(tf.reshape(h, [b * t, d])), [b, t, this.config.vocabSize]) as tf.Tensor3D;
    });
  }

  dispose(): void {
    this.headT.dispose();
    for (const t of this.params.values()) t.dispose();
    this.params.clear();
  }

  /** The LoRA branch of a module, if any: its down-projection of x (dropout applied; x's rows are b·seq + t) and B. */
  private lora(path: string, x: tf.Tensor2D, opts: ForwardOptions, seq: number): { low: tf.Tensor2D; scaledB: tf.Tensor2D } | undefined {
    const mod = opts.lora?.modules.get(path);
    if (!mod || !opts.lora) return undefined;
    const p = opts.lora.dropout;
    const mask = opts.dropoutStep !== undefined && p > 0 ? dropoutMask(opts.dropoutStep, path, x.shape[0], x.shape[1], seq, p) : undefined;
    return { low: loraDown(x, { a: mod.a, dropoutMask: mask }), scaledB: tf.mul(mod.b, opts.lora.scaling) };
  }

  private proj(path: string, x: tf.Tensor2D, opts: ForwardOptions, seq: number): tf.Tensor2D {
    return conv1d(x, this.w(path + '.weight', opts), this.p(path + '.bias'), this.lora(path, x, opts, seq));
  }

  /** c_attn as three projections; LoRA's B [3D, r] is sliced into its q, k, v rows. */
  private qkv(path: string, x: tf.Tensor2D, opts: ForwardOptions, seq: number): tf.Tensor2D[] {
    const lora = this.lora(path, x, opts, seq);
    const d = this.config.nEmbd;
    return QKV_SUFFIX.map((s, j) =>
      conv1d(
        x,
        this.w(path + '.weight' + s, opts),
        this.p(path + '.bias' + s),
        lora && { low: lora.low, scaledB: tf.slice(lora.scaledB, [j * d, 0], [d, lora.scaledB.shape[1]]) },
      ),
    );
  }
}
