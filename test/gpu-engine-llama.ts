// The Llama family on the WebGPU engine, for `npm run test:gpu` (called from test/gpu-engine.ts): one step's loss
// and every adapter gradient against the tfjs reference (model/llama.ts) on the same weights and data, determinism,
// and N steps of the engine trainer against the tfjs trainer (mean loss and the adapter it ends with). Tiny random
// configs cover grouped-query attention, head_dim ≠ hidden/heads, Qwen2's q/k/v biases, an untied LM head, llama3
// rope scaling, Qwen3's per-head q/k RMSNorm (with attention_bias), Mistral's sliding window (shorter than the
// sequence), Gemma 3's layer (local / global / local with their own windows and rope tables, (1 + w) norms around
// both sublayers, scaled embeddings, GELU MLP, query_pre_attn_scalar) and all seven LoRA module names; `--long` adds
// the demo base (examples/llama-base). Qwen3 and Gemma 3 are also checked against torch itself: the HF fixtures
// test/fixtures/llama/qwen3 (head_dim 32 ≠ 64/4) and gemma3 (head_dim 32 ≠ 48/4, window 3 over 8 tokens), bf16
// weights, PEFT adapter on all seven projections, with the loss and LoRA gradients transformers + peft computed.
// `--llama-configs qwen3,llama` runs those configs' checks only.
// Runs on lavapipe too: FEDTUNE_ENGINE_SOFTWARE=1 node dist/test/gpu-engine.js --paths f32 --only-llama
import * as tf from '@tensorflow/tfjs-core';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LlamaModel } from '../client-sdk/model/llama';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { loadModelDir } from '../client-sdk/model/load';
import { parseLlamaConfig, type LlamaConfig } from '../proto/model/llama-config';
import { canonicalAdapter, initLoraAdapter, loraScaling, type LoraConfig } from '../proto/model/lora-layout';
import { loadPeftAdapterDir } from '../client-sdk/model/lora-io';
import { readSafetensors } from '../proto/safetensors';
import { Prng } from '../proto/prng';
import type { NamedTensor } from '../proto/tensors';
import { FlatAdapter } from '../client-sdk/sft/flat-adapter';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { packBatch } from '../client-sdk/sft/pack';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import type { EngineDevice } from '../client-sdk/engine/device';
import { EngineSftTrainer } from '../client-sdk/engine/trainer';
import type { EnginePath } from '../client-sdk/engine/program';
import type { EngineTuning } from '../client-sdk/engine/tuning';
import { relErr } from './rel-err';
import { TINY_QWEN3_JSON } from './tiny-qwen3';
import { TINY_MISTRAL_JSON } from './tiny-mistral';
import { TINY_GEMMA3_JSON } from './tiny-gemma3';
import { engineStep, stepTolerance } from './gpu-engine-step';

type Check = (name: string, ok: boolean, detail: string) => void;

const ALL7 = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/**
 * Tiny configs: Llama with GQA 4:2; Qwen2 with biases, untied head, head_dim 16 ≠ 32/4, llama3 rope; Qwen3 with its
 * q/k norms (weightsFor draws them away from 1), q/k/v/o biases before them, head_dim 16 ≠ 32/4, GQA 4:2.
 */
export const TINY_LLAMAS: readonly { name: string; config: LlamaConfig }[] = [
  {
    name: 'llama gqa 4:2',
    config: parseLlamaConfig({
      model_type: 'llama',
      vocab_size: 300,
      hidden_size: 32,
      intermediate_size: 64,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      max_position_embeddings: 64,
      rms_norm_eps: 1e-5,
      rope_theta: 10000,
    }),
  },
  {
    name: 'qwen2 bias+untied+llama3 rope',
    config: parseLlamaConfig({
      model_type: 'qwen2',
      vocab_size: 300,
      hidden_size: 32,
      intermediate_size: 48,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 1,
      head_dim: 16,
      max_position_embeddings: 64,
      rms_norm_eps: 1e-6,
      rope_theta: 500000,
      rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
      tie_word_embeddings: false,
    }),
  },
  {
    name: 'qwen3 q/k norms+bias',
    config: parseLlamaConfig({ ...TINY_QWEN3_JSON, attention_bias: true }),
  },
  // test/tiny-mistral.ts: window 6, shorter than the checks' sequences (up to 32 tokens).
  { name: 'mistral sliding window 6', config: parseLlamaConfig(TINY_MISTRAL_JSON) },
  {
    // tiny-gemma3.ts's local / global / local layers: window 4, shorter than the checks' sequences, head_dim 16 ≠
    // 32/4, query_pre_attn_scalar 12, linear global rope.
    name: 'gemma3 local/global window 4',
    config: parseLlamaConfig({ ...TINY_GEMMA3_JSON, max_position_embeddings: 64 }),
  },
];

function synthTask(V: number, n: number, seed: number, promptLen: number, complLen: number): { prompt: number[]; completion: number[] }[] {
  const rng = new Prng(seed);
  return Array.from({ length: n }, () => {
    const prompt = Array.from({ length: promptLen }, () => 1 + rng.nextInt(Math.min(V - 1, 200)));
    return { prompt, completion: prompt.slice().reverse().slice(0, complLen) };
  });
}

/** Random weights with non-trivial biases (HF initialises them to zero, which would hide a missing bias). */
export function weightsFor(cfg: LlamaConfig, seed: number): NamedTensor[] {
  return randomLlamaWeights(cfg, seed, 0.08).map((t) => {
    if (t.name.endsWith('.bias')) {
      const rng = new Prng(seed, t.data.length);
      return { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.2) };
    }
    if (t.name.endsWith('norm.weight')) {
      // Scales in [0.8, 1.2]: Gemma 3 stores w of a (1 + w) scale.
      const rng = new Prng(seed + 1, t.data.length);
      const at = cfg.gemma3 ? -0.2 : 0.8;
      return { ...t, data: Float32Array.from(t.data, () => at + 0.4 * rng.nextFloat()) };
    }
    return t;
  });
}

/** One step against tfjs on each path (with `tuning`'s kernels, else the path's defaults); each path's loss and gradient. */
export async function stepParity(
  ed: EngineDevice,
  paths: EnginePath[],
  check: Check,
  name: string,
  model: LlamaModel,
  lora: LoraConfig,
  tuning?: EngineTuning,
): Promise<Map<EnginePath, { loss: number; grad: Float32Array }>> {
  const out = new Map<EnginePath, { loss: number; grad: Float32Array }>();
  const cfg = model.config;
  const weights = await model.namedWeights();
  const adapter: NamedTensor[] = initLoraAdapter(cfg, lora, 5).map((t) => {
    const rng = new Prng(9, t.data.length);
    return t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.1) } : t;
  });
  const B = 3;
  const T = 40;
  const ex = synthTask(cfg.vocabSize, B, 11, 16, 16);
  const packed = packBatch(
    ex.map((e, i) => {
      // Uneven lengths, so padding and partial rows are exercised.
      const tokens = [...e.prompt, ...e.completion].slice(0, 32 - 3 * i);
      return { tokens, pairs: tokens.slice(e.prompt.length).map((target, k) => ({ pos: e.prompt.length + k - 1, target })) };
    }),
    T,
  );
  const flat = new FlatAdapter(adapter);
  const scaling = loraScaling(lora);
  const { value, grads } = tf.variableGrads(
    () => tf.neg(tf.mean(pairLogProbs(model, packed, { lora: { modules: flat.modules(), scaling, dropout: 0 } }, true))) as tf.Scalar,
    [flat.theta],
  );
  const refLoss = (await value.data())[0];
  const refGrad = new Float32Array(await grads[flat.theta.name].data());
  const theta0 = new Float32Array(await flat.theta.data());
  const pairPos = Int32Array.from(packed.pairRow, (r) => packed.rows[r]);
  const inp = { ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget };
  for (const p of paths) {
    const run = await engineStep(
      ed,
      { config: cfg, weights, adapter, batch: packed.batch, seq: packed.seq, path: p, loraScale: scaling, ...(tuning ? { tuning } : {}) },
      theta0,
      inp,
      check,
      `llama step ${p} ${name}`,
    );
    if (!run) continue;
    const { e, loss, grad } = run;
    out.set(p, { loss, grad: grad.slice() });
    const tol = stepTolerance(p);
    check(
      `llama step ${p} ${name}: loss vs tfjs`,
      Math.abs(loss - refLoss) / refLoss < tol.loss,
      `engine ${loss} tfjs ${refLoss} (${e.dispatchesPerStep} dispatches, ${e.pipelineCount} pipelines)`,
    );
    let worst = 0;
    let worstName = '';
    let off = 0;
    for (const t of adapter) {
      const n = t.data.length;
      const er = relErr(grad.subarray(off, off + n), refGrad.subarray(off, off + n));
      if (er > worst) [worst, worstName] = [er, t.name.replace('base_model.model.model.', '')];
      off += n;
    }
    check(
      `llama step ${p} ${name}: every adapter gradient vs tfjs`,
      worst < tol.grad,
      `worst per-tensor rel err ${worst.toExponential(2)} (${worstName}); global ${relErr(grad, refGrad).toExponential(2)}; ${adapter.length} tensors`,
    );
    e.setAdapter(theta0);
    e.step({ ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget, lr: 1e-3, weightDecay: 0.01 });
    const th1 = await e.readF32('theta', e.layout.adapterSize);
    e.setAdapter(theta0);
    e.step({ ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget, lr: 1e-3, weightDecay: 0.01 });
    const th2 = await e.readF32('theta', e.layout.adapterSize);
    check(`llama step ${p} ${name}: deterministic`, Buffer.compare(Buffer.from(th1.buffer), Buffer.from(th2.buffer)) === 0, 'two runs, same adapter bytes');
    await e.dispose();
  }
  flat.dispose();
  return out;
}

/**
 * One engine step on test/fixtures/llama/<family> (qwen3, gemma3) against torch's own numbers
 * (make_llama_parity.py): the causal-LM loss with labels = input_ids (every next token scored) and every LoRA A/B
 * gradient, with the tolerances of the tfjs comparisons above.
 */
async function torchFixture(ed: EngineDevice, paths: EnginePath[], check: Check, family: 'qwen3' | 'gemma3'): Promise<void> {
  const dir = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', family);
  const { model } = await loadModelDir(path.join(dir, 'base'));
  if (!(model instanceof LlamaModel) || !model.config.qkNorm || (family === 'gemma3') !== !!model.config.gemma3)
    throw new Error(`the ${family} fixture is not a ${family} model`);
  const peft = await loadPeftAdapterDir(path.join(dir, 'lora'));
  const info = JSON.parse(fs.readFileSync(path.join(dir, 'info.json'), 'utf8')) as { input_ids: number[][]; lora_loss: number };
  const torch = new Map(canonicalAdapter(readSafetensors(fs.readFileSync(path.join(dir, 'grads.safetensors'))).tensors).map((t) => [t.name, t.data]));
  const ids = info.input_ids;
  const packed = packBatch(
    ids.map((row) => ({ tokens: row, pairs: row.slice(1).map((target, pos) => ({ pos, target })) })),
    ids[0].length,
  );
  const weights = await model.namedWeights();
  const theta0 = new Float32Array(peft.adapter.reduce((s, t) => s + t.data.length, 0));
  let at = 0;
  for (const t of peft.adapter) {
    theta0.set(t.data, at);
    at += t.data.length;
  }
  const pairPos = Int32Array.from(packed.pairRow, (r) => packed.rows[r]);
  const cfg = model.config;
  const g = cfg.gemma3;
  const shape = `head_dim ${cfg.headDim}, hidden ${cfg.nEmbd} / ${cfg.nHead} heads : ${cfg.nKvHead}${g ? `, window ${g.slidingWindow}` : ''}`;
  for (const p of paths) {
    const opts = { config: cfg, weights, adapter: peft.adapter, batch: packed.batch, seq: packed.seq, path: p, loraScale: loraScaling(peft.config) };
    const run = await engineStep(ed, opts, theta0, { ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget }, check, `${family} fixture ${p}`);
    if (!run) continue;
    const { e, loss, grad } = run;
    const tol = stepTolerance(p);
    check(
      `${family} fixture ${p}: loss vs torch`,
      Math.abs(loss - info.lora_loss) / info.lora_loss < tol.loss,
      `engine ${loss} torch ${info.lora_loss} (${shape})`,
    );
    let worst = 0;
    let worstName = '';
    let off = 0;
    let missing = 0;
    for (const t of peft.adapter) {
      const ref = torch.get(t.name);
      const n = t.data.length;
      if (!ref || ref.length !== n) missing++;
      else {
        const er = relErr(grad.subarray(off, off + n), ref);
        if (er > worst) [worst, worstName] = [er, t.name.replace('base_model.model.model.', '')];
      }
      off += n;
    }
    check(
      `${family} fixture ${p}: every LoRA gradient vs torch autograd`,
      missing === 0 && worst < tol.grad,
      `worst per-tensor rel err ${worst.toExponential(2)} (${worstName}); ${peft.adapter.length} tensors, ${missing} without a torch gradient`,
    );
    await e.dispose();
  }
  model.dispose();
}

/** `steps` steps of the engine trainer against the tfjs trainer: mean loss within 1%, adapters within `adapterTol`. */
async function trainRun(ed: EngineDevice, paths: EnginePath[], check: Check, name: string, model: LlamaModel, lora: LoraConfig, steps: number): Promise<void> {
  const train = synthTask(model.config.vocabSize, 64, 21, 12, 12);
  const adapter = initLoraAdapter(model.config, lora, 1);
  const plan = { round: 1, taskId: 'llama', localSteps: steps, batchSize: 4, learningRate: 2e-3, weightDecay: 0.01, maxSeqLen: 32, seed: 4 };
  const ref = await new LoraSftTrainer({ model, lora, train }).train(adapter, plan);
  const dist = (a: readonly NamedTensor[], b: readonly NamedTensor[]): number =>
    Math.sqrt(a.reduce((s, t, k) => s + t.data.reduce((u, x, i) => u + (x - b[k].data[i]) ** 2, 0), 0));
  for (const p of paths) {
    const t = new EngineSftTrainer({ model, lora, train, device: ed, path: p });
    const out = await t.train(adapter, plan);
    const a = out.metrics.train_loss;
    const b = ref.metrics.train_loss;
    check(
      `llama ${steps} steps ${p} ${name}: mean train loss vs tfjs trainer`,
      Math.abs(a - b) / b < 0.01,
      `engine ${a.toFixed(5)} tfjs ${b.toFixed(5)} (${((100 * Math.abs(a - b)) / b).toFixed(4)}%), engine ${out.metrics.train_seconds.toFixed(2)} s, tfjs ${ref.metrics.train_seconds.toFixed(2)} s`,
    );
    if (p === 'f32') {
      const gap = dist(out.adapter, ref.adapter) / dist(ref.adapter, adapter);
      check(`llama ${steps} steps ${p} ${name}: same adapter as the tfjs trainer's`, gap < 0.01, `difference ${(100 * gap).toFixed(4)}% of the distance moved`);
    }
    await t.dispose();
  }
}

export async function llamaEngineTests(
  ed: EngineDevice,
  paths: EnginePath[],
  check: Check,
  opts: { long: boolean; steps: number; configs?: readonly string[] },
): Promise<void> {
  // A config is picked by its first word (llama, qwen2, qwen3, gemma3); none named: all of them.
  const picked = (name: string): boolean => !opts.configs || opts.configs.includes(name.split(' ')[0]);
  // Gemma 3, Qwen3 and Qwen2 first: they exercise the most (Gemma's layer; q/k norms; biases, untied head,
  // head_dim ≠ hidden/heads, GQA, llama3 rope).
  for (const { name, config } of [...TINY_LLAMAS].reverse()) {
    if (!picked(name)) continue;
    const model = LlamaModel.fromTensors(config, weightsFor(config, 3));
    await stepParity(ed, paths, check, name, model, { r: 4, alpha: 8, dropout: 0, targetModules: ALL7 });
    model.dispose();
  }
  // Training runs, and a subset of modules, so projections without LoRA are covered too (Qwen3: q_proj without
  // LoRA still goes through its norm).
  for (const family of ['qwen3', 'gemma3'] as const) if (picked(family)) await torchFixture(ed, paths, check, family);
  const subsets: [number, string, string[]][] = [
    [0, 'llama q,v only', ['q_proj', 'v_proj']],
    [2, 'qwen3 k,o only', ['k_proj', 'o_proj']],
    [3, 'mistral window q,v only', ['q_proj', 'v_proj']],
    [4, 'gemma3 k,o,down only', ['k_proj', 'o_proj', 'down_proj']],
  ];
  for (const [i, subName, targets] of subsets) {
    const { name, config } = TINY_LLAMAS[i];
    if (!picked(name)) continue;
    const model = LlamaModel.fromTensors(config, weightsFor(config, 4));
    await trainRun(ed, paths, check, name, model, { r: 4, alpha: 8, dropout: 0, targetModules: ALL7 }, 20);
    await stepParity(ed, paths, check, subName, model, { r: 8, alpha: 16, dropout: 0, targetModules: targets });
    model.dispose();
  }
  if (opts.long) {
    const { model: base } = await loadModelDir(path.resolve(__dirname, '..', '..', 'examples', 'llama-base'));
    if (base instanceof LlamaModel)
      await trainRun(ed, paths, check, 'examples/llama-base', base, { r: 16, alpha: 32, dropout: 0, targetModules: ALL7 }, opts.steps);
    base.dispose();
  }
}
