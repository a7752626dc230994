// Sliding-window attention in the WebGPU engine, the parts CI can check without a GPU (the kernels themselves run
// against float64 and tfjs's Mistral in test/gpu-engine-window.ts): full-causal kernels and steps compile to
// exactly the WGSL they compiled to before windows existed (so their results are bit-identical), a window ≥ the
// sequence is no window, windowed kernels skip the tiles outside the window and mask the rest, a Mistral whose
// window is shorter than the sequence is planned on every path and compiles with Dawn's WGSL compiler, layers with
// different windows share one pipeline, and the trainer no longer refuses such a Mistral.
import { createHash } from 'node:crypto';
import { parseLlamaConfig, type LlamaConfig } from '../proto/model/llama-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { attentionForward, type AttnShape } from '../client-sdk/engine/attention';
import { attentionForwardTiled } from '../client-sdk/engine/attention-tiled';
import { attentionBackward } from '../client-sdk/engine/attention-backward';
import { attentionBackwardVec } from '../client-sdk/engine/attention-backward-vec';
import { activeWindow, layerWindow } from '../client-sdk/engine/attention-window';
import { llamaLayout } from '../client-sdk/engine/layout-llama';
import { buildLlamaProgram, llamaEngineRefusal } from '../client-sdk/engine/program-llama';
import type { EnginePath } from '../client-sdk/engine/program';
import type { EngineTuning } from '../client-sdk/engine/tuning';
import type { Kernel } from '../client-sdk/engine/kernel';
import { shareKernels } from '../client-sdk/engine/dedupe';
import { nullDevice, wgslErrors } from './dawn-null';
import { tinyGemma3Config } from './tiny-gemma3';
import { TINY_MISTRAL_JSON } from './tiny-mistral';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ALL7: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
// test/tiny-mistral.ts with a tied head, and the same shape as Llama.
const mistral = (window: number | null): LlamaConfig => parseLlamaConfig({ ...TINY_MISTRAL_JSON, tie_word_embeddings: true, sliding_window: window });
const LLAMA = parseLlamaConfig({ ...TINY_MISTRAL_JSON, model_type: 'llama', tie_word_embeddings: true, sliding_window: null });
const TUNINGS: [string, EngineTuning][] = [
  ['row forward', {}],
  ['tiled forward', { attnTiled: true }],
  ['vec4', { attnTiled: true, attnVec: true }],
];

const hash = (ks: readonly Kernel[]): string =>
  createHash('sha256')
    .update(ks.map((k) => k.code).join('\n---\n'))
    .digest('hex')
    .slice(0, 16);

/** Every attention kernel (each forward, both backwards) of one GQA shape, f32 and f16, at two workgroup budgets. */
function attentionKernels(extra: Partial<AttnShape> = {}): Kernel[] {
  const ks: Kernel[] = [];
  for (const act of ['f32', 'f16'] as const)
    for (const budget of [16384, 65536]) {
      const s: AttnShape = { B: 2, T: 40, H: 4, D: 128, scale: 0.125, act, kvHeads: 2, headDim: 32, ...extra };
      const io = { qkv: 64, ctx: 32, lse: 16 };
      ks.push(attentionForward(s, io), attentionForwardTiled(s, io, budget, false), attentionForwardTiled(s, io, budget, true));
      ks.push(...attentionBackward(s, io, budget), ...attentionBackwardVec(s, io, budget));
    }
  return ks;
}

function program(cfg: LlamaConfig, path: EnginePath, tuning: EngineTuning, seq = 16): ReturnType<typeof buildLlamaProgram> {
  const layout = llamaLayout(cfg, initLoraAdapter(cfg, ALL7, 1), 2 * seq);
  return buildLlamaProgram({ config: cfg, layout, batch: 2, seq, path, loraScale: 2, adam: ADAM, tuning });
}

describe('engine sliding window: full-causal layers unchanged', () => {
  it('every attention kernel without a window is the WGSL of the base commit (8047302), character for character', () => {
    // sha256 of the joined WGSL, taken from the kernels as they were before windows existed.
    expect(hash(attentionKernels())).to.equal('a5496f9415fa2b46');
    for (const w of [0, 40, 41, 1000]) expect(hash(attentionKernels({ window: w })), `window ${w} ≥ T or 0`).to.equal('a5496f9415fa2b46');
  });
  it('a full-causal Llama step is the WGSL of the base commit on every path and kernel choice; a Mistral with a window ≥ the sequence is that step', () => {
    const before: Record<string, string> = {
      'f32 row forward': 'acdcf62865e3c332',
      'f32 vec4': 'e0bed0a24a898f66',
      'f32 tiled forward': '8a6db4c25e8ac309',
      'f16 row forward': '94ffe59b5a7a4500',
      'f16 vec4': '4063a02a1b852a8e',
      'f16 tiled forward': '1ff4be854a30e57f',
      'tc row forward': 'a32616d6f28639bc',
      'tc vec4': '1b142570ad2fd758',
      'tc tiled forward': '8095632c40ef271b',
    };
    for (const path of ['f32', 'f16', 'tc'] as EnginePath[])
      for (const [name, tuning] of TUNINGS) {
        const want = before[`${path} ${name}`];
        expect(hash(program(LLAMA, path, tuning).kernels), `${path} ${name}`).to.equal(want);
        expect(hash(program(mistral(16), path, tuning).kernels), `${path} ${name}, window 16 = seq`).to.equal(want);
        expect(hash(program(mistral(null), path, tuning).kernels), `${path} ${name}, no window`).to.equal(want);
      }
  });
});

describe('engine sliding window: windowed kernels', () => {
  it('activeWindow: none, 0 or ≥ T is full causal; a fraction is refused', () => {
    expect([undefined, 0, 16, 17].map((w) => activeWindow(w, 16))).to.deep.equal([undefined, undefined, undefined, undefined]);
    expect(activeWindow(15, 16)).to.equal(15);
    expect(() => activeWindow(2.5, 16)).to.throw(/not a positive integer/);
    expect(() => activeWindow(-1, 16)).to.throw(/not a positive integer/);
  });
  it("layerWindow: Mistral's window on every layer, Gemma 3's on its local layers only, none without one", () => {
    const cfg = mistral(6);
    expect([0, 1].map((l) => layerWindow(cfg, l))).to.deep.equal([6, 6]);
    expect(layerWindow(LLAMA, 0)).to.equal(undefined);
    // test/tiny-gemma3.ts: layers local / global / local, sliding_window 4.
    expect([0, 1, 2].map((l) => layerWindow(tinyGemma3Config(), l))).to.deep.equal([4, undefined, 4]);
  });
  it('each kernel starts (dq, forwards) or stops (dk/dv) at the tiles the window reaches, and masks j ≤ i − w', () => {
    const s: AttnShape = { B: 1, T: 40, H: 4, D: 128, scale: 0.125, act: 'f32', kvHeads: 2, headDim: 32, window: 6 };
    const io = { qkv: 0, ctx: 0, lse: 0 };
    const row = attentionForward(s, io).code;
    expect(row).to.contain('for (var j0 = select(0u, (wg.x * 64u + 1u - 6u) / 32u * 32u, wg.x * 64u + 1u > 6u); j0 < jEnd;');
    expect(row).to.contain('if (i < T && j <= i && j + 6u > i) {');
    for (const vec of [false, true]) {
      const tiled = attentionForwardTiled(s, io, 16384, vec).code;
      expect(tiled).to.contain('for (var j0 = select(0u, (i0 + 1u - 6u) / BT * BT, i0 + 1u > 6u); j0 <= i0 && j0 < T; j0 += BT)');
      expect(tiled).to.contain('if (i >= T || j0 + jj > i || j0 + jj + 6u <= i) { sc[k] = MASKED; }');
      const [dq, dkv] = (vec ? attentionBackwardVec : attentionBackward)(s, io, 16384);
      expect(dq.code).to.contain('for (var j0 = select(0u, (i0 + 1u - 6u) / BT * BT, i0 + 1u > 6u); j0 <= i0 && j0 < T; j0 += BT)');
      expect(dq.code).to.contain('if (i < T && j <= i && j + 6u > i) { ds = exp(');
      expect(dkv.code).to.contain('for (var i0 = j0; i0 < min(T, j0 + BT - 1u + 6u); i0 += BT)');
      expect(dkv.code).to.contain('if (i < T && j < T && j <= i && j + 6u > i) { p = exp(');
    }
  });
  it('layers with different windows share one pipeline per kernel (the window is a per-dispatch value), and it compiles', async () => {
    const dev = await nullDevice();
    for (const vec of [false, true]) {
      const ks = [6, 11].flatMap((window, l) => {
        const s: AttnShape = { B: 2, T: 40, H: 4, D: 128, scale: 0.125, act: 'f16', kvHeads: 2, headDim: 32, window };
        const io = { qkv: l * 1000, ctx: l * 500, lse: l * 80 };
        return [attentionForwardTiled(s, io, 16384, vec), ...(vec ? attentionBackwardVec : attentionBackward)(s, io, 16384)];
      });
      const { groups } = shareKernels(ks);
      expect(groups.length).to.equal(3);
      for (const g of groups) {
        expect(g.params[0]).to.include(6);
        expect(g.params[1]).to.include(11);
        expect(await wgslErrors(dev, g.code), ks[g.members[0]].label).to.deep.equal([]);
      }
    }
  });
});

describe('engine sliding window: Mistral on the engine', () => {
  it('a window shorter than the sequence is no longer refused', () => {
    expect(llamaEngineRefusal(mistral(6), 64)).to.equal(undefined);
    expect(llamaEngineRefusal(mistral(1), 2048)).to.equal(undefined);
  });
  for (const path of ['f32', 'f16', 'tc'] as EnginePath[])
    it(`${path}: a window-6 Mistral's step windows every layer's attention with each kernel choice, and compiles with Dawn`, async () => {
      const dev = await nullDevice();
      for (const [name, tuning] of TUNINGS) {
        const prog = program(mistral(6), path, tuning, 32);
        const attn = prog.kernels.filter((k) => k.label.startsWith('attn.'));
        expect(attn.map((k) => k.label)).to.deep.equal(['attn.fwd', 'attn.fwd', 'attn.bwd.dq', 'attn.bwd.dkv', 'attn.bwd.dq', 'attn.bwd.dkv']);
        for (const k of attn) expect(k.code, `${name} ${k.label}`).to.match(/ \+ 6u > i|\+ 6u <= i|6u\)/);
        // Only the attention kernels differ from the full-causal step.
        const full = program(LLAMA, path, tuning, 32);
        const differ = prog.kernels.filter((k, i) => k.code !== full.kernels[i].code).map((k) => k.label);
        expect(differ, name).to.deep.equal(attn.map((k) => k.label));
        const { groups } = shareKernels(attn);
        for (const g of groups) expect(await wgslErrors(dev, g.code), `${path} ${name} ${attn[g.members[0]].label}`).to.deep.equal([]);
      }
    });
});
