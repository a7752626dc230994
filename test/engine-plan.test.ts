// CPU-checkable parts of the WebGPU engine (CI has no GPU): f16 conversion, weight and adapter layout, the step
// program (every adapter gradient written exactly once, the tensor-core path used only where it applies, buffer
// sizes), WGSL generation and the run-time path choice. The kernels themselves are checked on a GPU by
// test/gpu-engine.ts (`npm run test:gpu`).
import { parseGpt2Config, type Gpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { halfBits, halfToFloat, toHalfBits } from '../client-sdk/engine/half';
import { adapterOffsets, modelLayout, packWeights } from '../client-sdk/engine/layout';
import { buildProgram, type EnginePath } from '../client-sdk/engine/program';
import { chooseTile, tiledMatmul, type MatmulSpec } from '../client-sdk/engine/matmul';
import { tcMatmul, tcMatmulSimple } from '../client-sdk/engine/matmul-tc';
import { choosePath, parseEnginePath, type Capabilities } from '../client-sdk/engine/device';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { shareKernels } from '../client-sdk/engine/dedupe';
import { pairsByRow } from '../client-sdk/engine/step-inputs';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CFG: Gpt2Config = parseGpt2Config({ vocab_size: 300, n_positions: 64, n_embd: 32, n_layer: 2, n_head: 4 });
const LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };

describe('engine: f16 conversion', () => {
  it('rounds to nearest even, keeps subnormals, saturates to infinity', () => {
    expect(halfBits(1)).to.equal(0x3c00);
    expect(halfBits(-2)).to.equal(0xc000);
    expect(halfBits(65504)).to.equal(0x7bff);
    expect(halfBits(65520)).to.equal(0x7c00);
    expect(halfBits(2 ** -24)).to.equal(0x0001);
    expect(halfBits(2 ** -26)).to.equal(0x0000);
    expect(halfBits(1 + 2 ** -11)).to.equal(0x3c00); // tie → even
    expect(halfBits(1 + 3 * 2 ** -11)).to.equal(0x3c02);
    expect(halfBits(NaN) & 0x7c00).to.equal(0x7c00);
    for (const x of [0.1, -3.14159, 1e-5, 1234.5, 6.1e-5]) {
      expect(Math.abs(halfToFloat(halfBits(x)) - x)).to.be.at.most(Math.abs(x) * 2 ** -11 + 2 ** -25);
    }
    expect(toHalfBits(new Float32Array(3)).length).to.equal(4); // padded to whole 4-byte words
  });
});

describe('engine: layout', () => {
  it('adapter offsets follow the sorted PEFT layout of the flat adapter; weights land at their offsets', () => {
    const adapter = initLoraAdapter(CFG, LORA, 1);
    const offs = adapterOffsets(adapter);
    let off = 0;
    for (const t of adapter) {
      const k = t.name.match(/(h\.\d+\.\w+\.c_\w+)\.lora_([AB])/) as RegExpMatchArray;
      expect(offs.get(`${k[1]}:${k[2]}`)?.offset).to.equal(off);
      off += t.data.length;
    }
    const L = modelLayout(CFG, adapter, 16);
    expect(L.adapterSize).to.equal(off);
    expect(L.loraModules).to.equal(2 * 4); // c_proj matches attn.c_proj and mlp.c_proj
    expect(L.r).to.equal(4);
    const weights = new Map(randomGpt2Weights(CFG, 3).map((t) => [t.name, t.data]));
    const { w, vec } = packWeights(CFG, L, weights);
    const fc = L.layers[1].proj['mlp.c_fc'];
    expect([...w.subarray(fc.w, fc.w + 5)]).to.deep.equal([...(weights.get('h.1.mlp.c_fc.weight') as Float32Array).subarray(0, 5)]);
    expect(vec[L.lnf.gamma]).to.equal(1);
    expect(w.length).to.equal(2 * (32 * 96 + 32 * 32 + 32 * 128 + 128 * 32));
  });
});

describe('engine: step program', () => {
  for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
    it(`${path}: writes every adapter gradient exactly once and sizes every buffer`, () => {
      const adapter = initLoraAdapter(CFG, { ...LORA, targetModules: ['c_attn', 'c_fc'] }, 1);
      const layout = modelLayout(CFG, adapter, 2 * 16);
      const prog = buildProgram({ config: CFG, layout, batch: 2, seq: 16, path, loraScale: 2, adam: ADAM, clip: true });
      const hits = new Uint8Array(layout.adapterSize);
      for (const [o, n] of prog.gradWrites) for (let i = o; i < o + n; i++) hits[i]++;
      expect(hits.every((h) => h === 1)).to.equal(true);
      const labels = prog.kernels.map((k) => k.label);
      expect(labels[0]).to.equal('embed');
      expect(labels[labels.length - 1]).to.equal('adamw');
      expect(labels.filter((l) => l.startsWith('lora.dA ')).length).to.equal(2 * 2);
      // No LoRA on the projections the config leaves out: no low-rank kernels for them.
      expect(labels.some((l) => l.includes('c_proj') && l.startsWith('lora.'))).to.equal(false);
      const tc = prog.kernels.filter((k) => k.subgroupMatrix);
      if (path === 'tc') {
        expect(tc.length).to.be.greaterThan(0);
        // only base products run on tensor cores; rank-r products and split-K reductions stay on the tiled kernel
        expect(tc.every((k) => /^(fwd|bwd\.dx|lm\.)/.test(k.label))).to.equal(true);
      } else expect(tc.length).to.equal(0);
      const f16 = prog.kernels.some((k) => k.bindings.some((b) => b.type === 'f16'));
      expect(f16).to.equal(path !== 'f32');
      expect(prog.buffers.get('logits')?.elems).to.equal(2 * 16 * 304);
      expect(prog.buffers.get('xres')?.elems).to.equal((2 * 2 + 1) * 32 * 32);
      for (const k of prog.kernels) expect(k.code).to.match(/@compute @workgroup_size/);
    });
  }
  it('rejects sequences longer than the model allows', () => {
    const adapter = initLoraAdapter(CFG, LORA, 1);
    expect(() => buildProgram({ config: CFG, layout: modelLayout(CFG, adapter, 65), batch: 1, seq: 65, path: 'f32', loraScale: 2, adam: ADAM })).to.throw(
      /n_positions/,
    );
  });
});

describe('engine: step inputs', () => {
  it('groups the scored pairs by position, in pair order, and refuses bad ids and pairs before any write', () => {
    const ids = Int32Array.of(5, 6, 7, 8);
    const r = pairsByRow(ids, Int32Array.of(2, 0, 2, 3), Int32Array.of(1, 2, 3, 4), 4, 10);
    expect(r.pairs).to.equal(4);
    expect([...r.rowStart]).to.deep.equal([0, 1, 1, 3, 4]);
    expect([...r.rowPairs]).to.deep.equal([1, 0, 2, 3]);
    expect(() => pairsByRow(ids, Int32Array.of(0), Int32Array.of(1), 5, 10)).to.throw('step ids: 4, expected 5');
    expect(() => pairsByRow(ids, new Int32Array(0), new Int32Array(0), 4, 10)).to.throw('step has 0 scored pairs (1..4 allowed)');
    expect(() => pairsByRow(Int32Array.of(5, 6, 10, 8), Int32Array.of(0), Int32Array.of(1), 4, 10)).to.throw('token id 10 outside the vocabulary');
    expect(() => pairsByRow(ids, Int32Array.of(4), Int32Array.of(1), 4, 10)).to.throw('bad scored pair (4, 1)');
    expect(() => pairsByRow(ids, Int32Array.of(0), Int32Array.of(-1), 4, 10)).to.throw('bad scored pair (0, -1)');
  });
});

describe('engine: WGSL generation', () => {
  const spec = (over: Partial<MatmulSpec> = {}): MatmulSpec => ({
    label: 't',
    M: 100,
    N: 200,
    K: 64,
    a: { buffer: 'A', offset: 0, type: 'f16', trans: false },
    b: { buffer: 'B', offset: 8, type: 'f16', trans: true },
    epi: { out: { buffer: 'C', offset: 0, ld: 200, mode: 'store' } },
    ...over,
  });
  it('tiles split the workgroup evenly and narrow tiles serve rank-r outputs', () => {
    for (const [m, n] of [
      [4096, 16],
      [16, 768],
      [4096, 768],
      [8192, 3072],
    ]) {
      const t = chooseTile(m, n);
      expect((t.wy * t.tm * t.bk) % (t.wx * t.wy)).to.equal(0);
      expect((t.wx * t.tn * t.bk) % (t.wx * t.wy)).to.equal(0);
    }
    expect(chooseTile(4096, 16).tn).to.equal(1);
  });
  it('bakes shapes and offsets in as constants, enables f16 and subgroup matrices only where used', () => {
    const k = tiledMatmul(spec());
    expect(k.code).to.contain('enable f16;');
    expect(k.code).not.to.contain('subgroup_matrix');
    expect(k.code).to.contain('8u + (n0 + nn) * 64u');
    const t = tcMatmul(spec());
    expect(t.code).to.contain('enable chromium_experimental_subgroup_matrix;');
    expect(t.code).to.contain('subgroupMatrixMultiplyAccumulate');
    expect(t.grid).to.deep.equal([2, 1, 1]); // 128×128 blocks of four subgroups
    expect(tcMatmulSimple(spec()).grid).to.deep.equal([4, 2, 1]); // the first kernel's 64×64
    expect(() => tcMatmul(spec({ a: { buffer: 'A', offset: 0, type: 'f32', trans: false } }))).to.throw(/f16 operands/);
    expect(() => tiledMatmul(spec({ epi: { out: { buffer: 'C', offset: 0, ld: 200, mode: 'add', type: 'f16' } } }))).to.throw(/f32 output/);
  });
});

describe('engine: path choice', () => {
  const caps = (over: Partial<Capabilities>): Capabilities => ({
    adapter: 'test',
    f16: false,
    subgroups: true,
    subgroupMatrix: false,
    subgroupMinSize: 32,
    subgroupMaxSize: 32,
    maxStorageBufferBindingSize: 1 << 30,
    maxBufferSize: 1 << 30,
    maxComputeWorkgroupStorageSize: 32768,
    ...over,
  });
  it('takes tensor cores when offered, f32 otherwise, and honours an explicit choice it can serve', () => {
    expect(choosePath(caps({ f16: true, subgroupMatrix: true }))).to.equal('tc');
    expect(choosePath(caps({ f16: true }))).to.equal('f32');
    expect(choosePath(caps({ f16: true, subgroupMatrix: true }), 'f32')).to.equal('f32');
    expect(() => choosePath(caps({ f16: true }), 'tc')).to.throw(/subgroup matrices/);
    expect(() => choosePath(caps({}), 'f16')).to.throw(/shader-f16/);
    expect(parseEnginePath('auto')).to.equal(undefined);
    expect(parseEnginePath('off')).to.equal('off');
    expect(() => parseEnginePath('fast')).to.throw(/FEDTUNE_ENGINE/);
  });
});

describe('engine: pipeline sharing', () => {
  it('one shader per kernel template; each dispatch recovers its own constants from its parameter block', () => {
    const cfg = parseGpt2Config({ vocab_size: 300, n_positions: 64, n_embd: 32, n_layer: 4, n_head: 4 });
    const adapter = initLoraAdapter(cfg, LORA, 1);
    const prog = buildProgram({ config: cfg, layout: modelLayout(cfg, adapter, 32), batch: 2, seq: 16, path: 'tc', loraScale: 2, adam: ADAM });
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
});
