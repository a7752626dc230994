// LoRA dropout on the WebGPU engine (run by test/gpu-engine.ts, `--only-dropout` alone; runs on lavapipe too:
// FEDTUNE_ENGINE_SOFTWARE=1 node dist/test/gpu-engine.js --paths f32,f16 --only-dropout). The WGSL mask against
// model/dropout-mask.ts's CPU function, bit for bit; one step with dropout 0.1 (loss and every adapter gradient)
// against the tfjs reference drawing the same masks, on the demo GPT-2 (examples/base-model) and a tiny Qwen2
// (all seven LoRA modules: q/k/v and gate/up share an input, each has its own mask); bit-identical reruns; the
// mask really applies (the gradients differ from dropout 0's); and a site's trainer (trainerForModel, the SDK's
// default dropout 0.05) training a plan with dropout on the engine, against the tfjs trainer over a few steps.
import * as tf from '@tensorflow/tfjs-core';
import * as path from 'node:path';
import { loadGpt2Dir } from '../client-sdk/model/load';
import type { CausalLm } from '../client-sdk/model/load';
import { LlamaModel } from '../client-sdk/model/llama';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { dropoutMaskWgsl, dropoutStepKey, dropoutModuleKey, fillDropoutMask } from '../client-sdk/model/dropout-mask';
import { initLoraAdapter, loraScaling, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import type { NamedTensor } from '../proto/tensors';
import { FlatAdapter } from '../client-sdk/sft/flat-adapter';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { packBatch } from '../client-sdk/sft/pack';
import { LoraSftTrainer, trainerForModel } from '../client-sdk/sft/lora-trainer';
import type { EngineDevice } from '../client-sdk/engine/device';
import { LoraEngine } from '../client-sdk/engine/engine';
import type { EnginePath } from '../client-sdk/engine/program';
import { TINY_LLAMAS } from './gpu-engine-llama';
import { relErr } from './rel-err';

type Check = (name: string, ok: boolean, detail: string) => void;

const MODEL_DIR = path.resolve(__dirname, '..', '..', 'examples', 'base-model');
const P = 0.1;
const ALL7 = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

const same = (a: Float32Array, b: Float32Array): boolean =>
  Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;

/** The WGSL lora_keep over a [rows, cols] grid, read back, against fillDropoutMask: the same bits. */
export async function maskKernelCheck(ed: EngineDevice, check: Check): Promise<void> {
  const [rows, cols, seq] = [48, 200, 16];
  const key = dropoutModuleKey(dropoutStepKey(7, 3), 1, 'attn.c_attn');
  for (const p of [0.05, 0.1, 0.5]) {
    const code = `@group(0) @binding(0) var<storage, read_write> out: array<f32>;
${dropoutMaskWgsl(seq, p)}
@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x >= ${rows * cols}u) { return; }
  out[g.x] = lora_keep(${key}u, g.x / ${cols}u, g.x % ${cols}u);
}`;
    const dev = ed.device;
    const size = rows * cols * 4;
    const buf = dev.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const rd = dev.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const pipeline = dev.createComputePipeline({ layout: 'auto', compute: { module: dev.createShaderModule({ code }), entryPoint: 'main' } });
    const bg = dev.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: buf } }] });
    const enc = dev.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bg);
    pass.dispatchWorkgroups(Math.ceil((rows * cols) / 64));
    pass.end();
    enc.copyBufferToBuffer(buf, 0, rd, 0, size);
    dev.queue.submit([enc.finish()]);
    await rd.mapAsync(GPUMapMode.READ);
    const got = new Float32Array(rd.getMappedRange().slice(0));
    rd.unmap();
    buf.destroy();
    rd.destroy();
    const want = fillDropoutMask(new Float32Array(rows * cols), key, rows, cols, seq, p);
    const dropped = want.filter((x) => x === 0).length / want.length;
    check(`dropout mask p=${p}: WGSL = CPU bit for bit`, same(got, want), `${rows}×${cols}, ${(100 * dropped).toFixed(1)}% dropped`);
  }
}

/** A synthetic batch with uneven lengths (padding and partial rows exercised). */
function batchFor(V: number, B: number, T: number): ReturnType<typeof packBatch> {
  const rng = new Prng(11);
  return packBatch(
    Array.from({ length: B }, (_, i) => {
      const prompt = Array.from({ length: 14 }, () => 1 + rng.nextInt(Math.min(V - 1, 200)));
      const tokens = [...prompt, ...prompt.slice().reverse()].slice(0, 28 - 3 * i);
      return { tokens, pairs: tokens.slice(prompt.length).map((target, k) => ({ pos: prompt.length + k - 1, target })) };
    }),
    T,
  );
}

/** One step with dropout P against tfjs with the same masks; reruns bit-identical; the masks make a difference. */
async function dropoutStep(ed: EngineDevice, paths: readonly EnginePath[], check: Check, name: string, model: CausalLm, lora: LoraConfig): Promise<void> {
  const cfg = model.config;
  const weights = await model.namedWeights();
  const adapter: NamedTensor[] = initLoraAdapter(cfg, lora, 5).map((t) => {
    const rng = new Prng(9, t.data.length);
    return t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.1) } : t;
  });
  const packed = batchFor(cfg.vocabSize, 3, 40);
  const stepKey = dropoutStepKey(1234, 5);
  const flat = new FlatAdapter(adapter);
  const scaling = loraScaling(lora);
  const ref = async (p: number): Promise<{ loss: number; grad: Float32Array }> => {
    const { value, grads } = tf.variableGrads(
      () => tf.neg(tf.mean(pairLogProbs(model, packed, { lora: { modules: flat.modules(), scaling, dropout: p }, dropoutStep: stepKey }, true))) as tf.Scalar,
      [flat.theta],
    );
    const out = { loss: (await value.data())[0], grad: new Float32Array(await grads[flat.theta.name].data()) };
    value.dispose();
    Object.values(grads).forEach((g) => g.dispose());
    return out;
  };
  const r = await ref(P);
  const r0 = await ref(0);
  const theta0 = new Float32Array(await flat.theta.data());
  const pairPos = Int32Array.from(packed.pairRow, (x) => packed.rows[x]);
  const step = { ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget, dropoutStep: stepKey };
  for (const p of paths) {
    const e = new LoraEngine(ed, { config: cfg, weights, adapter, batch: packed.batch, seq: packed.seq, path: p, loraScale: scaling, dropout: P });
    const errs = await e.compileErrors();
    if (errs.length) {
      check(`dropout step ${p} ${name}: compiles`, false, errs.slice(0, 3).join(' | '));
      continue;
    }
    e.setAdapter(theta0);
    e.step({ ...step, lr: 0, weightDecay: 0 });
    const [loss] = await e.readLoss();
    const grad = await e.readF32('grad', e.layout.adapterSize);
    const [tolLoss, tolGrad] = p === 'f32' ? [1e-5, 1e-4] : [2e-3, 3e-2];
    check(
      `dropout ${P} step ${p} ${name}: loss vs tfjs (same masks)`,
      Math.abs(loss - r.loss) / r.loss < tolLoss,
      `engine ${loss} tfjs ${r.loss} (dropout 0: ${r0.loss})`,
    );
    let worst = 0;
    let worstName = '';
    let off = 0;
    for (const t of adapter) {
      const n = t.data.length;
      const er = relErr(grad.subarray(off, off + n), r.grad.subarray(off, off + n));
      if (er > worst) [worst, worstName] = [er, t.name.replace(/^base_model\.model\.(transformer\.|model\.)?/, '')];
      off += n;
    }
    check(
      `dropout ${P} step ${p} ${name}: every adapter gradient vs tfjs`,
      worst < tolGrad,
      `worst per-tensor rel err ${worst.toExponential(2)} (${worstName}); global ${relErr(grad, r.grad).toExponential(2)}; vs dropout 0's ${relErr(grad, r0.grad).toExponential(2)}`,
    );
    // The masks matter: dropout moves the gradients by far more than the engine's distance from tfjs.
    const effect = relErr(r.grad, r0.grad);
    check(
      `dropout ${P} step ${p} ${name}: the masks apply`,
      effect > 10 * worst,
      `dropout moves tfjs's gradients by ${effect.toExponential(2)}; 10× the engine's error is ${(10 * worst).toExponential(2)}`,
    );
    const run = async (): Promise<Float32Array> => {
      e.setAdapter(theta0);
      e.step({ ...step, lr: 1e-3, weightDecay: 0.01 });
      e.step({ ...step, dropoutStep: dropoutStepKey(1234, 6), lr: 1e-3, weightDecay: 0.01 });
      return e.readF32('theta', e.layout.adapterSize);
    };
    check(`dropout ${P} step ${p} ${name}: deterministic`, same(await run(), await run()), 'two runs of two steps, same adapter bytes');
    await e.dispose();
  }
  flat.dispose();
}

/** The engine trainer against the tfjs trainer on a plan with dropout (same masks): mean loss, adapter, reruns. */
async function dropoutTrain(
  ed: EngineDevice,
  paths: readonly EnginePath[],
  check: Check,
  name: string,
  model: CausalLm,
  lora: LoraConfig,
  steps: number,
): Promise<void> {
  const rng = new Prng(21);
  const train = Array.from({ length: 32 }, () => {
    const prompt = Array.from({ length: 12 }, () => 1 + rng.nextInt(Math.min(model.config.vocabSize - 1, 200)));
    return { prompt, completion: prompt.slice().reverse() };
  });
  const adapter = initLoraAdapter(model.config, lora, 1);
  const plan = { round: 1, taskId: 'dropout', localSteps: steps, batchSize: 4, learningRate: 2e-3, weightDecay: 0.01, maxSeqLen: 32, seed: 4, loraDropout: P };
  const ref = await new LoraSftTrainer({ model, lora, train }).train(adapter, plan);
  const dist = (a: readonly NamedTensor[], b: readonly NamedTensor[]): number =>
    Math.sqrt(a.reduce((s, t, k) => s + t.data.reduce((u, x, i) => u + (x - b[k].data[i]) ** 2, 0), 0));
  for (const p of paths) {
    // As a site builds its trainer (FEDTUNE_ENGINE=<path>), with the SDK's default lora.dropout 0.05 (the plan's
    // P wins): the engine trains it, and says so.
    const prev = process.env.FEDTUNE_ENGINE;
    process.env.FEDTUNE_ENGINE = p;
    const site = await trainerForModel(model, { ...lora, dropout: 0.05 }, { train });
    if (prev === undefined) delete process.env.FEDTUNE_ENGINE;
    else process.env.FEDTUNE_ENGINE = prev;
    const t = site.trainer;
    const out = await t.train(adapter, plan);
    const again = await t.train(adapter, plan);
    const [a, b] = [out.metrics.train_loss, ref.metrics.train_loss];
    check(
      `dropout ${P} ${steps} steps ${p} ${name}: a site's trainer trains on the engine; mean train loss vs tfjs trainer`,
      t.backend === `engine-${p}` && Math.abs(a - b) / b < 0.01,
      `backend ${t.backend}; engine ${a.toFixed(5)} tfjs ${b.toFixed(5)}`,
    );
    if (p === 'f32') {
      const gap = dist(out.adapter, ref.adapter) / dist(ref.adapter, adapter);
      check(
        `dropout ${P} ${steps} steps ${p} ${name}: same adapter as the tfjs trainer's`,
        gap < 0.01,
        `difference ${(100 * gap).toFixed(4)}% of the distance moved`,
      );
    }
    check(
      `dropout ${P} ${steps} steps ${p} ${name}: rerun bit-identical`,
      out.adapter.every((x, k) => same(x.data, again.adapter[k].data)),
      'same plan, same adapter bytes',
    );
    await (t as { dispose?: () => Promise<void> }).dispose?.();
  }
}

/** `long`: the engine trainer on the demo GPT-2 too (slow on lavapipe). Cheapest first, so a slow run still says most. */
export async function dropoutEngineTests(ed: EngineDevice, paths: readonly EnginePath[], check: Check, opts: { long?: boolean } = {}): Promise<void> {
  await maskKernelCheck(ed, check);
  const { config } = TINY_LLAMAS[1];
  const llama = LlamaModel.fromTensors(config, randomLlamaWeights(config, 3, 0.08));
  await dropoutStep(ed, paths, check, 'tiny qwen2', llama, { r: 4, alpha: 8, dropout: P, targetModules: ALL7 });
  await dropoutTrain(ed, paths, check, 'tiny qwen2', llama, { r: 4, alpha: 8, dropout: 0, targetModules: ALL7 }, 4);
  llama.dispose();
  const { model } = await loadGpt2Dir(MODEL_DIR);
  await dropoutStep(ed, paths, check, 'gpt2 demo', model, { r: 16, alpha: 32, dropout: P, targetModules: ['c_attn', 'c_proj', 'c_fc'] });
  if (opts.long) await dropoutTrain(ed, paths, check, 'gpt2 demo', model, { r: 8, alpha: 16, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] }, 6);
  model.dispose();
}
