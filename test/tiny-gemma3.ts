// A tiny random Gemma 3 (model_type gemma3_text) for tests: 3 layers local / global / local
// (sliding_window_pattern 2), sliding_window 4, hidden 32, 4 heads : 2 KV heads, head_dim 16 (q_proj is 32 → 64),
// query_pre_attn_scalar 12 (not head_dim), local rope base 1e4 and global 1e6 with linear scaling, tied head. The
// norm weights are drawn around 0 (a scale around 1, as (1 + w)) rather than left at HF's init of exactly 0, so a test
// that loses one or reads it as Llama's w sees it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseLlamaConfig, toHfLlamaConfigJson, type LlamaConfig } from '../proto/model/llama-config';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { fillNormal } from '../client-sdk/model/init';
import { hashString, Prng } from '../proto/prng';
import { writeSafetensors } from '../proto/safetensors';
import type { NamedTensor } from '../proto/tensors';

const TOK = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', 'tok-bytelevel');

/** As the hub's gemma-3-1b config.json spells it (classic keys), scaled down. */
export const TINY_GEMMA3_JSON = {
  architectures: ['Gemma3ForCausalLM'],
  model_type: 'gemma3_text',
  vocab_size: 400,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 3,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  hidden_activation: 'gelu_pytorch_tanh',
  max_position_embeddings: 128,
  rms_norm_eps: 1e-6,
  query_pre_attn_scalar: 12,
  sliding_window: 4,
  sliding_window_pattern: 2,
  rope_theta: 1000000,
  rope_local_base_freq: 10000,
  rope_scaling: { rope_type: 'linear', factor: 4 },
  attention_bias: false,
  attention_dropout: 0,
  final_logit_softcapping: null,
  attn_logit_softcapping: null,
  tie_word_embeddings: true,
  cache_implementation: 'hybrid',
};

export function tinyGemma3Config(patch: Record<string, unknown> = {}): LlamaConfig {
  return parseLlamaConfig({ ...TINY_GEMMA3_JSON, ...patch });
}

export function tinyGemma3Weights(cfg: LlamaConfig, seed: number, initializerRange = 0.02): NamedTensor[] {
  return randomLlamaWeights(cfg, seed, initializerRange).map((t) =>
    t.name.endsWith('norm.weight') ? { ...t, data: fillNormal(new Float32Array(t.data.length), new Prng(seed, hashString(t.name)), 0.2) } : t,
  );
}

/** config.json, model.safetensors and the byte-level fixture tokenizer (for runs through a site). */
export function makeTinyGemma3Dir(dir: string, seed = 3): LlamaConfig {
  fs.mkdirSync(dir, { recursive: true });
  const cfg = tinyGemma3Config();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(toHfLlamaConfigJson(cfg)));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), writeSafetensors(tinyGemma3Weights(cfg, seed, 0.1), { format: 'pt' }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(TOK, f), path.join(dir, f));
  return cfg;
}
