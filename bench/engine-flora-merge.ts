/// <reference types="@webgpu/types" />
// What a FLoRA round costs the WebGPU engine around its steps, GPT-2 small by default (random weights, as the
// throughput benches use), all measured in one run against baselines measured in the same run:
//  - the merge (engine.mergeStack: W0 of the stack's modules packed on the host and uploaded, B·A and the add on the
//    GPU, waited for) at stack rank 40 (five sites at rank 8 after one round) and K = 768 (the dense form every later
//    version keeps), against the host computing ΔW alone as the tfjs path does (sft/flora-site.ts MergedBase on tfjs
//    wasm; its packing and upload, which a host merge would add, not counted): why the merge runs on the GPU;
//  - W0 back for the next task that is no FLoRA round (engine.restoreBase: the merged modules only, weights.ts
//    restoreW0), for a stack on every projection (GPT2_LORA's targets) and one on c_attn alone (PEFT's default for
//    GPT-2), against the restore as it was at 6f544d5, every projection of the model re-packed, rounded to f16 by
//    halfBits value by value and uploaded (the same calls, into a buffer of `w`'s size); and that f16 conversion of
//    the whole model's projections alone, halfBits value by value against toHalfBits's fast path (half.ts).
// GPU merges and restores are medians of 3; the host's ΔW (seconds long, 4-7× the merge) and the conversions, one run
// each. One JSON line per model on stdout; progress on stderr.
//   node dist/bench/engine-flora-merge.js [--path f16] [--models gpt2[,llama]]
//   ... --path f32 --tiny                     # plumbing check on lavapipe (a 2-layer, 64-wide GPT-2)
// Before, the stacks were drawn value by value with two passes of the seeded generator, 2 × 113M values at rank 768
// (31 s on this 2-core box), the model's weights by Box–Muller (5 s more), and every figure was a median of 3, three
// host ΔW at rank 768 among them (3 × 6.5 s on the H200): past the 50 s cap before the first line was printed. Now every
// weight and factor is a view of one seeded random pool in ±0.01 (values matter to no time measured here).
import { openEngineDevice } from '../client-sdk/engine/device';
import { LoraEngine } from '../client-sdk/engine/engine';
import type { EnginePath } from '../client-sdk/engine/program';
import { packedProjections } from '../client-sdk/engine/weights';
import { halfBits, toHalfBits } from '../client-sdk/engine/half';
import { selectBackend } from '../client-sdk/model/backend';
import { LlamaModel } from '../client-sdk/model/llama';
import { MergedBase } from '../client-sdk/sft/flora-site';
import type { CausalLm } from '../client-sdk/model/load';
import { initLoraAdapter, loraScaling, loraTensorShapes, type LoraConfig } from '../proto/model/lora-layout';
import type { NamedTensor } from '../proto/tensors';
import { Prng } from '../proto/prng';
import { GPT2_LORA, GPT2_SMALL, LLAMA_125M, LLAMA_LORA } from './throughput-models';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { gpt2ParameterShapes, parseGpt2Config } from '../proto/model/gpt2-config';
import { llamaParameterShapes } from '../proto/model/llama-config';

const args = process.argv.slice(2);
const pick = (flag: string, dflt: string): string => (args.includes(flag) ? args[args.indexOf(flag) + 1] : dflt);
const TINY = parseGpt2Config({ vocab_size: 300, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 4 });
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const T0 = performance.now();
const progress = (what: string): void => console.error(`[${((performance.now() - T0) / 1000).toFixed(1)} s] ${what}`);

async function time(f: () => unknown): Promise<number> {
  const t0 = performance.now();
  await f();
  return performance.now() - t0;
}

/** Tensors of the given names and shapes, each a view of `pool`'s first values. */
function views(shapes: Map<string, number[]>, pool: Float32Array): NamedTensor[] {
  return [...shapes].map(([name, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    if (n > pool.length) throw new Error(`pool of ${pool.length} values, ${name} needs ${n}`);
    return { name, dtype: 'float32', shape, data: pool.subarray(0, n) };
  });
}

/** A version of rank r on `targets` (scaling 1). */
function stackOf(model: CausalLm, targets: readonly string[], r: number, pool: Float32Array): NamedTensor[] {
  return views(loraTensorShapes(model.config, { r, alpha: r, dropout: 0, targetModules: [...targets] }), pool);
}

async function measure(model: CausalLm, lora: LoraConfig, partial: readonly string[], path: EnginePath, pool: Float32Array): Promise<Record<string, number>> {
  const ed = await openEngineDevice();
  if ('error' in ed) throw new Error(ed.error);
  const config = model.config;
  const weights = await model.namedWeights();
  const e = new LoraEngine(ed, { config, weights, adapter: initLoraAdapter(config, lora, 1), batch: 1, seq: 16, path, loraScale: loraScaling(lora) });
  const errs = await e.compileErrors();
  if (errs.length > 0) throw new Error(errs[0]);
  progress(`engine built (${ed.caps.adapter}, ${path})`);
  const K = config.nEmbd;
  const targets = lora.targetModules as readonly string[];
  // The restore as it was: the whole model's projections packed, rounded value by value and uploaded.
  const src = { config, weights, path, seq: 16 };
  const byValue = (a: Float32Array): Uint16Array => {
    const out = new Uint16Array(a.length + (a.length & 1));
    for (let i = 0; i < a.length; i++) out[i] = halfBits(a[i]);
    return out;
  };
  const wBytes = Math.ceil((e.layout.wSize * (path === 'f32' ? 4 : 2)) / 4) * 4;
  const scratch = ed.device.createBuffer({ label: 'old-restore', size: wBytes, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
  const oldRestore = async (): Promise<void> => {
    const w = packedProjections(src, e.layout);
    const data = path === 'f32' ? w : byValue(w);
    ed.device.queue.writeBuffer(scratch, 0, data.buffer, data.byteOffset, data.byteLength);
    await e.idle();
  };
  const newRestore = async (): Promise<void> => {
    e.restoreBase();
    await e.idle();
  };
  const out: Record<string, number> = {};
  const sample = { merge: [] as number[], restore: [] as number[], old: [] as number[] };
  // Rank 40 on every target: merge, W0 back (new and old), three times; the host's ΔW once.
  const all40 = stackOf(model, targets, 40, pool);
  for (let i = 0; i < 3; i++) {
    sample.merge.push(await time(() => e.mergeStack(all40)));
    sample.restore.push(await time(newRestore));
    sample.old.push(await time(oldRestore));
  }
  out.gpu_merge_ms_r40 = median(sample.merge);
  out.restore_new_ms_all = median(sample.restore);
  out.restore_old_ms = median(sample.old);
  out.host_deltaW_ms_r40 = await time(() => new MergedBase(model, all40).dispose());
  const proj = packedProjections(src, e.layout);
  out.f16_convert_ms_old = await time(() => byValue(proj));
  out.f16_convert_ms_new = await time(() => toHalfBits(proj));
  progress('rank 40 done');
  // Rank K: the merge three times (each from W0 again: same modules, nothing to put back), the host's ΔW once.
  const allK = stackOf(model, targets, K, pool);
  const mergeK: number[] = [];
  for (let i = 0; i < 3; i++) mergeK.push(await time(() => e.mergeStack(allK)));
  out[`gpu_merge_ms_r${K}`] = median(mergeK);
  out[`host_deltaW_ms_r${K}`] = await time(() => new MergedBase(model, allK).dispose());
  progress(`rank ${K} done`);
  // W0 back after a stack on `partial` alone (the first merge here also puts back every module but those).
  const part = stackOf(model, partial, 40, pool);
  const partRestore: number[] = [];
  for (let i = 0; i < 3; i++) {
    await e.mergeStack(part);
    partRestore.push(await time(newRestore));
  }
  out.restore_new_ms_partial = median(partRestore);
  out.host_over_gpu_r40 = out.host_deltaW_ms_r40 / out.gpu_merge_ms_r40;
  out[`host_over_gpu_r${K}`] = out[`host_deltaW_ms_r${K}`] / out[`gpu_merge_ms_r${K}`];
  out.restore_old_over_new_all = out.restore_old_ms / out.restore_new_ms_all;
  out.restore_old_over_new_partial = out.restore_old_ms / out.restore_new_ms_partial;
  out.f16_convert_old_over_new = out.f16_convert_ms_old / out.f16_convert_ms_new;
  scratch.destroy();
  await e.dispose();
  ed.device.destroy();
  return out;
}

async function main(): Promise<void> {
  await selectBackend({ force: 'wasm' }); // tfjs holds the model and computes the host's ΔW; the engine owns the GPU
  const path = pick('--path', 'f16') as EnginePath;
  // One JSON line per model, printed as soon as it is measured (a time limit then keeps what was measured).
  for (const name of pick('--models', 'gpt2').split(',')) {
    const llama = name === 'llama' && !args.includes('--tiny');
    const config = args.includes('--tiny') ? TINY : llama ? LLAMA_125M : GPT2_SMALL;
    const lora = llama ? LLAMA_LORA : GPT2_LORA;
    const shapes = 'family' in config ? llamaParameterShapes(config) : gpt2ParameterShapes(config);
    const K = config.nEmbd;
    const most = Math.max(...[...shapes.values(), ...loraTensorShapes(config, { ...lora, r: K, alpha: K }).values()].map((s) => s.reduce((a, b) => a * b, 1)));
    const rng = new Prng(6);
    const pool = new Float32Array(most);
    for (let i = 0; i < most; i++) pool[i] = (rng.nextFloat() - 0.5) * 0.02;
    const weights = views(shapes, pool);
    const model = 'family' in config ? LlamaModel.fromTensors(config, weights) : Gpt2Model.fromTensors(config, weights);
    progress(`${name} model ready`);
    const partial = llama ? ['q_proj', 'v_proj'] : ['c_attn'];
    const ms = await measure(model, lora, partial, path, pool);
    const figures = Object.fromEntries(Object.entries(ms).map(([k, v]) => [k, Number(v.toPrecision(4))]));
    const seconds = Number(((performance.now() - T0) / 1000).toFixed(1));
    const what = { bench: 'engine-flora-merge', path, model: args.includes('--tiny') ? 'tiny-gpt2' : name, partial: partial.join('+') };
    console.log(JSON.stringify({ ...what, ...figures, seconds }));
    model.dispose();
  }
}

main().catch((e: Error) => {
  console.error(e.stack ?? String(e));
  process.exit(1);
});
