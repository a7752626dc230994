// The model shapes and LoRA configurations the throughput benchmarks share: bench/lora-throughput.ts (tfjs) and
// bench/engine-throughput.ts (the WebGPU engine) measure the same models as bench/torch_lora_reference.py, with
// random weights (seed 1). Not imported from examples/: that would pull in the tokenizer and data packages the
// GPU bundle leaves out.
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { LlamaModel } from '../client-sdk/model/llama';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import type { LoraConfig } from '../proto/model/lora-layout';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { parseLlamaConfig } from '../proto/model/llama-config';

export const GPT2_LORA: LoraConfig = { r: 16, alpha: 32, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
export const LLAMA_LORA: LoraConfig = {
  r: 16,
  alpha: 32,
  dropout: 0,
  targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'],
};

/** GPT-2 small (124M, 12×768). */
export const GPT2_SMALL = parseGpt2Config({ vocab_size: 50257, n_positions: 1024, n_embd: 768, n_layer: 12, n_head: 12 });

export function randomGpt2Small(): Gpt2Model {
  return Gpt2Model.fromTensors(GPT2_SMALL, randomGpt2Weights(GPT2_SMALL, 1));
}

/** The issue's ~125M Llama-architecture shape: GQA 12:4, SwiGLU 2048, untied 32k vocabulary (124.6M parameters). */
const SHAPE_125M = {
  vocab_size: 32000,
  hidden_size: 768,
  intermediate_size: 2048,
  num_hidden_layers: 12,
  num_attention_heads: 12,
  num_key_value_heads: 4,
  max_position_embeddings: 2048,
};
export const LLAMA_125M = parseLlamaConfig({ model_type: 'llama', ...SHAPE_125M, rms_norm_eps: 1e-5, rope_theta: 10000 });

export function randomLlama125m(): LlamaModel {
  return LlamaModel.fromTensors(LLAMA_125M, randomLlamaWeights(LLAMA_125M, 1));
}

/**
 * The same shape as Qwen3 (model_type qwen3): LLAMA_125M's plus the per-head q/k RMSNorm, head_dim 64 as Llama's,
 * tied head as small Qwen3 checkpoints, so against llama-125m in the same run it prices the norms and the tied head.
 */
export const QWEN3_125M = parseLlamaConfig({
  model_type: 'qwen3',
  ...SHAPE_125M,
  head_dim: 64,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: true,
  attention_bias: false,
  use_sliding_window: false,
});

export function randomQwen3_125m(): LlamaModel {
  return LlamaModel.fromTensors(QWEN3_125M, randomLlamaWeights(QWEN3_125M, 1));
}

/**
 * LLAMA_125M's shape as Mistral, with a sliding window (`window`) or none: the same weights either way, so a run
 * of both at 2,048 positions prices the window (bench/engine-throughput.ts mistral-125m-2k, mistral-125m-2k-w512).
 */
export function randomMistral125m(window: number | null): LlamaModel {
  const cfg = parseLlamaConfig({ model_type: 'mistral', ...SHAPE_125M, rms_norm_eps: 1e-5, rope_theta: 10000, sliding_window: window });
  return LlamaModel.fromTensors(cfg, randomLlamaWeights(cfg, 1));
}
