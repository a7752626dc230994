// Qwen3 on tfjs, on a tiny model built here (test/tiny-qwen3.ts; parity with transformers is in
// test/llama-parity.test.ts): the per-head q/k RMSNorm is really applied (the logits do not move when q_proj and
// k_proj are rescaled, which they do without the norms); its weights load from sharded BF16 and F16 safetensors
// exactly as from F32, and a missing one is named; LoRA gradients through it match finite differences; the WebGPU
// engine serves Qwen3 (its q/k norms against tfjs: test/gpu-engine-llama.ts), so FEDTUNE_ENGINE=auto trains it there
// wherever a GPU adapter exists. A real round
// on a Qwen3 directory through the site CLI is in test/own-data-site.test.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../client-sdk/model/backend';
import { LlamaModel } from '../client-sdk/model/llama';
import { loadModelDir } from '../client-sdk/model/load';
import { randomLlamaWeights } from '../client-sdk/model/llama-init';
import { engineModelRefusal } from '../client-sdk/engine/trainer';
import { toHalfBits } from '../client-sdk/engine/half';
import { completionPairs, fitToWindow, packBatch } from '../client-sdk/sft/pack';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { parseLlamaConfig } from '../proto/model/llama-config';
import { writeSafetensors } from '../proto/safetensors';
import { Prng } from '../proto/prng';
import type { NamedTensor } from '../proto/tensors';
import { tempDir } from './harness';
import { expectEngineServes } from './engine-serves';
import { expectGradientsMatchCentralDifferences, withRandomB } from './lora-grad-kit';
import { makeTinyQwen3Dir, tinyLlamaTwinConfig, tinyQwen3Config, tinyQwen3Weights, TINY_QWEN3_JSON } from './tiny-qwen3';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ALL7: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'] };

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).to.equal(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function logits(model: LlamaModel, ids: number[][]): Promise<Float32Array> {
  const x = tf.tensor2d(ids, undefined, 'int32');
  const out = model.forward(x);
  const v = (await out.data()) as Float32Array;
  x.dispose();
  out.dispose();
  return v;
}

/** safetensors with every tensor in one 16-bit float dtype (the values must be exact in it to compare bitwise). */
function write16(tensors: NamedTensor[], dtype: 'F16' | 'BF16'): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  const parts: Buffer[] = [];
  let off = 0;
  for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const bits = dtype === 'F16' ? toHalfBits(t.data) : new Uint16Array(Array.from(new Uint32Array(t.data.slice().buffer), (u) => u >>> 16));
    parts.push(Buffer.from(bits.buffer, bits.byteOffset, bits.byteLength));
    header[t.name] = { dtype, shape: t.shape, data_offsets: [off, off + bits.byteLength] };
    off += bits.byteLength;
  }
  const json = Buffer.from(JSON.stringify(header).padEnd(Math.ceil(JSON.stringify(header).length / 8) * 8, ' '));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...parts]);
}

/** x rounded to the nearest bfloat16 (ties to even), as a float32. */
function toBf16(x: number): number {
  const u = new Uint32Array(new Float32Array([x]).buffer)[0];
  const r = (u + 0x7fff + ((u >>> 16) & 1)) & 0xffff0000;
  return new Float32Array(new Uint32Array([r >>> 0]).buffer)[0];
}

const IDS = [
  [5, 77, 301, 12, 9, 250, 3, 44],
  [399, 0, 18, 18, 120, 7, 66, 2],
];

describe('Qwen3 on tfjs: q/k RMSNorm, loading, gradients; served by the engine', function () {
  this.timeout(120_000);
  let original: string;
  before(async function () {
    original = await selectBackend();
  });

  it('the q/k norms are applied: rescaling q_proj and k_proj leaves the logits, which move without the norms', async function () {
    const cfg = tinyQwen3Config();
    const weights = tinyQwen3Weights(cfg, 5, 0.2);
    const scaled = weights.map((t) =>
      /self_attn\.[qk]_proj\.weight$/.test(t.name) ? { ...t, data: t.data.map((x) => x * (t.name.includes('q_proj') ? 3 : 0.3)) } : t,
    );
    // The same weights without the norms.
    const twinCfg = tinyLlamaTwinConfig();
    const noNorm = (ws: NamedTensor[]): NamedTensor[] => ws.filter((t) => !/_norm\.weight$/.test(t.name) || !t.name.includes('self_attn'));
    const [q, qs, l, ls] = [
      LlamaModel.fromTensors(cfg, weights),
      LlamaModel.fromTensors(cfg, scaled),
      LlamaModel.fromTensors(twinCfg, noNorm(weights)),
      LlamaModel.fromTensors(twinCfg, noNorm(scaled)),
    ];
    try {
      const [a, b, c, d] = [await logits(q, IDS), await logits(qs, IDS), await logits(l, IDS), await logits(ls, IDS)];
      // Up to eps's share in the norm and float32 rounding (logits reach ~±4 here; measured 2.4e-5).
      expect(maxAbsDiff(a, b), 'RMSNorm is scale-free').to.be.at.most(1e-4);
      expect(maxAbsDiff(c, d), 'without the norms the scale matters').to.be.greaterThan(1e-1);
      expect(maxAbsDiff(a, c), 'the norms change the model').to.be.greaterThan(1e-1);
      // And their weights are read: a model whose k_norm is all ones computes something else.
      const ones = LlamaModel.fromTensors(
        cfg,
        weights.map((t) => (t.name.endsWith('k_norm.weight') ? { ...t, data: new Float32Array(t.data.length).fill(1) } : t)),
      );
      expect(maxAbsDiff(a, await logits(ones, IDS))).to.be.greaterThan(1e-2);
      ones.dispose();
      // namedWeights gives back exactly what was loaded, the norms included.
      const back = await q.namedWeights();
      expect(back.map((t) => t.name)).to.deep.equal(weights.map((t) => t.name));
      for (const t of back) expect(Buffer.from(t.data.buffer).equals(Buffer.from(weights.find((w) => w.name === t.name)!.data.buffer)), t.name).to.equal(true);
    } finally {
      [q, qs, l, ls].forEach((m) => m.dispose());
    }
  });

  it('loads q_norm/k_norm from sharded BF16 and F16 safetensors exactly as from F32; a missing norm is named', async function () {
    const tmp = await tempDir('qwen3-load');
    try {
      const cfg = makeTinyQwen3Dir(path.join(tmp, 'f32'));
      const json = fs.readFileSync(path.join(tmp, 'f32', 'config.json'));
      // Values exact in both 16-bit formats: rounded to bf16's 8 significant bits, and none below f16's normal range.
      const weights = tinyQwen3Weights(cfg, 3).map((t) => ({ ...t, data: t.data.map((x) => (Math.abs(x) < 2 ** -14 ? 0 : toBf16(x))) }));
      fs.writeFileSync(path.join(tmp, 'f32', 'model.safetensors'), writeSafetensors(weights, { format: 'pt' }));
      const reference = await logits((await loadModelDir(path.join(tmp, 'f32'))).model as LlamaModel, IDS);
      for (const dtype of ['BF16', 'F16'] as const) {
        const dir = path.join(tmp, dtype);
        fs.mkdirSync(dir);
        fs.writeFileSync(path.join(dir, 'config.json'), json);
        // The norms in the second shard, their projections in the first.
        const shards = [weights.filter((t) => !t.name.includes('_norm')), weights.filter((t) => t.name.includes('_norm'))];
        const weightMap: Record<string, string> = {};
        shards.forEach((s, i) => {
          const f = `model-0000${i + 1}-of-00002.safetensors`;
          fs.writeFileSync(path.join(dir, f), write16(s, dtype));
          for (const t of s) weightMap[t.name] = f;
        });
        fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
        const loaded = await loadModelDir(dir);
        expect(maxAbsDiff(await logits(loaded.model as LlamaModel, IDS), reference), dtype).to.equal(0);
        loaded.model.dispose();
      }
      const missing = weights.filter((t) => t.name !== 'model.layers.1.self_attn.k_norm.weight');
      expect(() => LlamaModel.fromTensors(cfg, missing)).to.throw(/missing qwen3 tensors: layers\.1\.self_attn\.k_norm\.weight/);
      const wrong = weights.map((t) => (t.name === 'model.layers.0.self_attn.q_norm.weight' ? { ...t, shape: [8], data: t.data.slice(0, 8) } : t));
      expect(() => LlamaModel.fromTensors(cfg, wrong)).to.throw(/'model\.layers\.0\.self_attn\.q_norm\.weight' has shape \[8\], config implies \[16\]/);
      // A Qwen2-typed config does not expect them: they are unexpected there, not silently dropped.
      const q2 = parseLlamaConfig({ ...TINY_QWEN3_JSON, model_type: 'qwen2', attention_bias: undefined });
      expect(() => LlamaModel.fromTensors({ ...q2, qkvBias: false }, weights)).to.throw(
        /unexpected tensor 'model\.layers\.0\.self_attn\.k_norm\.weight' for a qwen2 model/,
      );
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  it('LoRA gradients through the q/k norms: the steepest A and B coordinate of each projection matches a central difference to 2%', async function () {
    await selectBackend({ force: 'cpu' });
    const cfg = tinyQwen3Config();
    const model = LlamaModel.fromTensors(cfg, tinyQwen3Weights(cfg, 11, 0.2));
    const adapter = withRandomB(initLoraAdapter(cfg, ALL7, 1));
    const rng = new Prng(9);
    const batch = packBatch(
      Array.from({ length: 3 }, () => ({
        prompt: Array.from({ length: 6 }, () => rng.nextInt(400)),
        completion: Array.from({ length: 4 }, () => rng.nextInt(400)),
      }))
        .map((ex) => fitToWindow(ex, 16))
        .map((w) => ({ tokens: w.tokens, pairs: completionPairs(w) })),
      16,
    );
    try {
      expect(await expectGradientsMatchCentralDifferences(model, adapter, ALL7, batch, (n) => n.includes('layers.0.'))).to.equal(14);
    } finally {
      model.dispose();
      await selectBackend({ force: original as 'wasm' });
    }
  });

  it('the WebGPU engine serves Qwen3: FEDTUNE_ENGINE=auto picks it where a GPU adapter exists, and otherwise falls back for want of a GPU, not for the model', async function () {
    const cfg = tinyQwen3Config();
    const model = LlamaModel.fromTensors(cfg, tinyQwen3Weights(cfg, 1));
    const llama = LlamaModel.fromTensors(tinyLlamaTwinConfig(), randomLlamaWeights(tinyLlamaTwinConfig(), 1));
    try {
      expect(engineModelRefusal(llama), 'the same shapes without the norms').to.equal(undefined);
      await expectEngineServes(model, ALL7);
    } finally {
      model.dispose();
      llama.dispose();
    }
  });
});
