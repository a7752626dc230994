// A tiny random Llama model directory (config.json, model.safetensors, and the byte-level fixture tokenizer with
// its chat template) for tests that run sites on their own model and data through the CLI.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseLlamaConfig, toHfLlamaConfigJson } from '../proto/model/llama-config';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { writeSafetensors } from '../proto/safetensors';

const TOK = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', 'tok-bytelevel');

export function makeTinyLlamaDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  const cfg = parseLlamaConfig({
    model_type: 'llama',
    vocab_size: 400,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    max_position_embeddings: 128,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
  });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(toHfLlamaConfigJson(cfg)));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), writeSafetensors(randomLlamaWeights(cfg, 3), { format: 'pt' }));
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(TOK, f), path.join(dir, f));
}
