// The engine's own GPU memory (client-sdk/engine/memory.ts), counted from its program as LoraEngine allocates it:
// every buffer by role, the dispatch constants and the adapter's read-back. The GPU scripts check the storage
// figure against a live engine's bytesAllocated (test/gpu-fallback.ts).
import { buildProgram } from '../client-sdk/engine/program';
import { modelLayout } from '../client-sdk/engine/layout';
import { bufferBytes, engineMemory } from '../client-sdk/engine/memory';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { buildLlamaProgram } from '../client-sdk/engine/program-llama';
import { llamaLayout } from '../client-sdk/engine/layout-llama';
import { tinyLlamaTwinConfig, tinyQwen3Config } from './tiny-qwen3';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CFG = parseGpt2Config({ model_type: 'gpt2', vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4 });
const LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_fc'] };

describe('engine GPU memory (client-sdk/engine/memory.ts)', () => {
  it('counts every buffer once by role; the base weights are f32 on the f32 path and f16 (but wte/wpe) on tc', () => {
    const adapter = initLoraAdapter(CFG, LORA, 7);
    const layout = modelLayout(CFG, adapter, 2 * 16);
    const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    const { vocabSize: V, nEmbd: D, nPositions: T } = CFG;
    for (const path of ['f32', 'tc'] as const) {
      const program = buildProgram({ config: CFG, layout, batch: 2, seq: 16, path, loraScale: 2, adam });
      const m = engineMemory(program, layout.adapterSize);
      let all = 0;
      for (const b of program.buffers.values()) all += bufferBytes(b);
      expect(m.groups.weights + m.groups.adapter + m.groups.inputs + m.groups.activations).to.equal(all);
      expect(m.storage).to.equal(all);
      const weights =
        4 * (V * D + T * D + layout.vecSize) + (path === 'f32' ? 4 * layout.wSize : bufferBytes({ elems: layout.wSize, type: 'f16' }) + 2 * V * D);
      expect(m.groups.weights, path).to.equal(weights);
      // theta, its gradient and Adam's two moments in f32, plus the clip's partial norms and the norm.
      const normPart = program.buffers.get('normPart')?.elems ?? 0;
      expect(m.groups.adapter).to.equal(16 * layout.adapterSize + 4 * normPart + 4);
      expect(m.uniform).to.equal(256 * program.kernels.length);
      expect(m.readback).to.equal(4 * layout.adapterSize);
      expect(m.peak).to.equal(m.storage + m.uniform + m.readback);
    }
  });
  it("Qwen3's q/k norms cost their weights, the projections' q and k kept for the backward, and one rstd per head", () => {
    const all7: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };
    const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    const [B, T] = [2, 16];
    const N = B * T;
    for (const path of ['f32', 'f16', 'tc'] as const) {
      const [qwen3, twin] = [tinyQwen3Config(), tinyLlamaTwinConfig()].map((config) => {
        const adapter = initLoraAdapter(config, all7, 1);
        const layout = llamaLayout(config, adapter, N);
        return engineMemory(buildLlamaProgram({ config, layout, batch: B, seq: T, path, loraScale: 2, adam }), layout.adapterSize);
      });
      const { nLayer: L, nHead: H, nKvHead: KV, headDim: HD } = tinyQwen3Config();
      expect(qwen3.groups.weights - twin.groups.weights, path).to.equal(4 * L * 2 * HD);
      expect(qwen3.groups.activations - twin.groups.activations, path).to.equal(4 * L * N * (H + KV) * HD + 4 * L * N * (H + KV));
      expect(qwen3.groups.adapter).to.equal(twin.groups.adapter);
    }
  });
});
