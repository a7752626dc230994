// LoRA fine-tuning throughput of fedtune's trainer on the backend selectBackend() picks (webgpu on a GPU
// machine, wasm on CPU), for the demo model and a GPT-2-small-sized model. The objective matches
// bench/torch_lora_reference.py: next-token loss on every position but the first (a 1-token prompt and a
// T-1-token completion), LoRA r=16 on c_attn, c_proj, c_fc (GPT-2) or on all seven projections (Llama), Adam.
// Prints one JSON object.
//   node dist/bench/lora-throughput.js [--configs demo,gpt2-small,llama-125m] [--steps 10]
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir, type CausalLm } from '../client-sdk/model/load';
import { LlamaModel } from '../client-sdk/model/llama';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { parseLlamaConfig } from '../proto/model/llama-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { GPT2_LORA, LLAMA_LORA, randomGpt2Small, randomLlama125m } from './throughput-models';
import * as path from 'node:path';

interface Case {
  readonly name: string;
  readonly seq: number;
  readonly batch: number;
  readonly model: () => Promise<CausalLm>;
  readonly lora?: LoraConfig;
}

// Not imported from examples/: that would pull in the tokenizer and data packages the GPU bundle leaves out.
const DEFAULT_MODEL_DIR = path.resolve(__dirname, '..', '..', 'examples', 'base-model');

const LORA: LoraConfig = GPT2_LORA;

const CASES: Record<string, Case> = {
  demo: { name: 'demo (1.9M, 4×128)', seq: 128, batch: 32, model: async () => (await loadGpt2Dir(DEFAULT_MODEL_DIR)).model },
  'gpt2-small': {
    name: 'GPT-2 small (124M, 12×768)',
    seq: 256,
    batch: 8,
    model: async () => randomGpt2Small(),
  },
  // A Llama of the demo model's size (4×128, 8,192-token vocabulary), to compare the two families on CPU.
  'llama-demo-size': {
    name: 'Llama (demo size, 4×128, GQA 4:2)',
    seq: 128,
    batch: 32,
    lora: LLAMA_LORA,
    model: async () => {
      const cfg = parseLlamaConfig({
        model_type: 'llama',
        vocab_size: 8192,
        hidden_size: 128,
        intermediate_size: 352,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        max_position_embeddings: 128,
        rms_norm_eps: 1e-5,
        rope_theta: 10000,
        tie_word_embeddings: true,
      });
      return LlamaModel.fromTensors(cfg, randomLlamaWeights(cfg, 1));
    },
  },
  // The issue's ~125M Llama-architecture shape: GQA 12:4, SwiGLU 2048, untied 32k vocabulary (124.6M parameters).
  'llama-125m': {
    name: 'Llama (125M, 12×768, GQA 12:4)',
    seq: 256,
    batch: 8,
    lora: LLAMA_LORA,
    model: async () => randomLlama125m(),
  },
};

async function run(c: Case, steps: number): Promise<Record<string, number | string>> {
  const model = await c.model();
  const rng = new Prng(7);
  const V = model.config.vocabSize;
  const train = Array.from({ length: c.batch * 4 }, () => ({
    prompt: [rng.nextInt(V)],
    completion: Array.from({ length: c.seq - 1 }, () => rng.nextInt(V)),
  }));
  const lora = c.lora ?? LORA;
  const trainer = new LoraSftTrainer({ model, lora, train });
  const adapter = initLoraAdapter(model.config, lora, 1);
  const plan = { round: 1, taskId: 'bench', localSteps: 2, batchSize: c.batch, learningRate: 1e-4, weightDecay: 0, maxSeqLen: c.seq, seed: 1 };
  await trainer.train(adapter, plan); // warm-up: shader compilation, buffer pools
  const out = await trainer.train(adapter, { ...plan, localSteps: steps, seed: 2 });
  const seconds = out.metrics.train_seconds;
  const mem = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number; numBytesInGPUAllocated?: number };
  const result = {
    config: c.name,
    backend: tf.getBackend(),
    seq: c.seq,
    batch: c.batch,
    steps,
    step_ms: (1000 * seconds) / steps,
    tokens_per_second: (steps * c.batch * c.seq) / seconds,
    tfjs_bytes_in_use: mem.numBytes,
    gpu_bytes_allocated: mem.numBytesInGPUAllocated ?? mem.numBytesInGPU ?? -1,
    train_loss: out.metrics.train_loss ?? NaN,
  };
  model.dispose();
  return result;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const pick = (flag: string, dflt: string): string => (args.includes(flag) ? args[args.indexOf(flag) + 1] : dflt);
  const backend = await selectBackend();
  // --flag NAME=VALUE sets a tfjs environment flag (e.g. WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE) to measure its effect.
  const flags: Record<string, number | boolean> = {};
  args.forEach((x, i) => {
    if (x !== '--flag') return;
    const [k, v] = args[i + 1].split('=');
    flags[k] = v === 'true' ? true : v === 'false' ? false : Number(v);
    tf.env().set(k, flags[k]);
  });
  const steps = Number(pick('--steps', '10'));
  const results = [];
  const batch = args.includes('--batch') ? Number(pick('--batch', '0')) : undefined;
  for (const name of pick('--configs', 'demo,gpt2-small').split(',')) results.push(await run({ ...CASES[name], batch: batch ?? CASES[name].batch }, steps));
  console.log(JSON.stringify({ date: new Date().toISOString(), backend, flags, results }, null, 2));
}

main().catch((e: Error) => {
  console.error(e);
  process.exit(1);
});
