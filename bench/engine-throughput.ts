// Throughput of the WebGPU engine (client-sdk/engine) on the same cases and objective as lora-throughput.ts and
// torch_lora_reference.py: next-token loss on every position but the first, LoRA r=16 on c_attn, c_proj, c_fc
// (GPT-2) or on all seven Llama projections, Adam. Prints one JSON object with tokens/s, dispatches per step, CPU
// ms per step and the engine's GPU bytes (engine_gpu_memory: by role, and the peak beside torch_lora_reference.py's
// max_memory_allocated). A config with a `baseline` (the sliding-window Mistral against the same model with full
// attention) also gets its step time as a ratio against that config's, same path and batch, measured in the same run.
//   node dist/bench/engine-throughput.js [--paths tc,f32] [--configs demo,gpt2-small,llama-demo,llama-125m,qwen3-125m,mistral-125m-2k,mistral-125m-2k-w512] [--batches 8,32] [--steps 20]
import { loadGpt2Dir, loadModelDir, type CausalLm } from '../client-sdk/model/load';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import { selectBackend } from '../client-sdk/model/backend';
import { choosePath, openEngineDevice } from '../client-sdk/engine/device';
import { EngineSftTrainer } from '../client-sdk/engine/trainer';
import { engineMemory } from '../client-sdk/engine/memory';
import type { EnginePath } from '../client-sdk/engine/program';
import { GPT2_LORA, LLAMA_LORA, randomGpt2Small, randomLlama125m, randomMistral125m, randomQwen3_125m } from './throughput-models';
import * as path from 'node:path';

const DEFAULT_MODEL_DIR = path.resolve(__dirname, '..', '..', 'examples', 'base-model');
const LORA: LoraConfig = GPT2_LORA;
const MODELS: Record<string, { name: string; seq: number; lora?: LoraConfig; load: () => Promise<CausalLm>; baseline?: string }> = {
  demo: { name: 'demo (1.9M, 4×128)', seq: 128, load: async () => (await loadGpt2Dir(DEFAULT_MODEL_DIR)).model },
  'gpt2-small': {
    name: 'GPT-2 small (124M, 12×768)',
    seq: 256,
    load: async () => randomGpt2Small(),
  },
  'llama-demo': {
    name: 'Llama demo base (examples/llama-base, 4×128, GQA 4:2)',
    seq: 128,
    lora: LLAMA_LORA,
    load: async () => (await loadModelDir(path.resolve(__dirname, '..', '..', 'examples', 'llama-base'))).model,
  },
  // The issue's ~125M Llama shape, as bench/lora-throughput.ts's llama-125m: GQA 12:4, SwiGLU 2048, untied 32k vocabulary.
  'llama-125m': {
    name: 'Llama (125M, 12×768, GQA 12:4)',
    seq: 256,
    lora: LLAMA_LORA,
    load: async () => randomLlama125m(),
  },
  // llama-125m's shape as Qwen3: its per-head q/k norms and a tied head (bench/throughput-models.ts QWEN3_125M).
  'qwen3-125m': {
    name: 'Qwen3 (125M, 12×768, GQA 12:4, q/k norms, tied)',
    seq: 256,
    lora: LLAMA_LORA,
    load: async () => randomQwen3_125m(),
  },
  // llama-125m's shape as Mistral at 2,048 positions: full attention, and a 512-token sliding window on every layer.
  'mistral-125m-2k': {
    name: 'Mistral (125M, 12×768, GQA 12:4), full attention',
    seq: 2048,
    lora: LLAMA_LORA,
    load: async () => randomMistral125m(null),
  },
  'mistral-125m-2k-w512': {
    name: 'Mistral (125M, 12×768, GQA 12:4), sliding window 512',
    seq: 2048,
    lora: LLAMA_LORA,
    load: async () => randomMistral125m(512),
    baseline: 'mistral-125m-2k',
  },
};

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const pick = (flag: string, dflt: string): string => (args.includes(flag) ? args[args.indexOf(flag) + 1] : dflt);
  await selectBackend({ force: 'wasm' }); // tfjs only holds the model here; the engine owns the GPU
  const ed = await openEngineDevice();
  if ('error' in ed) throw new Error(ed.error);
  const steps = Number(pick('--steps', '20'));
  const results: Record<string, unknown>[] = [];
  for (const name of pick('--configs', 'demo,gpt2-small').split(',')) {
    const m = MODELS[name];
    const model = await m.load();
    for (const batch of pick('--batches', '8,32').split(',').map(Number)) {
      for (const p of pick('--paths', 'tc,f32').split(',') as EnginePath[]) {
        try {
          choosePath(ed.caps, p);
          const rng = new Prng(7);
          const V = model.config.vocabSize;
          const train = Array.from({ length: batch * 4 }, () => ({
            prompt: [rng.nextInt(V)],
            completion: Array.from({ length: m.seq - 1 }, () => rng.nextInt(V)),
          }));
          const lora = m.lora ?? LORA;
          const trainer = new EngineSftTrainer({ model, lora, train, device: ed, path: p });
          const adapter = initLoraAdapter(model.config, lora, 1);
          const plan = { round: 1, taskId: 'bench', localSteps: 3, batchSize: batch, learningRate: 1e-4, weightDecay: 0, maxSeqLen: m.seq, seed: 1 };
          await trainer.train(adapter, plan); // warm-up: pipelines, buffers
          const e = trainer.current;
          if (!e) throw new Error('no engine');
          const cpu0 = e.cpuMs;
          const n0 = e.steps;
          const out = await trainer.train(adapter, { ...plan, localSteps: steps, seed: 2 });
          const seconds = out.metrics.train_seconds;
          results.push({
            key: name,
            config: m.name,
            engine: p,
            seq: m.seq,
            batch,
            steps,
            step_ms: (1000 * seconds) / steps,
            tokens_per_second: (steps * batch * m.seq) / seconds,
            dispatches_per_step: e.dispatchesPerStep,
            pipelines: e.pipelineCount,
            cpu_ms_per_step: (e.cpuMs - cpu0) / (e.steps - n0),
            engine_gpu_bytes: e.bytesAllocated,
            // Exact, from the engine's own buffers: compare peak_bytes with PyTorch's max_memory_allocated.
            engine_gpu_memory: engineMemory(e.program, e.layout.adapterSize),
            train_loss: out.metrics.train_loss,
            build_ms: e.buildMs,
          });
          if (args.includes('--profile')) {
            const prof = await e.profile(batch * (m.seq - 1));
            const rows = Object.entries(prof)
              .sort((x, y) => y[1].ms - x[1].ms)
              .map(([k, v]) => `${k} ×${v.count}: ${v.ms.toFixed(3)} ms`);
            results[results.length - 1].profile_ms = rows;
          }
          await trainer.dispose();
        } catch (err) {
          results.push({ config: m.name, engine: p, batch, error: (err as Error).message.split('\n').slice(0, 3).join(' ') });
        }
        console.error(JSON.stringify(results[results.length - 1]));
      }
    }
    model.dispose();
  }
  await ed.device.queue.onSubmittedWorkDone();
  // Each config with a baseline against it: the baseline's step time over this one's (> 1: this one is faster).
  const ratios = [];
  for (const r of results) {
    const base = MODELS[r.key as string]?.baseline;
    const b = results.find((x) => x.key === base && x.engine === r.engine && x.batch === r.batch && typeof x.step_ms === 'number');
    if (base && b && typeof r.step_ms === 'number')
      ratios.push({ config: r.key, baseline: base, engine: r.engine, batch: r.batch, baseline_step_ms_over_step_ms: (b.step_ms as number) / r.step_ms });
  }
  const json = JSON.stringify({ date: new Date().toISOString(), adapter: ed.caps.adapter, caps: ed.caps, results, ratios }, null, 2);
  // Dawn prints shader warnings on stdout, so --out names a file for the clean JSON.
  if (args.includes('--out')) require('node:fs').writeFileSync(pick('--out', ''), json + '\n');
  console.log(json);
  process.exit(0);
}

main().catch((e: Error) => {
  console.error(e);
  process.exit(1);
});
