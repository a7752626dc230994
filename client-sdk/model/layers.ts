// The GPT-2 building blocks in tfjs-core ops, matching PyTorch/Hugging Face numerics: LayerNorm with biased
// variance, the tanh GELU ("gelu_new"), Conv1D (y = x @ W + b with W stored [in, out]) plus an optional LoRA
// branch, and causal multi-head self-attention. All functions work on 2-D activations [B*T, C] so that every
// projection is one plain matmul; attention reshapes to [B, H, T, hd] locally.
import * as tf from '@tensorflow/tfjs-core';
import { mm } from './matmul';
import { dropoutModuleKey, fillDropoutMask, modulePathParts } from './dropout-mask';

export function layerNorm(x: tf.Tensor2D, gamma: tf.Tensor1D, beta: tf.Tensor1D, eps: number): tf.Tensor2D {
  return tf.tidy(() => {
    const mean = tf.mean(x, -1, true);
    const xc = tf.sub(x, mean);
    const variance = tf.mean(tf.square(xc), -1, true);
    return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), gamma), beta) as tf.Tensor2D;
  });
}

const GELU_C = Math.sqrt(2 / Math.PI);

/**
 * HF's gelu_new, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), computed as x·σ(2·√(2/π)·(x + 0.044715·x³)),
 * the same function (1 + tanh(u) = 2σ(2u)): wasm's sigmoid is XNNPACK-vectorised, its tanh ~15× slower.
 */
export function geluNew(x: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const u = tf.mul(x, tf.add(tf.mul(tf.square(x), 2 * GELU_C * 0.044715), 2 * GELU_C));
    return tf.mul(x, tf.sigmoid(u)) as tf.Tensor2D;
  });
}

/** The low-rank input of a LoRA branch: dropout(x) @ Aᵀ, [N, r]. */
export interface LoraInput {
  readonly a: tf.Tensor2D;
  /** Inverted-dropout mask for x (values 0 or 1/(1-p)), present only while training with dropout. */
  readonly dropoutMask?: tf.Tensor2D;
}

export function loraDown(x: tf.Tensor2D, lora: LoraInput): tf.Tensor2D {
  return mm(lora.dropoutMask ? tf.mul(x, lora.dropoutMask) : x, lora.a, false, true);
}

/**
 * HF Conv1D: x [N, in] @ W [in, out] + b, plus `low` @ Bᵀ when a LoRA branch is given (low = loraDown, and B
 * already multiplied by the LoRA scaling: scaling the small [out, r] matrix is cheaper than the [N, out] output).
 * A plain matMul rather than tf.fused.matMul: the fused op's custom gradient always computes dW too, which for
 * frozen weights is wasted work (and transposed-A matmuls are slow on wasm); matMul's gradient is lazy per input.
 */
export function conv1d(x: tf.Tensor2D, w: tf.Tensor2D, bias: tf.Tensor1D, lora?: { readonly low: tf.Tensor2D; readonly scaledB: tf.Tensor2D }): tf.Tensor2D {
  return tf.tidy(() => {
    const y = tf.add(tf.matMul(x, w), bias) as tf.Tensor2D;
    if (!lora) return y;
    return tf.add(y, mm(lora.low, lora.scaledB, false, true)) as tf.Tensor2D;
  });
}

/** Additive causal mask [T, T]: 0 on and below the diagonal, -1e9 above (finite, so gradients stay finite). */
export function causalMask(t: number): tf.Tensor2D {
  const m = new Float32Array(t * t);
  for (let i = 0; i < t; i++) for (let j = i + 1; j < t; j++) m[i * t + j] = -1e9;
  return tf.tensor2d(m, [t, t]);
}

/**
 * Causal self-attention core: q, k, v [B*T, D] → context [B*T, D]. `scale` multiplies the scores
 * (1/sqrt(head_dim), possibly also 1/(layer+1)); `mask` is causalMask(T).
 */
export function causalAttention(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  shape: { readonly batch: number; readonly seq: number; readonly nHead: number },
  scale: number,
  mask: tf.Tensor2D,
): tf.Tensor2D {
  return tf.tidy(() => {
    const { batch, seq, nHead } = shape;
    const d = q.shape[1];
    const heads = (x: tf.Tensor2D): tf.Tensor4D => tf.transpose(tf.reshape(x, [batch, seq, nHead, d / nHead]), [0, 2, 1, 3]);
    const scores = tf.add(tf.mul(tf.matMul(heads(q), heads(k), false, true), scale), mask);
    const ctx = tf.matMul(tf.softmax(scores), heads(v)); // [B, H, T, hd]
    return tf.reshape(tf.transpose(ctx, [0, 2, 1, 3]), [batch * seq, d]) as tf.Tensor2D;
  });
}

/**
 * Inverted-dropout mask [rows, cols] of the module at `path` for the input x whose rows are b·seq + t: 0 with
 * probability p, else 1/(1-p), from the step's key (dropout-mask.ts: the engine draws the very same mask).
 */
export function dropoutMask(stepKey: number, path: string, rows: number, cols: number, seq: number, p: number): tf.Tensor2D {
  const { layer, proj } = modulePathParts(path);
  return tf.tensor2d(fillDropoutMask(new Float32Array(rows * cols), dropoutModuleKey(stepKey, layer, proj), rows, cols, seq, p), [rows, cols]);
}

/**
 * tf.customGrad for a one-input op, with the types spelled out (tfjs types customGrad's inputs as a union of
 * tensors and the save function).
 */
export function customUnary<I extends tf.Tensor, O extends tf.Tensor>(
  forward: (x: I, save: tf.GradSaveFunc) => { value: O; gradFunc: (dy: O, saved: tf.Tensor[]) => tf.Tensor },
): (x: I) => O {
  const f = tf.customGrad(((x: tf.Tensor, save: tf.GradSaveFunc) => forward(x as I, save)) as (...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    value: O;
    gradFunc: (dy: O, saved: tf.Tensor[]) => tf.Tensor;
  });
  return (x: I) => f(x) as O;
}

/**
 * log Σ exp over the last axis of [N, V] → [N], with a hand-written gradient (softmax · dy). tf.logSumExp's
 * own gradient goes through max/equal/exp over the whole [N, V] block, several times the work.
 */
export const logSumExpRows = customUnary((x: tf.Tensor2D, save: tf.GradSaveFunc) => {
  const value = tf.logSumExp(x, -1) as tf.Tensor1D;
  save([x]);
  return {
    value,
    // d lse / dx = softmax(x); tf.softmax is one vectorised kernel on wasm.
    gradFunc: (dy: tf.Tensor1D, saved: tf.Tensor[]) => tf.mul(tf.expandDims(dy, -1), tf.softmax(saved[0])),
  };
});
