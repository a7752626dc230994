// CPU-checkable parts of the engine's Llama family (CI has no GPU): the weight and adapter layout (projections
// transposed to [in, out], biases only where the config has them, untied head), the step program (every adapter
// gradient written exactly once for all seven LoRA module names, rope/RMSNorm/GQA kernels and buffer sizes, tensor
// cores only on base products), Qwen3's per-head q/k norms (their weights in `vec`, their kernels around RoPE, the
// step's shaders compiled by Dawn), WGSL generation and pipeline sharing, and the engine's refusal of what it does
// not implement (sliding windows: engine-window.test.ts). The kernels themselves are checked against tfjs on a GPU (test/gpu-engine-llama.ts).
import { parseLlamaConfig, type LlamaConfig } from '../proto/model/llama-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { llamaLayout, packLlamaWeights } from '../client-sdk/engine/layout-llama';
import { buildLlamaProgram, llamaEngineRefusal } from '../client-sdk/engine/program-llama';
import type { EnginePath } from '../client-sdk/engine/program';
import { ropeKernel } from '../client-sdk/engine/rope';
import { attentionBackward } from '../client-sdk/engine/attention-backward';
import { attentionForward } from '../client-sdk/engine/attention';
import { shareKernels } from '../client-sdk/engine/dedupe';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { LlamaModel } from '../client-sdk/model/llama';
import { engineModelRefusal } from '../client-sdk/engine/trainer';
import { openEngineDevice } from '../client-sdk/engine/device';
import { trainerForModel } from '../client-sdk/sft/lora-trainer';
import { selectBackend } from '../client-sdk/model/backend';
import { nullDevice, wgslErrors } from './dawn-null';
import { tinyLlamaTwinConfig, tinyQwen3Config, tinyQwen3Weights, TINY_QWEN3_JSON } from './tiny-qwen3';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const BASE = {
  model_type: 'llama',
  vocab_size: 300,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  max_position_embeddings: 64,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: true,
};
const CFG: LlamaConfig = parseLlamaConfig(BASE);
const QWEN: LlamaConfig = parseLlamaConfig({ ...BASE, model_type: 'qwen2', head_dim: 16, num_key_value_heads: 1, tie_word_embeddings: false });
/** Qwen3 (test/tiny-qwen3.ts): q/k norms, head_dim 16 ≠ hidden 32 / 4 heads, GQA 4:2, tied head. */
const QWEN3: LlamaConfig = tinyQwen3Config();
const ALL7: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

describe('engine llama: layout', () => {
  it('transposes projections to [in, out], places norms and biases, finds all seven LoRA modules', () => {
    const adapter = initLoraAdapter(QWEN, ALL7, 1);
    const L = llamaLayout(QWEN, adapter, 16);
    expect(L.loraModules).to.equal(2 * 7);
    expect(L.r).to.equal(4);
    expect(L.adapterSize).to.equal(adapter.reduce((s, t) => s + t.data.length, 0));
    const q = L.layers[1].proj['self_attn.q_proj'];
    expect([q.inF, q.outF]).to.deep.equal([32, 64]); // head_dim 16 · 4 heads ≠ hidden 32
    expect(L.layers[1].proj['self_attn.k_proj'].outF).to.equal(16);
    // Qwen2: q/k/v biases, none on o_proj or the MLP.
    expect(q.bias).to.be.a('number');
    expect(L.layers[0].proj['self_attn.o_proj'].bias).to.equal(undefined);
    expect(L.layers[0].proj['mlp.up_proj'].bias).to.equal(undefined);
    const weights = randomLlamaWeights(QWEN, 3);
    const byName = new Map(weights.map((t) => [t.name, t.data]));
    const { w, vec, embed, head } = packLlamaWeights(QWEN, L, weights);
    const src = byName.get('model.layers.1.self_attn.q_proj.weight') as Float32Array; // [out 64, in 32]
    for (const [i, o] of [
      [0, 0],
      [3, 5],
      [31, 63],
    ])
      expect(w[q.w + i * 64 + o]).to.equal(src[o * 32 + i]);
    expect(vec[L.layers[0].inputNorm]).to.equal(1);
    expect(head).to.equal(byName.get('lm_head.weight'));
    expect(embed).to.equal(byName.get('model.embed_tokens.weight'));
    expect(w.length).to.equal(2 * (32 * 64 + 2 * 32 * 16 + 64 * 32 + 3 * 32 * 64));
    // Tied: the head is the embedding.
    const tied = packLlamaWeights(CFG, llamaLayout(CFG, initLoraAdapter(CFG, ALL7, 1), 16), randomLlamaWeights(CFG, 3));
    expect(tied.head).to.equal(tied.embed);
  });
  it('Qwen3: q_norm and k_norm ([head_dim] each, head_dim 16 ≠ 32/4) sit in vec after the layer norms; other families are laid out as before', () => {
    const cfg = parseLlamaConfig({ ...TINY_QWEN3_JSON, attention_bias: true });
    const weights = tinyQwen3Weights(cfg, 5);
    const L = llamaLayout(cfg, initLoraAdapter(cfg, ALL7, 1), 16);
    const byName = new Map(weights.map((t) => [t.name, t.data]));
    const { vec } = packLlamaWeights(cfg, L, weights);
    L.layers.forEach((Ly, l) => {
      expect(Ly.qNorm).to.equal(Ly.postNorm + 32);
      expect(Ly.kNorm).to.equal(Ly.postNorm + 32 + 16);
      for (const [n, at] of [
        ['q_norm', Ly.qNorm],
        ['k_norm', Ly.kNorm],
      ] as const)
        expect([...vec.subarray(at, (at ?? 0) + 16)]).to.deep.equal([...(byName.get(`model.layers.${l}.self_attn.${n}.weight`) ?? [])]);
    });
    expect(vec[L.layers[1].qNorm ?? 0]).not.to.equal(1); // drawn around 1, so a lost norm shows
    // Per layer: 2 norms of 32, q/k norms of 16, q/k/v/o biases (64 + 32 + 32 + 32); then the final norm.
    expect(L.vecSize).to.equal(2 * (2 * 32 + 2 * 16 + 64 + 32 + 32 + 32) + 32);
    expect(L.layers[0].proj['self_attn.o_proj'].bias).to.be.a('number');
    // Without the norms (the same shapes as llama) no room is taken.
    const twin = llamaLayout(tinyLlamaTwinConfig(), initLoraAdapter(tinyLlamaTwinConfig(), ALL7, 1), 16);
    expect(twin.layers[0].qNorm).to.equal(undefined);
    expect(twin.vecSize).to.equal(2 * 2 * 32 + 32);
    const short = weights.map((t) => (t.name.endsWith('layers.1.self_attn.k_norm.weight') ? { ...t, data: t.data.subarray(0, 8) } : t));
    expect(() => packLlamaWeights(cfg, L, short)).to.throw('weight layers.1.self_attn.k_norm has 8 values, expected 16');
    const none = weights.filter((t) => !t.name.endsWith('layers.0.self_attn.q_norm.weight'));
    expect(() => packLlamaWeights(cfg, L, none)).to.throw('weight layers.0.self_attn.q_norm.weight missing');
  });
});

describe('engine llama: step program', () => {
  for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
    it(`${path}: writes every adapter gradient exactly once and sizes every buffer`, () => {
      const adapter = initLoraAdapter(QWEN, ALL7, 1);
      const layout = llamaLayout(QWEN, adapter, 2 * 16);
      const prog = buildLlamaProgram({ config: QWEN, layout, batch: 2, seq: 16, path, loraScale: 2, adam: ADAM, clip: true });
      const hits = new Uint8Array(layout.adapterSize);
      for (const [o, n] of prog.gradWrites) for (let i = o; i < o + n; i++) hits[i]++;
      expect(hits.every((h) => h === 1)).to.equal(true);
      const labels = prog.kernels.map((k) => k.label);
      expect(labels[0]).to.equal('embed');
      expect(labels[labels.length - 1]).to.equal('adamw');
      expect(labels.filter((l) => l.startsWith('lora.dA ')).length).to.equal(2 * 7);
      expect(labels.filter((l) => l === 'rope.fwd').length).to.equal(2);
      expect(labels.filter((l) => l === 'rope.bwd').length).to.equal(2);
      expect(labels.filter((l) => l === 'rms.fwd').length).to.equal(2 * 2 + 1);
      expect(labels.filter((l) => l === 'rms.bwd').length).to.equal(2 * 2 + 1);
      // SwiGLU is fused into up_proj's forward epilogue and down_proj's dx epilogue.
      const up = prog.kernels.find((k) => k.label === 'fwd h0.mlp.up_proj');
      expect(up?.code).to.contain('sigm(g)');
      const down = prog.kernels.find((k) => k.label === 'bwd.dx h0.mlp.down_proj');
      expect(down?.code).to.contain('dup[');
      const tc = prog.kernels.filter((k) => k.subgroupMatrix);
      if (path === 'tc') {
        expect(tc.length).to.be.greaterThan(0);
        expect(tc.every((k) => /^(fwd|bwd\.dx|lm\.)/.test(k.label))).to.equal(true);
      } else expect(tc.length).to.equal(0);
      expect(prog.kernels.some((k) => k.bindings.some((b) => b.type === 'f16'))).to.equal(path !== 'f32');
      expect(prog.buffers.get('qkv')?.elems).to.equal(2 * 32 * (64 + 2 * 16));
      expect(prog.buffers.get('ctx')?.elems).to.equal(2 * 32 * 64);
      expect(prog.buffers.get('rope')?.elems).to.equal(2 * 16 * 16);
      expect(prog.buffers.has('lmhead')).to.equal(path === 'f32'); // untied head
      for (const k of prog.kernels) expect(k.code).to.match(/@compute @workgroup_size/);
    });
  }
  for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
    it(`${path}: Qwen3 normalises each q and k head after its projection and before RoPE, and back after RoPE's backward`, () => {
      const cfg = QWEN3;
      const adapter = initLoraAdapter(cfg, ALL7, 1);
      const layout = llamaLayout(cfg, adapter, 2 * 16);
      const prog = buildLlamaProgram({ config: cfg, layout, batch: 2, seq: 16, path, loraScale: 2, adam: ADAM });
      const hits = new Uint8Array(layout.adapterSize);
      for (const [o, n] of prog.gradWrites) for (let i = o; i < o + n; i++) hits[i]++;
      expect(hits.every((h) => h === 1)).to.equal(true);
      const labels = prog.kernels.map((k) => k.label);
      // Per layer, forward: q_proj, k_proj (into qkpre), v_proj, the q norm, the k norm, then RoPE.
      const fwd = labels.filter((l) => /^(fwd h0\.self_attn\.[qkv]_proj|rms\.head\.fwd|rope\.fwd)$/.test(l)).slice(0, 6);
      expect(fwd).to.deep.equal(['fwd h0.self_attn.q_proj', 'fwd h0.self_attn.k_proj', 'fwd h0.self_attn.v_proj', 'rms.head.fwd', 'rms.head.fwd', 'rope.fwd']);
      expect(labels.filter((l) => l === 'rms.head.fwd').length).to.equal(2 * 2);
      expect(labels.filter((l) => l === 'rms.head.bwd').length).to.equal(2 * 2);
      expect(labels.filter((l) => l === 'rms.fwd').length).to.equal(2 * 2 + 1);
      const rb = labels.indexOf('rope.bwd');
      expect(labels.slice(rb + 1, rb + 3)).to.deep.equal(['rms.head.bwd', 'rms.head.bwd']);
      expect(labels[rb + 3]).to.match(/^lora\.du h1\.self_attn\.q_proj$/);
      const N = 32;
      const [QW, KW, QKVW] = [4 * 16, 2 * 16, 4 * 16 + 2 * 2 * 16];
      const heads = prog.kernels.filter((k) => k.label.startsWith('rms.head.'));
      // q rows: one workgroup per (token, head); k rows: per (token, kv head). Layer 1's q norm reads qkpre at
      // 1·N·(QW + KW) and writes qkv at 1·N·QKVW; its rstd follow the (2L + 1)·N of the other norms.
      expect(heads.map((k) => k.grid)).to.deep.equal([
        [N, 4, 1],
        [N, 2, 1],
        [N, 4, 1],
        [N, 2, 1],
        [N, 4, 1],
        [N, 2, 1],
        [N, 4, 1],
        [N, 2, 1],
      ]);
      const q1 = heads[2].code;
      expect(q1).to.contain(`let xo = ${N * (QW + KW)}u + wg.x * ${QW + KW}u + wg.y * 16u;`);
      expect(q1).to.contain(`let yo = ${N * QKVW}u + wg.x * ${QKVW}u + wg.y * 16u;`);
      expect(q1).to.contain(`stats[${5 * N + N * 6}u + row]`);
      expect(q1).to.contain(`vec[${layout.layers[1].qNorm}u + d]`);
      expect(heads[3].code).to.contain(`let xo = ${N * (QW + KW) + QW}u + wg.x`);
      expect(heads[3].code).to.contain(`vec[${layout.layers[1].kNorm}u + d]`);
      // Backward: dx replaces dy in dqkv (the path's type), the k heads after the q heads.
      const kb = prog.kernels.filter((k) => k.label === 'rms.head.bwd')[1];
      expect(kb.code).to.contain(`let o = ${QW}u + wg.x * ${QKVW}u + wg.y * 16u;`);
      expect(kb.bindings[0]).to.deep.equal({ buffer: 'dqkv', type: path === 'f32' ? 'f32' : 'f16', write: true });
      expect(kb.bindings.some((b) => b.buffer === 'dres')).to.equal(false);
      expect(prog.kernels.find((k) => k.label === 'fwd h0.self_attn.k_proj')?.code).to.contain('qkpre[');
      expect(prog.kernels.find((k) => k.label === 'fwd h0.self_attn.v_proj')?.code).not.to.contain('qkpre');
      expect(prog.buffers.get('qkpre')).to.deep.equal({ elems: 2 * N * (QW + KW), type: 'f32' });
      expect(prog.buffers.get('stats')?.elems).to.equal(5 * N + 2 * N * 6);
      expect(prog.buffers.get('qkv')?.elems).to.equal(2 * N * QKVW);
    });
  }
  it('LoRA on a subset of modules: no low-rank kernels elsewhere', () => {
    const lora = { ...ALL7, targetModules: ['q_proj', 'v_proj'] };
    const adapter = initLoraAdapter(CFG, lora, 1);
    const prog = buildLlamaProgram({ config: CFG, layout: llamaLayout(CFG, adapter, 32), batch: 2, seq: 16, path: 'f32', loraScale: 2, adam: ADAM });
    const loraLabels = prog.kernels.map((k) => k.label).filter((l) => l.startsWith('lora.'));
    expect(loraLabels.every((l) => /q_proj|v_proj/.test(l))).to.equal(true);
    expect(prog.buffers.has('lmhead')).to.equal(false); // tied head reads the embedding
  });
  it('shares pipelines between layers; each dispatch recovers its own constants', () => {
    const cfg = parseLlamaConfig({ ...BASE, num_hidden_layers: 4 });
    const adapter = initLoraAdapter(cfg, ALL7, 1);
    const prog = buildLlamaProgram({ config: cfg, layout: llamaLayout(cfg, adapter, 32), batch: 2, seq: 16, path: 'tc', loraScale: 2, adam: ADAM });
    const { groups, groupOf } = shareKernels(prog.kernels);
    expect(groups.length).to.be.lessThan(prog.kernels.length / 2);
    prog.kernels.forEach((k, i) => {
      const g = groups[groupOf[i]];
      const vals = g.params[g.members.indexOf(i)];
      const body = g.code.replace(/\n@group\(0\) @binding\(\d+\) var<uniform> prm[^\n]*\n$/, '');
      const rebuilt = body.replace(/prm\[(\d+)\]\[(\d+)\]/g, (_, a: string, b: string) => `${vals[Number(a) * 4 + Number(b)]}u`);
      expect(rebuilt).to.equal(k.code);
    });
  });
  it('refuses what it does not implement, naming it', () => {
    const mistral = parseLlamaConfig({ ...BASE, model_type: 'mistral', sliding_window: 8 });
    expect(llamaEngineRefusal(mistral, 16), 'sliding windows are implemented (engine-window.test.ts)').to.equal(undefined);
    expect(llamaEngineRefusal(CFG, 64)).to.equal(undefined);
    expect(llamaEngineRefusal(QWEN3, 128), 'Qwen3: the q/k norms are implemented').to.equal(undefined);
    expect(llamaEngineRefusal({ ...CFG, headDim: 7 }, 64)).to.match(/head_dim 7 is odd/);
    const adapter = initLoraAdapter(mistral, ALL7, 1);
    expect(() => buildLlamaProgram({ config: CFG, layout: llamaLayout(CFG, adapter, 65), batch: 1, seq: 65, path: 'f32', loraScale: 2, adam: ADAM })).to.throw(
      /max_position_embeddings/,
    );
  });
});

describe('engine llama: WGSL', () => {
  it('rope rotates q and k heads only, with the transposed rotation in backward', () => {
    const f = ropeKernel({ rows: 32, T: 16, H: 4, kv: 2, hd: 8 }, 'fwd', { buffer: 'qkv', type: 'f32', offset: 0 });
    const b = ropeKernel({ rows: 32, T: 16, H: 4, kv: 2, hd: 8 }, 'bwd', { buffer: 'dqkv', type: 'f16', offset: 0 });
    expect(f.grid).to.deep.equal([Math.ceil((32 * 6 * 4) / 256), 1, 1]);
    expect(f.code).to.contain('n * 64u'); // row width (4 + 2·2)·8
    expect(f.code).not.to.contain('-rope[');
    expect(b.code).to.contain('-rope[');
    expect(b.code).to.contain('enable f16;');
    expect(() => ropeKernel({ rows: 1, T: 1, H: 1, kv: 1, hd: 7 }, 'fwd', { buffer: 'qkv', type: 'f32', offset: 0 })).to.throw(/odd/);
  });
  it('grouped-query attention: one dk/dv workgroup per kv head, GPT-2 shapes unchanged', () => {
    const gqa = { B: 2, T: 16, H: 4, D: 32, scale: 0.25, act: 'f32' as const, kvHeads: 2, headDim: 16 };
    expect(attentionForward(gqa, { qkv: 0, ctx: 0, lse: 0 }).code).to.contain('const G = 2u');
    const [dq, dkv] = attentionBackward(gqa, { qkv: 0, ctx: 0, lse: 0 });
    expect(dq.grid).to.deep.equal([1, 4, 2]);
    expect(dkv.grid).to.deep.equal([1, 2, 2]);
    expect(dkv.code).to.contain('const D3 = 128u'); // 64 + 2·32
    const gpt2 = attentionBackward({ B: 2, T: 16, H: 4, D: 32, scale: 0.25, act: 'f32' }, { qkv: 0, ctx: 0, lse: 0 });
    expect(gpt2[1].grid).to.deep.equal([1, 4, 2]);
    expect(gpt2[1].code).to.contain('const D3 = 96u');
    expect(() => attentionForward({ ...gqa, kvHeads: 3 }, { qkv: 0, ctx: 0, lse: 0 })).to.throw(/multiple/);
  });
  it("Qwen3's step compiles with Dawn's WGSL compiler on every path, and is its twin's without the norms plus the head norms", async () => {
    const dev = await nullDevice();
    const adapter = initLoraAdapter(QWEN3, ALL7, 1);
    for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
      const prog = buildLlamaProgram({ config: QWEN3, layout: llamaLayout(QWEN3, adapter, 32), batch: 2, seq: 16, path, loraScale: 2, adam: ADAM });
      const { groups } = shareKernels(prog.kernels);
      const heads = groups.filter((g) => /rms\.head/.test(prog.kernels[g.members[0]].label));
      expect(heads.length, 'one shader for the forward norms, one for the backward').to.equal(2);
      for (const g of groups) expect(await wgslErrors(dev, g.code), `${path} ${prog.kernels[g.members[0]].label}`).to.deep.equal([]);
      // The twin without the norms: the same kernels but for the norms and where q and k land.
      const twin = tinyLlamaTwinConfig();
      const base = buildLlamaProgram({
        config: twin,
        layout: llamaLayout(twin, initLoraAdapter(twin, ALL7, 1), 32),
        batch: 2,
        seq: 16,
        path,
        loraScale: 2,
        adam: ADAM,
      });
      const strip = (ls: string[]): string[] => ls.filter((l) => !l.startsWith('rms.head.'));
      expect(strip(prog.kernels.map((k) => k.label))).to.deep.equal(base.kernels.map((k) => k.label));
    }
  });
});

describe('engine llama: trainer selection', () => {
  it('the engine serves Llama configs, a Mistral with a window shorter than the sequence too; without a GPU the reason is the device (FEDTUNE_ENGINE=auto)', async () => {
    await selectBackend();
    const llama = LlamaModel.fromTensors(CFG, randomLlamaWeights(CFG, 1));
    expect(engineModelRefusal(llama)).to.equal(undefined);
    const qwen3 = LlamaModel.fromTensors(QWEN3, tinyQwen3Weights(QWEN3, 1));
    expect(engineModelRefusal(qwen3), 'Qwen3 is served').to.equal(undefined);
    qwen3.dispose();
    const cfg = parseLlamaConfig({ ...BASE, model_type: 'mistral', sliding_window: 16 });
    const mistral = LlamaModel.fromTensors(cfg, randomLlamaWeights(cfg, 1));
    expect(engineModelRefusal(mistral), 'sliding_window 16 < max_position_embeddings 64').to.equal(undefined);
    const prev = process.env.FEDTUNE_ENGINE;
    process.env.FEDTUNE_ENGINE = 'auto';
    try {
      const dev = await openEngineDevice();
      const noGpu = 'error' in dev ? dev.error : undefined;
      if (!('error' in dev)) dev.device.destroy();
      const data = { train: [{ prompt: [1, 2], completion: [3] }] };
      const t = await trainerForModel(mistral, ALL7, data);
      if (noGpu === undefined) expect(t.backend).to.match(/^engine/);
      else expect(t.engineFallback, 'the device, not the model').to.equal(noGpu);
      await (t.trainer as { dispose?: () => Promise<void> }).dispose?.();
    } finally {
      if (prev === undefined) delete process.env.FEDTUNE_ENGINE;
      else process.env.FEDTUNE_ENGINE = prev;
      llama.dispose();
      mistral.dispose();
    }
  });
});
