// The tiled tensor-core matmul's WGSL (client-sdk/engine/matmul-tc-tiled.ts), checked without a GPU: Dawn's own
// WGSL compiler (npm `webgpu`, null backend, which offers subgroup matrices but runs nothing) accepts every form the
// engine generates (each storage order, every epilogue, split-K, per-step rows, partial tiles, each tile shape),
// including the GPT-2 and Llama step programs' tensor-core kernels; and the tiles' geometry (grid, workgroup
// memory) is what the plan says. The kernels' numbers are checked on a GPU by test/gpu-engine.ts, and their
// indexing on Mesa's lavapipe through the plain-WGSL emulation (bench/tc-matmul-probe.ts --emulate).
import { nullDevice, wgslErrors } from './dawn-null';
import type { MatmulSpec } from '../client-sdk/engine/matmul';
import { tcMatmulTiled, type TcTile } from '../client-sdk/engine/matmul-tc-tiled';
import { tcMatmul } from '../client-sdk/engine/matmul-tc';
import { modelLayout } from '../client-sdk/engine/layout';
import { buildProgram } from '../client-sdk/engine/program';
import { shareKernels } from '../client-sdk/engine/dedupe';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter } from '../proto/model/lora-layout';
import { parseLlamaConfig } from '../proto/model/llama-config';
import { llamaLayout } from '../client-sdk/engine/layout-llama';
import { buildLlamaProgram } from '../client-sdk/engine/program-llama';
import type { Kernel } from '../client-sdk/engine/kernel';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const TILES: TcTile[] = [
  { sgm: 2, sgn: 2, tm: 4, tn: 4, bk: 32, mode: 'staged', double: true, pad: 8, vec: true },
  { sgm: 2, sgn: 2, tm: 4, tn: 2, bk: 32, mode: 'staged', pad: 0, vec: false },
  { sgm: 2, sgn: 2, tm: 2, tn: 2, bk: 16, mode: 'direct' },
];

function specs(): MatmulSpec[] {
  const [M, N, K] = [150, 200, 120];
  const out = { buffer: 'C', offset: 0, ld: N, mode: 'store' as const };
  const base = (ta: boolean, tb: boolean): MatmulSpec => ({
    label: `t ${ta} ${tb}`,
    M,
    N,
    K,
    a: { buffer: 'A', offset: 8, type: 'f16', trans: ta },
    b: { buffer: 'B', offset: 0, type: 'f16', trans: tb },
    epi: { out },
  });
  const lora = { low: { buffer: 'low', offset: 0 }, mat: { buffer: 'mat', offset: 0 }, r: 4, scale: 2 };
  const all: MatmulSpec[] = [];
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      const s = base(ta, tb);
      all.push(
        s,
        { ...s, splitK: 3, rowsArePairs: true },
        {
          ...s,
          epi: { bias: { buffer: 'bias', offset: 0 }, lora: { ...lora, layout: 'nr' }, gelu: { buffer: 'pre', offset: 0 }, out: { ...out, type: 'f16' } },
        },
        {
          ...s,
          epi: {
            lora: { ...lora, layout: 'rn' },
            geluGrad: { buffer: 'pre', offset: 0 },
            residual: { buffer: 'res', offset: 0 },
            out: { ...out, mode: 'add' },
            out16: { buffer: 'C16', offset: 0, ld: N },
          },
        },
      );
    }
  }
  return all;
}

describe('engine: tiled tensor-core matmul WGSL', function () {
  this.timeout(120000);
  let dev: GPUDevice;
  before(async () => {
    dev = await nullDevice();
  });

  it("compiles with Dawn's WGSL compiler in every storage order, epilogue and tile shape", async () => {
    for (const t of TILES) {
      for (const s of specs()) {
        const k = tcMatmulTiled(s, t);
        expect(await wgslErrors(dev, k.code), `${JSON.stringify(t)} ${s.label}`).to.deep.equal([]);
        expect(k.subgroupMatrix).to.equal(true);
        // the emulation used to check the indexing on adapters without tensor cores compiles too
        const e = tcMatmulTiled(s, t, { emulate: true });
        expect(e.code).not.to.contain('subgroup_matrix');
        expect(await wgslErrors(dev, e.code), `emulated ${JSON.stringify(t)} ${s.label}`).to.deep.equal([]);
      }
    }
  });

  it('covers the matrix with its grid, keeps within the workgroup memory it is given, and turns off only the subgroup-matrix uniformity rule', () => {
    const s = specs()[0];
    const k = tcMatmulTiled(s, TILES[0]);
    expect(k.grid).to.deep.equal([2, 2, 1]); // 128×128 blocks over 150×200
    expect(k.code).to.contain('@workgroup_size(128, 1, 1)');
    expect(k.code).to.contain('diagnostic(off, chromium.subgroup_matrix_uniformity);');
    const bytes = (code: string): number =>
      [...code.matchAll(/var<workgroup> \w+: array<(f16|f32), (\d+)>/g)].reduce((n, m) => n + Number(m[2]) * (m[1] === 'f16' ? 2 : 4), 0);
    expect(bytes(k.code)).to.be.at.most(48 * 1024);
    expect(bytes(tcMatmulTiled(s, { ...TILES[0], wgBytes: 44 * 1024 }).code)).to.be.at.most(44 * 1024);
    expect(() => tcMatmulTiled(s, { ...TILES[0], wgBytes: 16 * 1024 })).to.throw(/workgroup memory/);
    expect(() => tcMatmulTiled({ ...s, a: { ...s.a, type: 'f32' } }, TILES[0])).to.throw(/f16 operands/);
  });

  const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
  const gpt2 = (): readonly Kernel[] => {
    const cfg = parseGpt2Config({ vocab_size: 300, n_positions: 64, n_embd: 64, n_layer: 2, n_head: 4 });
    const adapter = initLoraAdapter(cfg, { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] }, 1);
    return buildProgram({ config: cfg, layout: modelLayout(cfg, adapter, 2 * 48), batch: 2, seq: 48, path: 'tc', loraScale: 2, adam }).kernels;
  };
  const llama = (): readonly Kernel[] => {
    const base = { model_type: 'llama', vocab_size: 300, hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 4 };
    const cfg = parseLlamaConfig({ ...base, num_key_value_heads: 2, max_position_embeddings: 64, rms_norm_eps: 1e-5, tie_word_embeddings: true });
    const all7 = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];
    const adapter = initLoraAdapter(cfg, { r: 4, alpha: 8, dropout: 0, targetModules: all7 }, 1);
    const layout = llamaLayout(cfg, adapter, 2 * 48);
    return buildLlamaProgram({ config: cfg, layout, batch: 2, seq: 48, path: 'tc', loraScale: 2, adam }).kernels;
  };
  for (const [family, build] of [
    ['GPT-2', gpt2],
    ['Llama', llama],
  ] as const)
    it(`gives the ${family} step's tensor-core products the tiled kernel, which Dawn compiles as the engine shares it`, async () => {
      const kernels = build();
      const tc = kernels.filter((k) => k.subgroupMatrix);
      expect(tc.length).to.be.greaterThan(0);
      for (const k of tc) expect(k.code, k.label).to.contain('diagnostic(off, chromium.subgroup_matrix_uniformity);');
      // As the engine builds them: kernels that differ only in constants share one shader reading those constants
      // from a uniform block of at most 64 (engine.ts), so each layer-varying constant must appear once.
      const { groups } = shareKernels(kernels);
      const tcGroups = groups.filter((g) => kernels[g.members[0]].subgroupMatrix);
      expect(tcGroups.length).to.be.lessThan(tc.length);
      for (const g of tcGroups) {
        const label = kernels[g.members[0]].label;
        expect(
          g.params.every((p) => p.length <= 64),
          label,
        ).to.equal(true);
        expect(await wgslErrors(dev, g.code), label).to.deep.equal([]);
      }
    });

  it('falls back to one buffer, then to the one-subgroup kernel, when workgroup memory is short', () => {
    const s = specs()[0];
    const wg = (code: string): string => /@workgroup_size\((\d+)/.exec(code)?.[1] ?? '';
    expect(wg(tcMatmul(s).code)).to.equal('128');
    expect(tcMatmul(s, 32 * 1024).code).to.contain('@workgroup_size(128, 1, 1)');
    expect(tcMatmul(s, 32 * 1024).code).not.to.contain('let cur = t % 2u;');
    expect(wg(tcMatmul(s, 16 * 1024).code)).to.equal('32');
  });
});
