// The GPT-2 building blocks in tfjs-core ops, matching PyTorch/Hugging Face numerics: LayerNorm with biased
// variance, the tanh GELU ("gelu_new"), Conv1D (y = x @ W + b with W stored [in, out]) plus an optional LoRA
// branch, and causal multi-head self-attention. All functions work on 2-D activations [B*T, C] so that every
// projection is one plain matmul; attention reshapes to [B, H, T, hd] locally.
import * as tf from '@tensorflow/tfjs-core';

export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  return tf.tidy(() => {
    const mean = tf.mean(x, -1, true);
    const xc = tf.sub(x, mean);
    const variance = tf.mean(tf.square(xc), -1, true);
    return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), gamma), beta) as tf.Tensor2D;
  });
}

const GELU_C = Math.sqrt(2 / Math.PI);

/** 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), HF's gelu_new. */
export function geluNew(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const x3 = tf.mul(tf.mul(x, x), x);
    const inner = tf.mul(tf.add(x, tf.mul(x3, 0.044715)), GELU_C);
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1)) as tf.Tensor2D;
  });
}

/** One LoRA branch: A [r, in], B [out, r]; adds dropout(x) @ Aᵀ @ Bᵀ · scaling to the frozen projection. */
export interface LoraBranch {
  readonly a: tf.Tensor2D;
  readonly b: tf.Tensor2D;
  readonly scaling: number;
  /** Inverted-dropout mask for x (values 0 or 1/(1-p)), present only while training with dropout. */
  readonly dropoutMask?: tf.Tensor2D;
}

/** HF Conv1D: x [N, in] @ W [in, out] + b, plus the LoRA branch when given. */
export function conv1d(x: tf.Tensor2D, w: tf.Tensor2D, bias: tf.Tensor1D, lora?: LoraBranch): tf.Tensor2D {
  return tf.tidy(() => {
    const y = tf.fused.matMul({ a: x, b: w, bias }) as tf.Tensor2D;
    if (!lora) return y;
    const xin = lora.dropoutMask ? tf.mul(x, lora.dropoutMask) : x;
    const low = tf.matMul(tf.matMul(xin, lora.a, false, true), lora.b, false, true);
    return tf.add(y, tf.mul(low, lora.scaling)) as tf.Tensor2D;
  });
}

/** Additive causal mask [T, T]: 0 on and below the diagonal, -1e9 above (finite, so gradients stay finite). */
export function causalMask(t: number): tf.Tensor2D {
  const m = new Float32Array(t * t);
  for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) m[i * t + j] = -1e9;
  return tf.tensor2d(m, [t, t]);
}

/**
 * Causal self-attention core: qkv [B*T, 3D] (the c_attn output) → context [B*T, D].
 * `scale` multiplies the scores (1/sqrt(head_dim), possibly also 1/(layer+1)); `mask` is causalMask(T).
 */
export function causalAttention(
  qkv: tf.Tensor2D,
  batch: number,
  seq: number,
  nHead: number,
  scale: number,
  mask: tf.Tensor2D,
): tf.Tensor2D {
  return tf.tidy(() => {
    const d = qkv.shape[1] / 3;
    const hd = d / nHead;
    const heads = (col: number): tf.Tensor4D =>
      tf.transpose(tf.reshape(tf.slice(qkv, [0, col], [batch * seq, d]), [batch, seq, nHead, hd]), [0, 2, 1, 3]);
    const q = heads(0);
    const k = heads(d);
    const v = heads(2 * d);
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), scale), mask);
    const probs = tf.softmax(scores);
    const ctx = tf.matMul(probs, v); // [B, H, T, hd]
    return tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch * seq, d]) as tf.Tensor2D;
  });
}

/** Inverted-dropout mask [rows, cols] from a seeded stream: 0 with probability p, else 1/(1-p). */
export function dropoutMask(next: () => number, rows: number, cols: number, p: number): tf.Tensor2D {
  const keep = 1 / (1 - p);
  const m = new Float32Array(rows * cols);
  for (let i = 0; i < m.length; i++) m[i] = next() < p ? 0 : keep;
  return tf.tensor2d(m, [rows, cols]);
}
