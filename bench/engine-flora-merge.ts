// What a FLoRA round costs the WebGPU engine before its first step, and why the merge runs on the GPU: per model
// (GPT-2 small, and the ~125M Llama shape, random weights as the throughput benches use) and stack rank (40: five
// sites at rank 8 after one round; K = 768: the dense form every later version keeps), the engine's mergeStack (W0
// packed on the host and uploaded, B·A and the add on the GPU, waited for) against the host computing ΔW alone as the
// tfjs path does (sft/flora-site.ts MergedBase on tfjs wasm; its packing and upload, which a host merge would add, not
// counted), and restoreBase (W0 re-packed and re-uploaded for a task that is no FLoRA round). Medians of 3, both
// measured in the same run; one JSON line per model on stdout.
//   node dist/bench/engine-flora-merge.js [--path f16] [--models gpt2,llama]
//   ... --path f32 --tiny                     # plumbing check on lavapipe (a 2-layer, 64-wide GPT-2)
import { openEngineDevice } from '../client-sdk/engine/device';
import { LoraEngine } from '../client-sdk/engine/engine';
import type { EnginePath } from '../client-sdk/engine/program';
import { selectBackend } from '../client-sdk/model/backend';
import { LlamaModel } from '../client-sdk/model/llama';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { MergedBase } from '../client-sdk/sft/flora-site';
import type { CausalLm } from '../client-sdk/model/load';
import { initLoraAdapter, loraScaling, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import { GPT2_LORA, LLAMA_125M, LLAMA_LORA, randomGpt2Small } from './throughput-models';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { parseGpt2Config } from '../proto/model/gpt2-config';

const args = process.argv.slice(2);
const pick = (flag: string, dflt: string): string => (args.includes(flag) ? args[args.indexOf(flag) + 1] : dflt);
const TINY = parseGpt2Config({ vocab_size: 300, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 4 });
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function time(f: () => unknown): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

async function measure(model: CausalLm, lora: LoraConfig, path: EnginePath): Promise<Record<string, number>> {
  const ed = await openEngineDevice();
  if ('error' in ed) throw new Error(ed.error);
  const config = model.config;
  const e = new LoraEngine(ed, {
    config,
    weights: await model.namedWeights(),
    adapter: initLoraAdapter(config, lora, 1),
    batch: 1,
    seq: 16,
    path,
    loraScale: loraScaling(lora),
  });
  const errs = await e.compileErrors();
  if (errs.length > 0) throw new Error(errs[0]);
  const out: Record<string, number> = {};
  for (const r of [40, config.nEmbd]) {
    const stack = initLoraAdapter(config, { ...lora, r, alpha: r }, 5).map((t) => {
      const rng = new Prng(6, t.data.length);
      return { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.02) };
    });
    const gpu: number[] = [];
    const host: number[] = [];
    const restore: number[] = [];
    for (let i = 0; i < 3; i++) {
      gpu.push(await time(() => e.mergeStack(stack)));
      restore.push(
        await time(async () => {
          e.restoreBase();
          await e.idle();
        }),
      );
      host.push(await time(() => new MergedBase(model, stack).dispose()));
    }
    out[`gpu_merge_ms_r${r}`] = median(gpu);
    out[`host_deltaW_ms_r${r}`] = median(host);
    out[`restore_ms_r${r}`] = median(restore);
    out[`host_over_gpu_r${r}`] = median(host) / median(gpu);
  }
  await e.dispose();
  ed.device.destroy();
  return out;
}

async function main(): Promise<void> {
  await selectBackend({ force: 'wasm' }); // tfjs holds the model and computes the host's ΔW; the engine owns the GPU
  const path = pick('--path', 'f16') as EnginePath;
  // One JSON line per model, printed as soon as it is measured (a time limit then keeps what was measured).
  for (const name of pick('--models', 'gpt2,llama').split(',')) {
    const model = args.includes('--tiny')
      ? Gpt2Model.fromTensors(TINY, randomGpt2Weights(TINY, 1))
      : name === 'gpt2'
        ? randomGpt2Small()
        : LlamaModel.fromTensors(LLAMA_125M, randomLlamaWeights(LLAMA_125M, 1));
    const ms = await measure(model, name === 'gpt2' || args.includes('--tiny') ? GPT2_LORA : LLAMA_LORA, path);
    console.log(JSON.stringify({ bench: 'engine-flora-merge', path, model: name, ...ms }));
    model.dispose();
  }
}

main().catch((e: Error) => {
  console.error(e.stack ?? String(e));
  process.exit(1);
});
