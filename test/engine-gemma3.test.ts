// CPU-checkable parts of Gemma 3 (model_type gemma3_text) on the WebGPU engine (CI has no GPU): its norm weights in
// `vec` as the (1 + w) scales they stand for, the local layers' rotary tables after the global ones, the step
// program (embeddings × √hidden, o_proj's and down_proj's outputs normed before the residual add and back through
// those norms, the tanh-GELU gate, query_pre_attn_scalar, each layer's table), Dawn compiling every shader, the memory
// it costs over a Qwen3 of the same shapes, and the engine serving it. The kernels themselves are checked against
// tfjs and torch on a GPU (test/gpu-engine-llama.ts, --llama-configs gemma3).
import { parseLlamaConfig, type LlamaConfig } from '../proto/model/llama-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { llamaLayout, packLlamaWeights } from '../client-sdk/engine/layout-llama';
import { buildLlamaProgram, llamaEngineRefusal } from '../client-sdk/engine/program-llama';
import type { EnginePath } from '../client-sdk/engine/program';
import { llamaRopeTables } from '../client-sdk/engine/weights';
import { engineMemory } from '../client-sdk/engine/memory';
import { shareKernels } from '../client-sdk/engine/dedupe';
import { f32 } from '../client-sdk/engine/kernel';
import { ropeTables } from '../client-sdk/model/rope';
import { nullDevice, wgslErrors } from './dawn-null';
import { tinyGemma3Weights, TINY_GEMMA3_JSON } from './tiny-gemma3';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ALL7: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
/** test/tiny-gemma3.ts: local / global / local, window 4 (< the programs' 16), hidden 32, 4 : 2 heads of 16, query_pre_attn_scalar 12. */
const GEMMA: LlamaConfig = parseLlamaConfig(TINY_GEMMA3_JSON);
/** A Qwen3 of the same shapes: q/k norms, tied head, no Gemma layer. */
const TWIN: LlamaConfig = parseLlamaConfig({
  model_type: 'qwen3',
  ...(({ vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim, rms_norm_eps }) => ({
    vocab_size,
    hidden_size,
    intermediate_size,
    num_hidden_layers,
    num_attention_heads,
    num_key_value_heads,
    head_dim,
    rms_norm_eps,
  }))(TINY_GEMMA3_JSON),
  max_position_embeddings: 128,
  tie_word_embeddings: true,
});
const [B, T] = [2, 16];
const N = B * T;
const { nLayer: L, nEmbd: D, headDim: HD, nHead: H, nKvHead: KV } = GEMMA;

function program(config: LlamaConfig, path: EnginePath): ReturnType<typeof buildLlamaProgram> {
  const layout = llamaLayout(config, initLoraAdapter(config, ALL7, 1), N);
  return buildLlamaProgram({ config, layout, batch: B, seq: T, path, loraScale: 2, adam: ADAM });
}

describe('engine gemma3: weights', () => {
  it('the feed-forward norms follow each layer’s two; every norm weight goes up as 1 + w in float32; misshapen or missing norms are named', () => {
    const weights = tinyGemma3Weights(GEMMA, 5);
    const byName = new Map(weights.map((t) => [t.name, t.data]));
    const lay = llamaLayout(GEMMA, initLoraAdapter(GEMMA, ALL7, 1), N);
    const { vec } = packLlamaWeights(GEMMA, lay, weights);
    const scale = (name: string): number[] => [...(byName.get(`model.${name}.weight`) ?? [])].map((w) => Math.fround(1 + w));
    lay.layers.forEach((Ly, l) => {
      expect([Ly.preFfnNorm, Ly.postFfnNorm, Ly.qNorm, Ly.kNorm]).to.deep.equal([
        Ly.postNorm + D,
        Ly.postNorm + 2 * D,
        Ly.postNorm + 3 * D,
        Ly.postNorm + 3 * D + HD,
      ]);
      for (const [n, at, len] of [
        ['input_layernorm', Ly.inputNorm, D],
        ['post_attention_layernorm', Ly.postNorm, D],
        ['pre_feedforward_layernorm', Ly.preFfnNorm ?? -1, D],
        ['post_feedforward_layernorm', Ly.postFfnNorm ?? -1, D],
        ['self_attn.q_norm', Ly.qNorm ?? -1, HD],
        ['self_attn.k_norm', Ly.kNorm ?? -1, HD],
      ] as const)
        expect([...vec.subarray(at, at + len)], `layers.${l}.${n}`).to.deep.equal(scale(`layers.${l}.${n}`));
    });
    expect([...vec.subarray(lay.norm, lay.norm + D)]).to.deep.equal(scale('norm'));
    expect(vec[lay.layers[1].postFfnNorm ?? -1]).not.to.equal(1); // drawn around 0: a lost norm or a w read as the scale shows
    expect(lay.vecSize).to.equal(L * (4 * D + 2 * HD) + D);
    // Other families: no feed-forward norms, w as it is.
    const twin = llamaLayout(TWIN, initLoraAdapter(TWIN, ALL7, 1), N);
    expect(twin.layers[0].preFfnNorm).to.equal(undefined);
    expect(twin.vecSize).to.equal(L * (2 * D + 2 * HD) + D);
    const short = weights.map((t) => (t.name.endsWith('layers.2.pre_feedforward_layernorm.weight') ? { ...t, data: t.data.subarray(0, 8) } : t));
    expect(() => packLlamaWeights(GEMMA, lay, short)).to.throw('weight layers.2.pre_feedforward_layernorm has 8 values, expected 32');
    const none = weights.filter((t) => !t.name.endsWith('layers.0.post_feedforward_layernorm.weight'));
    expect(() => packLlamaWeights(GEMMA, lay, none)).to.throw('weight layers.0.post_feedforward_layernorm.weight missing');
  });
  it('rotary tables: the global pair (rope_theta, linear ×4), then the local pair (rope_local_base_freq, default rope)', () => {
    const tables = llamaRopeTables(GEMMA, T);
    const S = T * HD;
    expect(tables.length).to.equal(4 * S);
    const global = ropeTables(GEMMA, T);
    const { rope_scaling: _r, ...noScaling } = TINY_GEMMA3_JSON;
    const local = ropeTables(parseLlamaConfig({ ...noScaling, rope_theta: 10000 }), T);
    expect([...tables.subarray(0, 2 * S)]).to.deep.equal([...global.cos, ...global.sin]);
    expect([...tables.subarray(2 * S)]).to.deep.equal([...local.cos, ...local.sin]);
    expect(local.cos[5 * HD + 1]).not.to.equal(global.cos[5 * HD + 1]);
    expect(llamaRopeTables(TWIN, T).length, 'one pair for other families').to.equal(2 * S);
  });
});

describe('engine gemma3: step program', () => {
  for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
    it(`${path}: norms around both sublayers, scaled embeddings, GELU gate, query_pre_attn_scalar, each layer's rope table; every gradient once`, () => {
      const prog = program(GEMMA, path);
      const hits = new Uint8Array(llamaLayout(GEMMA, initLoraAdapter(GEMMA, ALL7, 1), N).adapterSize);
      for (const [o, n] of prog.gradWrites) for (let i = o; i < o + n; i++) hits[i]++;
      expect(hits.every((h) => h === 1)).to.equal(true);
      const ks = prog.kernels;
      const labels = ks.map((k) => k.label);
      const code = (label: string, nth = 0): string => ks.filter((k) => k.label === label)[nth]?.code ?? '';
      expect(code('embed')).to.contain(`xres[e] = wte[ids[n] * 32u + d] * ${f32(Math.sqrt(32))};`);
      // Layer 0 forward: o_proj into subpre, its norm + residual, the MLP's own norm, gate, up (GELU), down into
      // subpre, its norm + residual; then layer 1's input norm.
      const o0 = labels.indexOf('fwd h0.self_attn.o_proj');
      expect(
        labels
          .slice(o0)
          .filter((l) => !l.startsWith('lora.'))
          .slice(0, 8),
      ).to.deep.equal([
        'fwd h0.self_attn.o_proj',
        'rms.sub.fwd',
        'rms.fwd',
        'fwd h0.mlp.gate_proj',
        'fwd h0.mlp.up_proj',
        'fwd h0.mlp.down_proj',
        'rms.sub.fwd',
        'rms.fwd',
      ]);
      const oCode = code('fwd h0.self_attn.o_proj');
      expect(oCode).to.contain('subpre[');
      expect(oCode).not.to.contain('xres[');
      const lay = llamaLayout(GEMMA, initLoraAdapter(GEMMA, ALL7, 1), N);
      // Layer 1's MLP output (k = 3): read at 3·N·D of subpre, added to xres slice 3 into slice 4, rstd after q/k's.
      const sub3 = code('rms.sub.fwd', 3);
      expect(sub3).to.contain(`let xo = ${3 * N * D}u + row * 32u;`);
      expect(sub3).to.contain(`let yo = ${4 * N * D}u + row * 32u;`);
      expect(sub3).to.contain(`xres[yo + d] = xres[${3 * N * D}u + row * 32u + d] + f32(subpre[xo + d] * rstd * vec[${lay.layers[1].postFfnNorm}u + d]);`);
      expect(sub3).to.contain(`stats[${(2 * L + 1) * N + L * N * (H + KV) + 3 * N}u + row]`);
      expect(code('rms.fwd', 1), "layer 0's MLP input norm is pre_feedforward_layernorm").to.contain(`vec[${lay.layers[0].preFfnNorm}u + d]`);
      expect(code('fwd h0.mlp.up_proj')).to.contain('v = gelu_new(g) * v;');
      expect(code('fwd h0.mlp.up_proj')).not.to.contain('sigm');
      expect(code('bwd.dx h0.mlp.down_proj')).to.contain('v = v * u * gelu_new_grad(g);');
      expect(code('attn.fwd')).to.contain(`const SCALE = ${f32(12 ** -0.5)};`);
      // The local layers' attention sees 4 keys (attention-window.ts), the global layer's every earlier one.
      const windowed = ks.filter((k) => k.label.startsWith('attn.')).map((k) => k.code.includes('+ 4u > i'));
      expect(windowed.filter((w) => w).length).to.equal((2 / 3) * windowed.length);
      // Local layers 0 and 2 read the second table pair, global layer 1 the first, forward and backward.
      for (const dir of ['fwd', 'bwd']) {
        const [r0, r1, r2] = [0, 1, 2].map((i) => code(`rope.${dir}`, dir === 'fwd' ? i : 2 - i));
        for (const r of [r0, r2]) expect(r).to.contain(`rope[${2 * T * HD}u + t * 16u + i]`);
        expect(r1).to.contain('rope[t * 16u + i]');
        expect(r1).to.contain(`rope[${T * HD}u + t * 16u + i]`);
      }
      // Backward of the last layer: dres through post_feedforward_layernorm into dln (and dln16), then down_proj.
      const b0 = labels.indexOf('lm.scatter');
      expect(labels.slice(b0 + 1, b0 + 4)).to.deep.equal(['rms.bwd', 'rms.sub.bwd', 'lora.du h2.mlp.down_proj']);
      const sb = ks.filter((k) => k.label === 'rms.sub.bwd');
      expect(sb.length).to.equal(2 * L);
      const f16 = path !== 'f32';
      expect(sb[0].bindings.map((b) => b.buffer)).to.deep.equal(['dres', 'subpre', 'vec', 'stats', 'dln', ...(f16 ? ['dln16'] : [])]);
      expect(sb[0].bindings[0].write).to.equal(false);
      const dxDown = ks.find((k) => k.label === 'bwd.dx h2.mlp.down_proj');
      expect(dxDown?.bindings.some((b) => b.buffer === (f16 ? 'dln16' : 'dln'))).to.equal(true);
      expect(ks.some((k) => k.bindings.some((b) => b.buffer === 'dres16'))).to.equal(false);
      expect(prog.buffers.get('subpre')).to.deep.equal({ elems: 2 * L * N * D, type: 'f32' });
      expect(prog.buffers.get('stats')?.elems).to.equal((2 * L + 1) * N + L * N * (H + KV) + 2 * L * N);
      expect(prog.buffers.get('rope')?.elems).to.equal(4 * T * HD);
      expect(prog.buffers.get('dln16')).to.deep.equal(f16 ? { elems: N * D, type: 'f16' } : undefined);
      expect(prog.buffers.has('dres16')).to.equal(false);
      // Otherwise the step is a Qwen3's of the same shapes.
      const strip = (ls: string[]): string[] => ls.filter((l) => !l.startsWith('rms.sub.'));
      expect(strip(labels)).to.deep.equal(program(TWIN, path).kernels.map((k) => k.label));
    });
  }
  it("compiles with Dawn's WGSL compiler on every path", async () => {
    const dev = await nullDevice();
    for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
      const prog = program(GEMMA, path);
      const { groups } = shareKernels(prog.kernels);
      for (const g of groups) expect(await wgslErrors(dev, g.code), `${path} ${prog.kernels[g.members[0]].label}`).to.deep.equal([]);
    }
  });
  it('memory: a Qwen3 of the same shapes plus the feed-forward norms, the sublayer outputs and their rstd, the local rope tables', () => {
    for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
      const [gemma, twin] = [GEMMA, TWIN].map((config) => {
        const layout = llamaLayout(config, initLoraAdapter(config, ALL7, 1), N);
        return engineMemory(buildLlamaProgram({ config, layout, batch: B, seq: T, path, loraScale: 2, adam: ADAM }), layout.adapterSize);
      });
      expect(gemma.groups.weights - twin.groups.weights, path).to.equal(4 * L * 2 * D);
      // f16 paths: dln16 in place of dres16, the same size.
      expect(gemma.groups.activations - twin.groups.activations, path).to.equal(4 * (2 * L * N * D + 2 * L * N + 2 * T * HD));
      expect(gemma.groups.adapter).to.equal(twin.groups.adapter);
    }
  });
  it('serves Gemma 3 whatever its window; what it refuses of any Llama it refuses of Gemma 3 too', () => {
    expect(llamaEngineRefusal(GEMMA, 128), 'window 4 < 128').to.equal(undefined);
    expect(llamaEngineRefusal({ ...GEMMA, headDim: 15 }, 128)).to.equal('head_dim 15 is odd (rotary embeddings pair dimensions)');
  });
});
