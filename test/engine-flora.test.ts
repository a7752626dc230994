// FLoRA on the WebGPU engine without a GPU (client-sdk/engine/merge.ts, weights.ts, trainer.ts): the merge kernel
// compiles on Dawn's null backend for both weight types; W0 put back into the merged modules only, with construction's
// bytes there (restoreW0, odd-sized models included); a real LoraEngine on the null backend (GPT-2 and Llama, every
// path) merges a stack of small rank and one of rank K, and puts W0 back, with no validation error (buffer sizes,
// bindings, alignment) and no write to `w` outside the modules merged; the host arithmetic around the kernel; and the
// engine trainer scores a FLoRA stack exactly as the tfjs trainer does (both evaluate on tfjs). The numbers are checked
// on a GPU: test/gpu-engine-flora.ts.
import { nullDevice, wgslErrors } from './dawn-null';
import { tinyQwen3Config, tinyQwen3Weights } from './tiny-qwen3';
import { tinyGemma3Config, tinyGemma3Weights } from './tiny-gemma3';
import { LoraEngine } from '../client-sdk/engine/engine';
import type { EngineDevice } from '../client-sdk/engine/device';
import type { EnginePath } from '../client-sdk/engine/program';
import { mergeGrid, mergeKernelCode, transposeB } from '../client-sdk/engine/merge';
import { packedProjections, projectionAt, restoreW0, stackModules, stackW0, uploadBase } from '../client-sdk/engine/weights';
import { covered, regions, writesTo } from './engine-writes';
import { modelLayout } from '../client-sdk/engine/layout';
import { llamaLayout } from '../client-sdk/engine/layout-llama';
import * as layoutLlama from '../client-sdk/engine/layout-llama';
import { EngineSftTrainer } from '../client-sdk/engine/trainer';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { selectBackend } from '../client-sdk/model/backend';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { parseGpt2Config, type Gpt2Config } from '../proto/model/gpt2-config';
import { parseLlamaConfig, type LlamaConfig } from '../proto/model/llama-config';
import { isLlamaConfig } from '../proto/model/model-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import type { NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const GPT2 = parseGpt2Config({ model_type: 'gpt2', vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 2 });
/** A Llama config: HF's keys over a small vocabulary and context. */
const llamaConfig = (keys: Record<string, number>): LlamaConfig =>
  parseLlamaConfig({ model_type: 'llama', vocab_size: 64, max_position_embeddings: 32, rms_norm_eps: 1e-5, ...keys });
const LLAMA = llamaConfig({ hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2 });
const SITE: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_fc'] };

// Odd sizes (GPT-2 15 wide: c_attn and attn.c_proj have an odd number of values; Llama 15 wide, 2 heads of 4, 7
// intermediate, 3 layers: gate, up and down odd, the layer odd): projections that start or end mid-way through a
// 4-byte word of an f16 `w`, and the Llama's last ends in construction's padding.
const GPT2_ODD = parseGpt2Config({ model_type: 'gpt2', vocab_size: 40, n_positions: 16, n_embd: 15, n_layer: 2, n_head: 3 });
const LLAMA_ODD = llamaConfig({ hidden_size: 15, head_dim: 4, intermediate_size: 7, num_hidden_layers: 3, num_attention_heads: 2, num_key_value_heads: 1 });
const QWEN3 = tinyQwen3Config();
const GEMMA3 = tinyGemma3Config();

/** A version as the coordinator sends it: rank `r` (scaling 1) with non-zero factors on `targets`. */
function stackOf(cfg: Gpt2Config | LlamaConfig, r: number, targets: string[], seed: number): NamedTensor[] {
  return initLoraAdapter(cfg, { r, alpha: r, dropout: 0, targetModules: targets }, seed).map((t) => {
    const rng = new Prng(seed + 1, t.data.length);
    return { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.1) };
  });
}

/** An EngineDevice on Dawn's null backend, offering every path. */
async function nullEngineDevice(): Promise<EngineDevice> {
  const device = await nullDevice();
  const lim = device.limits;
  return {
    device,
    caps: {
      adapter: 'null',
      f16: true,
      subgroups: true,
      subgroupMatrix: true,
      subgroupMinSize: 32,
      subgroupMaxSize: 32,
      maxStorageBufferBindingSize: lim.maxStorageBufferBindingSize,
      maxBufferSize: lim.maxBufferSize,
      maxComputeWorkgroupStorageSize: lim.maxComputeWorkgroupStorageSize,
    },
  };
}

describe('engine: FLoRA merge (client-sdk/engine/merge.ts)', function () {
  this.timeout(120_000);

  it('the merge kernel compiles on Dawn for f32 and f16 weights; the grid covers every element; B is transposed to [r, out]', async () => {
    const dev = await nullDevice();
    for (const w of ['f32', 'f16'] as const) expect(await wgslErrors(dev, mergeKernelCode(w)), w).to.deep.equal([]);
    for (const n of [1, 64, 65, 64 * 65535, 64 * 65535 + 1, 4096 * 14336]) {
      const [x, y] = mergeGrid(n);
      expect(x * y * 64, `${n}`).to.be.at.least(n);
      expect(x).to.be.at.most(65535);
      expect((x * (y - 1) * 64) / n, `${n}: no row of workgroups wholly idle`).to.be.below(1);
    }
    expect([...transposeB(Float32Array.of(1, 2, 3, 4, 5, 6), 3, 2)]).to.deep.equal([1, 3, 5, 2, 4, 6]);
    expect(() => transposeB(new Float32Array(5), 3, 2)).to.throw('lora_B has 5 values, expected 3·2');
  });

  it('finds a projection in w by module path, for its own family only; the merge reads W0 as construction packs it', () => {
    const g = modelLayout(GPT2, initLoraAdapter(GPT2, SITE, 1), 8);
    expect(projectionAt(g, 'h.1.mlp.c_fc')).to.equal(g.layers[1].proj['mlp.c_fc']);
    expect(projectionAt(g, 'h.0.attn.c_attn')).to.include({ inF: 32, outF: 96 });
    const l = llamaLayout(LLAMA, [], 8);
    expect(projectionAt(l, 'layers.1.mlp.down_proj')).to.include({ inF: 48, outF: 32 });
    for (const [layout, bad] of [
      [g, 'layers.0.self_attn.q_proj'],
      [g, 'h.2.attn.c_attn'],
      [g, 'h.0.constructor'],
      [l, 'h.0.attn.c_attn'],
      [l, 'layers.0.mlp.c_fc'],
    ] as const)
      expect(() => projectionAt(layout, bad)).to.throw(`the engine's model has no projection ${bad}`);
    // The merge packs only the stack's modules (stackW0): the very values construction's whole packing holds there.
    for (const [config, weights, targets] of [
      [GPT2, randomGpt2Weights(GPT2, 3), ['c_attn', 'c_proj']],
      [LLAMA, randomLlamaWeights(LLAMA, 3), ['k_proj', 'o_proj', 'gate_proj']],
    ] as const) {
      const layout = isLlamaConfig(config) ? llamaLayout(config, [], 8) : modelLayout(config, [], 8);
      const src = { config, weights, path: 'f32' as const, seq: 8 };
      const whole = packedProjections(src, layout);
      const mods = stackModules(layout, stackOf(config, 3, [...targets], 4));
      expect(mods.length).to.equal(6); // 2 layers × (GPT-2: c_attn, attn.c_proj, mlp.c_proj; Llama: k, o, gate)
      stackW0(src, mods).forEach((pack, i) => {
        const w0 = pack();
        expect([...w0], mods[i].path).to.deep.equal([...whole.subarray(mods[i].offset, mods[i].offset + w0.length)]);
      });
    }
  });

  it('puts W0 back into the given modules only, with the bytes construction wrote there (GPT-2 and Llama, even and odd sizes, f32 and f16)', () => {
    for (const [config, targets] of [
      [GPT2, ['c_attn', 'c_proj']],
      [LLAMA, ['k_proj', 'o_proj', 'gate_proj']],
      [GPT2_ODD, ['c_attn', 'c_fc']],
      [GPT2_ODD, ['c_proj']],
      [LLAMA_ODD, ['q_proj', 'gate_proj', 'down_proj']],
      [LLAMA_ODD, ['k_proj', 'up_proj']],
    ] as const) {
      const llama = isLlamaConfig(config);
      const weights = llama ? randomLlamaWeights(config, 3) : randomGpt2Weights(config, 3);
      const layout = llama ? llamaLayout(config, [], 8) : modelLayout(config, [], 8);
      const paths = stackModules(layout, stackOf(config, 2, [...targets], 4)).map((m) => m.path);
      for (const path of ['f32', 'f16'] as const) {
        const src = { config, weights, path, seq: 8 };
        const bytes = path === 'f32' ? 4 : 2;
        let built: Uint8Array = new Uint8Array(0);
        uploadBase(src, layout, (name, data) => {
          if (name === 'w') built = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
        });
        const writes: [number, number][] = [];
        const w = new Uint8Array(built.length); // zeros: every byte not written stays 0
        restoreW0(src, layout, paths, (data, at) => {
          writes.push([at, data.byteLength]);
          w.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), at);
        });
        const what = `${llama ? 'llama' : 'gpt2'} ${config.nEmbd} wide, ${targets.join(' ')}, ${path}`;
        expect(
          writes.every(([at, len]) => at % 4 === 0 && len % 4 === 0 && at + len <= Math.ceil(built.length / 4) * 4),
          `${what}: whole words`,
        ).to.equal(true);
        const want = regions(layout, paths, path !== 'f32');
        expect(covered(writes, bytes), what).to.deep.equal(want);
        const inside = (j: number): boolean => want.some(([a, b]) => j >= a * bytes && j < b * bytes);
        expect(
          built.every((x, j) => (inside(j) ? w[j] === x : w[j] === 0)),
          `${what}: construction's bytes there`,
        ).to.equal(true);
      }
    }
  });

  it('a LoraEngine on the null backend merges a stack of rank 3 and one of rank K into its weights and puts W0 back into the merged modules only, without a validation error (GPT-2 and Llama, even and odd sizes, Qwen3, Gemma 3, every path); refuses a stack of the wrong shape or above rank K', async () => {
    const ed = await nullEngineDevice();
    const device = ed.device;
    // [family, config, weights, targets, K (the largest min(d_in, d_out))]; the odd-sized models put back modules
    // that start or end mid-way through a 4-byte word of an f16 `w` (writeBuffer refuses a write that does).
    const models: [string, Gpt2Config | LlamaConfig, NamedTensor[], string[], number][] = [
      ['gpt2', GPT2, randomGpt2Weights(GPT2, 3), ['c_attn', 'c_fc', 'c_proj'], 32],
      ['llama', LLAMA, randomLlamaWeights(LLAMA, 3), ['q_proj', 'v_proj', 'down_proj'], 32],
      ['gpt2 odd', GPT2_ODD, randomGpt2Weights(GPT2_ODD, 3), ['c_proj', 'c_attn'], 15],
      ['llama odd', LLAMA_ODD, randomLlamaWeights(LLAMA_ODD, 3), ['down_proj', 'gate_proj', 'q_proj'], 8],
      // Qwen3: its q/k norms sit in `vec`, which no merge touches; q_proj is 32 → 64 (head_dim 16 ≠ 32/4).
      ['qwen3', QWEN3, tinyQwen3Weights(QWEN3, 3), ['q_proj', 'k_proj', 'o_proj'], 32],
      // Gemma 3: its (1 + w) norm scales sit in `vec` too; local layers' window 4 < seq 8 and their own rope tables.
      ['gemma3', GEMMA3, tinyGemma3Weights(GEMMA3, 3), ['o_proj', 'down_proj', 'q_proj'], 32],
    ];
    for (const [family, config, weights, targets, K] of models)
      for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
        const adapter = initLoraAdapter(config, { ...SITE, targetModules: targets }, 1);
        const e = new LoraEngine(ed, { config, weights, adapter, batch: 1, seq: 8, path, loraScale: 2 });
        expect(await e.compileErrors(), `${family} ${path}: the step builds`).to.deep.equal([]);
        device.pushErrorScope('validation');
        expect(e.hasMergedStack).to.equal(false);
        const first = stackOf(config, 3, targets, 5);
        const half = path !== 'f32';
        expect(await writesTo(device, 'w', () => e.mergeStack(first)), 'the first merge puts nothing back').to.deep.equal([]);
        // Rank K: a stack in dense form, beyond any rank the LoRA kernels are built for; its modules a subset of the
        // first's, so the others get W0 back (and only they: no other write to `w`).
        const second = stackOf(config, K, targets.slice(0, 1), 6);
        const [was, now] = [first, second].map((st) => stackModules(e.layout, st).map((m) => m.path));
        const stale = was.filter((p) => !now.includes(p));
        expect(stale.length).to.be.above(0);
        const back = await writesTo(device, 'w', () => e.mergeStack(second));
        expect(covered(back, half ? 2 : 4), `${family} ${path}`).to.deep.equal(regions(e.layout, stale, half));
        expect(e.hasMergedStack).to.equal(true);
        const restored = await writesTo(device, 'w', () => e.restoreBase());
        expect(covered(restored, half ? 2 : 4), `${family} ${path}`).to.deep.equal(regions(e.layout, now, half));
        expect(e.hasMergedStack).to.equal(false);
        expect(await writesTo(device, 'w', () => e.restoreBase()), 'nothing merged, nothing written').to.deep.equal([]);
        const err = await device.popErrorScope();
        expect(err?.message, `${family} ${path}`).to.equal(undefined);
        // lora_A one input wider than the model's projection
        const wrong = stackOf(config, 2, targets.slice(0, 1), 7).map((t) =>
          t.name.includes('lora_A') ? { ...t, shape: [2, t.shape[1] + 1], data: new Float32Array(2 * (t.shape[1] + 1)) } : t,
        );
        const bad = await e.mergeStack(wrong).then(
          () => '',
          (x: Error) => x.message,
        );
        expect(bad).to.match(/^the stack's (h|layers)\.0\.\S+ is \[(\d+), (\d+)\]; the model's is \[\2, (\d+)\]$/);
        // Rank K + 1: no version has it; refused before anything is packed or allocated.
        const deep = await e.mergeStack(stackOf(config, K + 1, targets.slice(0, 1), 8)).then(
          () => '',
          (x: Error) => x.message,
        );
        expect(deep).to.match(/^the stack's \S+ has rank (\d+), above (\d+), the largest min\(d_in, d_out\) of the model: no version has more$/);
        expect(deep).to.include(`rank ${K + 1}, above ${K},`);
        await e.dispose();
      }
  });
});

describe('engine: scoring a FLoRA stack (client-sdk/engine/trainer.ts evaluate)', function () {
  this.timeout(60_000);
  it('the engine trainer scores a stack (any rank, at scaling 1) exactly as the tfjs trainer, and an ordinary adapter as before', async () => {
    await selectBackend();
    const model = Gpt2Model.fromTensors(GPT2, randomGpt2Weights(GPT2, 11, 0.3));
    try {
      const rng = new Prng(4);
      const data = Array.from({ length: 6 }, () => ({ prompt: [1 + rng.nextInt(60), 1 + rng.nextInt(60)], completion: [1 + rng.nextInt(60)] }));
      const opts = { model, lora: SITE, train: data, eval: data, choices: [[3], [5]] };
      const engine = new EngineSftTrainer({ ...opts, device: {} as EngineDevice, path: 'f32' });
      const tfjs = new LoraSftTrainer(opts);
      // rank 12 against the site's 4, and rank K = 32 (the dense form)
      for (const stack of [stackOf(GPT2, 12, ['c_attn', 'c_fc'], 8), stackOf(GPT2, 32, ['c_attn', 'c_fc'], 9)]) {
        const got = await engine.evaluate(stack, { stack: true });
        expect(got).to.deep.equal(await tfjs.evaluate(stack, { stack: true }));
        expect(got.eval_loss).to.be.a('number');
      }
      const plain = initLoraAdapter(GPT2, SITE, 2);
      expect(await engine.evaluate(plain)).to.deep.equal(await tfjs.evaluate(plain));
    } finally {
      model.dispose();
    }
  });
});

describe('engine: FLoRA merge, one module at a time', function () {
  this.timeout(60_000);
  it("a Llama merge packs each module's W0 transpose just before its own upload, so one module's copy is live at a time, not the stack's (every path)", async () => {
    const ed = await nullEngineDevice();
    const queue = ed.device.queue;
    const writeBuffer = queue.writeBuffer.bind(queue);
    // transposeInto packs a Llama W0 (weights.ts stackW0); the merge uploads it to its 'merge-w0' scratch buffer.
    const llamaLayoutModule = layoutLlama as unknown as { transposeInto: (...a: unknown[]) => void };
    const transposeInto = llamaLayoutModule.transposeInto;
    const events: string[] = [];
    llamaLayoutModule.transposeInto = (...a: unknown[]): void => {
      events.push('pack');
      transposeInto(...a);
    };
    queue.writeBuffer = ((buffer: GPUBuffer, ...rest: unknown[]) => {
      if (buffer.label === 'merge-w0') events.push('upload');
      return (writeBuffer as (...a: unknown[]) => void)(buffer, ...rest);
    }) as GPUQueue['writeBuffer'];
    try {
      const targets = ['q_proj', 'v_proj', 'down_proj'];
      const weights = randomLlamaWeights(LLAMA, 3);
      for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
        const e = new LoraEngine(ed, {
          config: LLAMA,
          weights,
          adapter: initLoraAdapter(LLAMA, { ...SITE, targetModules: targets }, 1),
          batch: 1,
          seq: 8,
          path,
          loraScale: 2,
        });
        events.length = 0;
        await e.mergeStack(stackOf(LLAMA, 3, targets, 5));
        // 2 layers × 3 modules, each packed then uploaded before the next is packed.
        expect(events.join(' '), path).to.equal(Array.from({ length: 6 }, () => 'pack upload').join(' '));
        await e.dispose();
      }
    } finally {
      llamaLayoutModule.transposeInto = transposeInto;
      queue.writeBuffer = writeBuffer;
    }
  });
});
