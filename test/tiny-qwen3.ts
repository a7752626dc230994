// A tiny random Qwen3 for tests: 2 layers, hidden 32, 4 heads : 2 KV heads, head_dim 16 (not hidden / heads, as
// in real Qwen3 checkpoints: q_proj is 32 → 64), tied head. The q/k norm weights are drawn around 1 rather than
// left at HF's init of exactly 1, so a test that loses or swaps them sees it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseLlamaConfig, toHfLlamaConfigJson, type LlamaConfig } from '../proto/model/llama-config';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { fillNormal } from '../client-sdk/model/init';
import { hashString, Prng } from '../proto/prng';
import { writeSafetensors } from '../proto/safetensors';
import type { NamedTensor } from '../proto/tensors';

const TOK = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', 'tok-bytelevel');

export const TINY_QWEN3_JSON = {
  model_type: 'qwen3',
  vocab_size: 400,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  max_position_embeddings: 128,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000,
  tie_word_embeddings: true,
  attention_bias: false,
  use_sliding_window: false,
  sliding_window: null,
  max_window_layers: 28,
};

export function tinyQwen3Config(): LlamaConfig {
  return parseLlamaConfig(TINY_QWEN3_JSON);
}

/** The same shapes as a Llama (which reads an explicit head_dim too): Qwen3 without the q/k norms. */
export function tinyLlamaTwinConfig(): LlamaConfig {
  const { attention_bias: _b, use_sliding_window: _u, sliding_window: _s, max_window_layers: _m, ...rest } = TINY_QWEN3_JSON;
  return parseLlamaConfig({ ...rest, model_type: 'llama' });
}

export function tinyQwen3Weights(cfg: LlamaConfig, seed: number, initializerRange = 0.02): NamedTensor[] {
  return randomLlamaWeights(cfg, seed, initializerRange).map((t) => {
    if (!/self_attn\.[qk]_norm\.weight$/.test(t.name)) return t;
    const data = fillNormal(new Float32Array(t.data.length), new Prng(seed, hashString(t.name)), 0.2).map((x) => 1 + x);
    return { ...t, data };
  });
}

/** config.json, model.safetensors and the byte-level fixture tokenizer (for runs through a site). */
export function makeTinyQwen3Dir(dir: string, seed = 3): LlamaConfig {
  fs.mkdirSync(dir, { recursive: true });
  const cfg = tinyQwen3Config();
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(toHfLlamaConfigJson(cfg)));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), writeSafetensors(tinyQwen3Weights(cfg, seed), { format: 'pt' }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(TOK, f), path.join(dir, f));
  return cfg;
}
