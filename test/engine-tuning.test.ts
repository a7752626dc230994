// The engine's kernel choices (client-sdk/engine/tuning.ts) without a GPU: tile names and FEDTUNE_ENGINE_TUNE are
// parsed or refused with a clear message; a GPT-2 step built under every choice (transposed lora_B, split LoRA side
// products, the tiled attention forward, each tile name) has the kernels and buffers it should, and Dawn's own WGSL
// compiler (null backend) accepts every shader as the engine shares them. Their numbers are checked on a GPU
// (test/gpu-engine-tuning.ts, part of `npm run test:gpu`).
import { nullDevice, wgslErrors } from './dawn-null';
import { modelLayout } from '../client-sdk/engine/layout';
import { buildProgram, type EnginePath } from '../client-sdk/engine/program';
import { shareKernels } from '../client-sdk/engine/dedupe';
import { checkTuning, DEFAULT_TUNING, parseTcTile, tileFor, tuningFromEnv, type EngineTuning } from '../client-sdk/engine/tuning';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { parseLlamaConfig } from '../proto/model/llama-config';
import { llamaLayout } from '../client-sdk/engine/layout-llama';
import { buildLlamaProgram } from '../client-sdk/engine/program-llama';
import type { Kernel } from '../client-sdk/engine/kernel';
import { initLoraAdapter } from '../proto/model/lora-layout';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CFG = parseGpt2Config({ vocab_size: 300, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 4 });
const ADAPTER = initLoraAdapter(CFG, { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] }, 1);
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
const build = (path: EnginePath, tuning: EngineTuning) =>
  buildProgram({
    config: CFG,
    layout: modelLayout(CFG, ADAPTER, 2 * 48),
    batch: 2,
    seq: 48,
    path,
    loraScale: 2,
    adam: ADAM,
    tuning,
    workgroupBytes: 48 * 1024,
  });

const llama = (path: EnginePath, tuning: EngineTuning): readonly Kernel[] => {
  const base = { model_type: 'llama', vocab_size: 300, hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 4 };
  const cfg = parseLlamaConfig({ ...base, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5, tie_word_embeddings: true });
  const all7 = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
  const adapter = initLoraAdapter(cfg, { r: 4, alpha: 8, dropout: 0, targetModules: all7 }, 1);
  const prog = buildLlamaProgram({
    config: cfg,
    layout: llamaLayout(cfg, adapter, 96),
    batch: 2,
    seq: 48,
    path,
    loraScale: 2,
    adam: ADAM,
    tuning,
    workgroupBytes: 48 * 1024,
  });
  for (const k of prog.kernels) for (const b of k.bindings) expect(prog.buffers.has(b.buffer), `${k.label} ${b.buffer}`).to.equal(true);
  return prog.kernels;
};

const EVERYTHING: EngineTuning = {
  loraT: true,
  epiSplit: true,
  loraSplitK: 16,
  attnTiled: true,
  attnVec: true,
  tiles: [
    ['^fwd .*c_attn', 'd2x1-t4x4'],
    ['^fwd ', 's4x2-t2x4-k32-db-p8-v1'],
    ['^bwd\\.dx .*c_fc', 's2x2-t4x4-k64-p8-v1'],
    ['^bwd\\.dx ', 's2x2-t2x4-k32-db-p8-v1'],
    ['^lm\\.logits', 'd2x2-t4x4'],
  ],
};

describe('engine: kernel choices (tuning)', function () {
  this.timeout(120000);

  it('parses the probe’s tile names and refuses anything else', () => {
    expect(parseTcTile('s2x2-t4x4-k32-db-p8-v1')).to.deep.equal({ sgm: 2, sgn: 2, tm: 4, tn: 4, bk: 32, mode: 'staged', double: true, pad: 8, vec: false });
    expect(parseTcTile('s4x2-t2x4-k64-p0-v4')).to.deep.equal({ sgm: 4, sgn: 2, tm: 2, tn: 4, bk: 64, mode: 'staged', double: false, pad: 0, vec: true });
    expect(parseTcTile('d2x1-t4x4')).to.deep.equal({ sgm: 2, sgn: 1, tm: 4, tn: 4, bk: 16, mode: 'direct' });
    expect(() => parseTcTile('s2x2-t4x4')).to.throw(/not a tensor-core tile name/);
    expect(tileFor(EVERYTHING, 'fwd h1.attn.c_attn')).to.deep.equal(parseTcTile('d2x1-t4x4'));
    expect(tileFor(EVERYTHING, 'fwd h1.mlp.c_fc')).to.deep.equal(parseTcTile('s4x2-t2x4-k32-db-p8-v1'));
    expect(tileFor(EVERYTHING, 'lm.dhs')).to.equal(undefined);
    expect(tileFor(undefined, 'fwd h1.mlp.c_fc')).to.equal(undefined);
  });

  it('reads FEDTUNE_ENGINE_TUNE over the defaults and refuses what it does not know', () => {
    // GPT-2's tc path runs the measured choices; f32, f16 and the Llama family none.
    expect(tuningFromEnv('')).to.deep.equal(DEFAULT_TUNING);
    expect(tuningFromEnv('', 'tc')).to.deep.equal({ loraT: true, loraSplitK: 256, epiSplit: true, attnTiled: true, attnVec: true });
    expect(tuningFromEnv(' ', 'f32')).to.deep.equal({});
    expect(tuningFromEnv('', 'f16')).to.deep.equal({});
    expect(tuningFromEnv('', 'tc', 'llama')).to.deep.equal({}); // measured on GPT-2 only
    expect(tuningFromEnv('{"attnVec":true}', 'tc', 'llama')).to.deep.equal({ attnVec: true });
    expect(tuningFromEnv('{"loraT":true,"loraSplitK":64}', 'f32')).to.deep.equal({ loraT: true, loraSplitK: 64 });
    expect(tuningFromEnv('{"epiSplit":false}', 'tc')).to.deep.equal({ ...DEFAULT_TUNING, epiSplit: false });
    expect(() => tuningFromEnv('{loraT}')).to.throw(/not JSON/);
    expect(() => tuningFromEnv('[1]')).to.throw(/JSON object/);
    expect(() => tuningFromEnv('{"loraTT":true}')).to.throw(/unknown key 'loraTT'/);
    expect(() => checkTuning({ tiles: [['^fwd', 'x1']] })).to.throw(/not a tensor-core tile name/);
    expect(() => checkTuning({ loraSplitK: -1 })).to.throw(/loraSplitK/);
  });

  it('builds the step under every choice with the kernels and buffers it names', () => {
    for (const path of ['f32', 'f16', 'tc'] as const) {
      const plain = build(path, {});
      const p = build(path, EVERYTHING);
      expect(plain.buffers.has('loraBT')).to.equal(false);
      // lora_B copied [r, out] for every module: 2 layers × (3·64 + 64 + 256 + 64) outputs × r 4.
      expect(p.buffers.get('loraBT')).to.deep.equal({ elems: 2 * (192 + 64 + 256 + 64) * 4, type: 'f32' });
      expect(p.kernels[0].label).to.equal('lora.bt');
      // The forward epilogue reads the copy (tc: in its own pass, after a bare product into mmOut).
      const epi = path === 'tc' ? 'epi fwd ' : 'fwd ';
      const fwd = p.kernels.filter((k) => k.label.startsWith(epi));
      expect(fwd.length).to.equal(8);
      for (const k of fwd) {
        expect(k.bindings.map((b) => b.buffer)).to.include('loraBT');
        expect(k.bindings.map((b) => b.buffer)).not.to.include('theta');
      }
      const split = path === 'tc' ? 16 : 0; // 8 forward and 8 dx products; the LM head's are bare already
      expect(p.kernels.filter((k) => k.label.startsWith('epi ')).length).to.equal(split);
      if (path === 'tc') {
        // The products themselves are bare: their operands in, mmOut out, nothing else bound.
        for (const k of p.kernels.filter((x) => x.label.startsWith('fwd ') || x.label.startsWith('bwd.dx ')))
          expect(k.bindings.map((b) => b.buffer).slice(1), k.label).to.deep.equal(['w', 'mmOut']);
        expect(p.buffers.get('mmOut')?.elems).to.equal(96 * 256);
      }
      // K = 64 and 256 at 16 per slice: every u and du product is split and summed.
      expect(p.kernels.filter((k) => k.label.startsWith('lora.u.sum ')).length).to.equal(8);
      expect(p.kernels.filter((k) => k.label.startsWith('lora.du.sum ')).length).to.equal(8);
      expect(p.kernels.length).to.equal(plain.kernels.length + 1 + 16 + split);
      expect(p.gradWrites).to.deep.equal(plain.gradWrites);
      // The split partials fit the shared 'part' buffer: 16 slices of [rows, r] for the 256-deep products.
      expect(p.buffers.get('part')?.elems).to.be.at.least(16 * 96 * 4);
    }
    const tc = build('tc', EVERYTHING).kernels;
    const wg = (label: string): string => /@workgroup_size\((\d+)/.exec(tc.find((k) => k.label === label)?.code ?? '')?.[1] ?? '';
    expect(wg('fwd h0.attn.c_attn')).to.equal('64'); // d2x1: two subgroups
    expect(wg('fwd h0.mlp.c_fc')).to.equal('256'); // s4x2: eight
    expect(wg('attn.fwd')).to.equal('256'); // 32 rows × 8 threads
  });

  it("compiles every shader of the step under every choice with Dawn's WGSL compiler", async () => {
    const dev = await nullDevice();
    // The tc path's defaults, as the engine builds them.
    for (const g of shareKernels(build('tc', DEFAULT_TUNING).kernels).groups) {
      expect(await wgslErrors(dev, g.code), `tc default ${g.members.length}`).to.deep.equal([]);
    }
    for (const [family, path] of [
      ['gpt2', 'f32'],
      ['gpt2', 'f16'],
      ['gpt2', 'tc'],
      ['llama', 'f32'],
      ['llama', 'tc'],
    ] as const) {
      const kernels = family === 'gpt2' ? build(path, EVERYTHING).kernels : llama(path, EVERYTHING);
      if (family === 'llama') expect(kernels[0].label).to.equal('lora.bt');
      const { groups } = shareKernels(kernels);
      for (const g of groups) {
        const label = kernels[g.members[0]].label;
        expect(
          g.params.every((x) => x.length <= 64),
          label,
        ).to.equal(true);
        expect(await wgslErrors(dev, g.code), `${family} ${path} ${label}`).to.deep.equal([]);
      }
    }
    dev.destroy();
  });
});
