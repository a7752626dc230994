// LoRA dropout's mask (client-sdk/model/dropout-mask.ts), the one definition the tfjs trainer and the WebGPU engine
// share: its statistics (the dropped fraction, inverted scaling, no correlation between neighbours, modules, steps
// or seeds), determinism (pinned bits: a change to the hash changes what every site trains), and rows keyed by
// token (b, t) so the engine's padded window and tfjs's packed one agree; the tfjs model drops only the LoRA
// branch's input; and the engine's step programs: dropout 0 adds nothing, dropout > 0 adds no dispatch and only
// per-module keys, fused into the LoRA kernels only. The kernels against tfjs: test/gpu-engine-dropout.ts.
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs-core';
import '../client-sdk/model/gradients';
import {
  dropoutBits,
  dropoutKeepScale,
  dropoutModuleKey,
  dropoutStepKey,
  dropoutThreshold,
  fillDropoutMask,
  modulePathParts,
} from '../client-sdk/model/dropout-mask';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { parseLlamaConfig } from '../proto/model/llama-config';
import { initLoraAdapter, loraScaling, type LoraConfig } from '../proto/model/lora-layout';
import { modelLayout } from '../client-sdk/engine/layout';
import { llamaLayout } from '../client-sdk/engine/layout-llama';
import { buildProgram, type EnginePath, type Program } from '../client-sdk/engine/program';
import { buildLlamaProgram } from '../client-sdk/engine/program-llama';
import { engineMemory } from '../client-sdk/engine/memory';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { selectBackend } from '../client-sdk/model/backend';
import { FlatAdapter } from '../client-sdk/sft/flat-adapter';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { packBatch } from '../client-sdk/sft/pack';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
const GPT2 = parseGpt2Config({ vocab_size: 300, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 4 });
const LLAMA = parseLlamaConfig({
  model_type: 'llama',
  vocab_size: 300,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
});
const GPT2_LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
const ALL7: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };

const mask = (key: number, rows: number, cols: number, seq: number, p: number): Float32Array =>
  fillDropoutMask(new Float32Array(rows * cols), key, rows, cols, seq, p);
const dropped = (m: Float32Array): number => m.reduce((s, x) => s + (x === 0 ? 1 : 0), 0) / m.length;
/** Fraction of positions dropped in both masks. */
const both = (a: Float32Array, b: Float32Array): number => a.reduce((s, x, i) => s + (x === 0 && b[i] === 0 ? 1 : 0), 0) / a.length;

describe('LoRA dropout mask (model/dropout-mask.ts)', () => {
  const step = dropoutStepKey(42, 3);
  const n = 256 * 512;

  for (const p of [0.05, 0.1, 0.5]) {
    it(`p = ${p}: drops p of the values (within 5σ), keeps the rest at 1/(1 − p): the mean stays 1`, () => {
      const m = mask(dropoutModuleKey(step, 0, 'attn.c_attn'), 256, 512, 32, p);
      const sigma = Math.sqrt((p * (1 - p)) / n);
      expect(Math.abs(dropped(m) - p)).to.be.below(5 * sigma);
      expect(new Set(m)).to.deep.equal(new Set([0, Math.fround(1 / (1 - p))]));
      const mean = m.reduce((s, x) => s + x, 0) / n;
      expect(Math.abs(mean - 1)).to.be.below((5 * sigma) / (1 - p));
    });
  }

  it('no correlation between neighbouring features or tokens, modules sharing an input, steps or seeds', () => {
    const p = 0.1;
    const [rows, cols] = [256, 512];
    const m = mask(dropoutModuleKey(step, 1, 'self_attn.q_proj'), rows, cols, 32, p);
    const sigma = Math.sqrt((p * p * (1 - p * p)) / n);
    const near = (x: number, what: string): void => {
      expect(Math.abs(x - p * p), what).to.be.below(6 * sigma);
    };
    // Shifted by one feature, and by one token.
    near(both(m.subarray(0, n - 1), m.subarray(1)), 'next feature');
    near(both(m.subarray(0, n - cols), m.subarray(cols)), 'next token');
    const other = (key: number): Float32Array => mask(key, rows, cols, 32, p);
    near(both(m, other(dropoutModuleKey(step, 1, 'self_attn.k_proj'))), 'k_proj, same input');
    near(both(m, other(dropoutModuleKey(step, 0, 'self_attn.q_proj'))), 'another layer');
    near(both(m, other(dropoutModuleKey(dropoutStepKey(42, 4), 1, 'self_attn.q_proj'))), 'the next step');
    near(both(m, other(dropoutModuleKey(dropoutStepKey(43, 3), 1, 'self_attn.q_proj'))), 'another seed');
    // Seeds beyond 32 bits are not folded onto their low word.
    near(both(m, other(dropoutModuleKey(dropoutStepKey(42 + 2 ** 32, 3), 1, 'self_attn.q_proj'))), 'seed + 2³²');
  });

  it('is a pure function of (seed, step, layer, module, b, t, feature), pinned bit for bit', () => {
    const key = dropoutModuleKey(dropoutStepKey(7, 2), 3, 'mlp.c_fc');
    const a = mask(key, 40, 96, 20, 0.05);
    expect(Buffer.from(a.buffer).equals(Buffer.from(mask(key, 40, 96, 20, 0.05).buffer))).to.equal(true);
    // The pins: the engine's WGSL computes these very bits (gpu-engine-dropout.ts), and past rounds trained on them.
    expect([dropoutBits(key, 0, 0, 0), dropoutBits(key, 1, 5, 17), dropoutThreshold(0.05), dropoutThreshold(0.1)]).to.deep.equal(PINNED_BITS);
    expect(createHash('sha256').update(Buffer.from(a.buffer)).digest('hex').slice(0, 16)).to.equal(PINNED_MASK);
    expect(dropoutKeepScale(0.1)).to.equal(Math.fround(1 / 0.9));
  });

  it('rows are tokens (b, t): a longer padded window gives the same mask at every real token', () => {
    const key = dropoutModuleKey(step, 0, 'mlp.c_proj');
    const [B, cols] = [3, 24];
    const packed = mask(key, B * 10, cols, 10, 0.2);
    const padded = mask(key, B * 16, cols, 16, 0.2);
    for (let b = 0; b < B; b++)
      for (let t = 0; t < 10; t++)
        expect([...padded.subarray((b * 16 + t) * cols, (b * 16 + t + 1) * cols)]).to.deep.equal([
          ...packed.subarray((b * 10 + t) * cols, (b * 10 + t + 1) * cols),
        ]);
  });

  it('module paths of both tfjs families name the layer and the projection as the engine does', () => {
    expect(modulePathParts('h.11.attn.c_attn')).to.deep.equal({ layer: 11, proj: 'attn.c_attn' });
    expect(modulePathParts('layers.0.self_attn.q_proj')).to.deep.equal({ layer: 0, proj: 'self_attn.q_proj' });
    expect(() => modulePathParts('lm_head')).to.throw(/no layer index/);
    expect(() => dropoutThreshold(1)).to.throw(/outside/);
  });
});

describe('LoRA dropout in the tfjs model', function () {
  this.timeout(60_000);
  it('drops only the LoRA branch input: with B = 0 the loss is the undropped one; with B ≠ 0 it moves, per step key', async () => {
    await selectBackend();
    const model = Gpt2Model.fromTensors(GPT2, randomGpt2Weights(GPT2, 3));
    const packed = packBatch([{ tokens: [1, 5, 9, 14, 3, 7], pairs: [2, 3, 4].map((pos) => ({ pos, target: pos + 1 })) }], 16);
    const loss = (adapter: ReturnType<typeof initLoraAdapter>, p: number, stepKey?: number): number => {
      const flat = new FlatAdapter(adapter);
      const v = tf.tidy(
        () =>
          tf
            .neg(
              tf.mean(
                pairLogProbs(model, packed, { lora: { modules: flat.modules(), scaling: loraScaling(GPT2_LORA), dropout: p }, dropoutStep: stepKey }, false),
              ),
            )
            .dataSync()[0],
      );
      flat.dispose();
      return v;
    };
    const zeroB = initLoraAdapter(GPT2, GPT2_LORA, 1);
    expect(loss(zeroB, 0.5, 11)).to.equal(loss(zeroB, 0));
    const withB = zeroB.map((t) => (t.name.includes('lora_B') ? { ...t, data: t.data.map((_, i) => ((i % 5) - 2) / 20) } : t));
    const [off, k11, k12] = [loss(withB, 0), loss(withB, 0.5, 11), loss(withB, 0.5, 12)];
    expect(k11).to.not.equal(off);
    expect(k12).to.not.equal(k11);
    expect(loss(withB, 0.5, 11)).to.equal(k11);
    expect(loss(withB, 0.5)).to.equal(off); // no step key: evaluation, nothing dropped
    model.dispose();
  });
});

const lines = (p: Program): string[] => p.kernels.map((k) => `${k.label}\n${k.code}`);

describe('engine step programs with LoRA dropout', () => {
  const gpt2 = (path: EnginePath, dropout?: number): Program => {
    const layout = modelLayout(GPT2, initLoraAdapter(GPT2, GPT2_LORA, 1), 32);
    return buildProgram({ config: GPT2, layout, batch: 2, seq: 16, path, loraScale: 2, adam: ADAM, clip: true, ...(dropout === undefined ? {} : { dropout }) });
  };
  const llama = (path: EnginePath, dropout?: number): Program => {
    const layout = llamaLayout(LLAMA, initLoraAdapter(LLAMA, ALL7, 1), 32);
    return buildLlamaProgram({ config: LLAMA, layout, batch: 2, seq: 16, path, loraScale: 2, adam: ADAM, ...(dropout === undefined ? {} : { dropout }) });
  };
  for (const [family, build, modules] of [
    ['gpt2', gpt2, 2 * 4],
    ['llama', llama, 2 * 7],
  ] as const) {
    for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
      it(`${family} ${path}: dropout 0 is the program without dropout; 0.1 adds no dispatch, only keys, in the LoRA kernels`, () => {
        const none = build(path);
        expect(lines(build(path, 0))).to.deep.equal(lines(none));
        expect([...build(path, 0).buffers]).to.deep.equal([...none.buffers]);
        expect(none.dropoutModules).to.deep.equal([]);
        expect(none.kernels.some((k) => k.code.includes('lora_keep'))).to.equal(false);
        const drop = build(path, 0.1);
        expect(drop.kernels.map((k) => k.label)).to.deep.equal(none.kernels.map((k) => k.label));
        // One key per LoRA module (q/k/v and gate/up included: each module its own mask), and nothing else added.
        expect(drop.dropoutModules.length).to.equal(modules);
        expect(new Set(drop.dropoutModules.map((m) => `${m.layer}:${m.proj}`)).size).to.equal(modules);
        expect([...drop.buffers.keys()].filter((b) => !none.buffers.has(b))).to.deep.equal(['dropKey']);
        expect(drop.buffers.get('dropKey')).to.deep.equal({ elems: modules, type: 'u32' });
        expect(engineMemory(drop, 0).storage - engineMemory(none, 0).storage).to.equal(4 * modules);
        // The mask is recomputed where x enters the LoRA path: u = dropout(x)·Aᵀ, dA = duᵀ·dropout(x), and dx's
        // LoRA term; the base products read x undropped.
        const changed = drop.kernels.filter((k, i) => k.code !== none.kernels[i].code).map((k) => k.label.split(' ')[0]);
        expect(new Set(changed)).to.deep.equal(new Set(['lora.u', 'lora.dA', 'bwd.dx']));
        expect(changed.filter((l) => l === 'lora.u').length).to.equal(modules);
        expect(changed.filter((l) => l === 'lora.dA').length).to.equal(modules);
        for (const k of drop.kernels.filter((x) => x.code.includes('lora_keep'))) expect(k.bindings.map((b) => b.buffer)).to.include('dropKey');
        // lora.u and lora.dA stay on the register-tiled kernel; only base products use tensor cores.
        expect(drop.kernels.filter((k) => k.subgroupMatrix).every((k) => /^(fwd|bwd\.dx|lm\.)/.test(k.label))).to.equal(true);
      });
    }
  }
});

// The pinned values of the mask definition (see 'pinned bit for bit' above).
const PINNED_BITS = [3341003529, 2941101855, 214748364, 429496729];
const PINNED_MASK = 'b75978a3e14e21f2';
