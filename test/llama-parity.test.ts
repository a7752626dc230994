// Parity with PyTorch for the Llama family: tiny random Llama (llama3 rope, bf16 weights, untied head), Qwen2
// (q/k/v biases, linear rope, tied head, f32), Mistral (sliding window, dynamic rope, f16), Qwen3 (q/k norms,
// head_dim 32 against hidden 64 / 4 heads, tied head, bf16) and Gemma 3 (local / global / local layers with a window
// of 3 over 8 tokens, (1 + w) norms, scaled embeddings, query_pre_attn_scalar 24, head_dim 32 against hidden 48 /
// 4 heads, linear global rope, bf16), each with a PEFT LoRA adapter, all made by transformers + peft
// (test/fixtures/make_llama_parity.py). fedtune's logits must equal transformers' and peft's; its PEFT export must
// be the adapter PEFT loaded there with the same logits; for Qwen3 and Gemma 3 its LoRA gradients must equal
// torch's autograd.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir, readModelTensors, type CausalLm } from '../client-sdk/model/load';
import { LlamaModel } from '../client-sdk/model/llama';
import { ropeInvFreq } from '../client-sdk/model/rope';
import { loraStateFromAdapter } from '../client-sdk/model/lora';
import { loadPeftAdapterDir, savePeftAdapterDir, type PeftAdapter } from '../client-sdk/model/lora-io';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { packBatch } from '../client-sdk/sft/pack';
import { readSafetensors, writeSafetensors } from '../proto/safetensors';
import { initLoraAdapter } from '../proto/model/lora-layout';
import { loraLossAndGrad } from './lora-grad-kit';
import { parseModelConfig } from '../proto/model/model-config';
import type { LlamaConfig } from '../proto/model/llama-config';
import { baseModelHash } from '../proto/model/model-dir';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.resolve(__dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'llama');
// Measured on these fixtures (logits |x| up to ~10): 5e-6 to 1.4e-5, float32 rounding only (the test prints
// what it reaches). The issue asked for 1e-4.
const TOL = 2e-5;
// Gradients, relative to each tensor's largest entry: float32 against float32, summed in another order.
const GRAD_TOL = 1e-4;

interface Info {
  input_ids: number[][];
  inv_freq_after_forward: number[];
  /** Gemma 3's local layers' (the one above is its global layers'). */
  inv_freq_local_after_forward?: number[];
  fedtune_style_config: Record<string, unknown>;
  dtype: string;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).to.equal(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const reached: Record<string, number> = {};

// Fixture directory → model_type.
const FAMILIES = { llama: 'llama', qwen2: 'qwen2', mistral: 'mistral', qwen3: 'qwen3', gemma3: 'gemma3_text' } as const;

for (const family of Object.keys(FAMILIES) as Array<keyof typeof FAMILIES>) {
  describe(`${family} parity with transformers + peft`, function () {
    const dir = path.join(FIXTURES, family);
    let model: CausalLm;
    let peft: PeftAdapter;
    let info: Info;
    let ids: tf.Tensor2D;
    let base: Float32Array;
    let lora: Float32Array;

    before(async function () {
      await selectBackend();
      model = (await loadModelDir(path.join(dir, 'base'))).model;
      peft = await loadPeftAdapterDir(path.join(dir, 'lora'));
      info = JSON.parse(fs.readFileSync(path.join(dir, 'info.json'), 'utf8')) as Info;
      ids = tf.tensor2d(info.input_ids, undefined, 'int32');
      const logits = readSafetensors(fs.readFileSync(path.join(dir, 'logits.safetensors'))).tensors;
      base = logits.find((t) => t.name === 'base_logits')!.data;
      lora = logits.find((t) => t.name === 'lora_logits')!.data;
    });

    after(function () {
      model?.dispose();
      ids?.dispose();
    });

    it('reads the saved config.json (rope_parameters) and the classic one (rope_theta + rope_scaling) alike', function () {
      const saved = parseModelConfig(JSON.parse(fs.readFileSync(path.join(dir, 'base', 'config.json'), 'utf8')));
      // The classic dict is what the fixture script passed to the config class (model_type comes from the class).
      const classicJson = JSON.parse(fs.readFileSync(path.join(dir, 'base', 'config.classic.json'), 'utf8')) as object;
      const classic = parseModelConfig({ model_type: FAMILIES[family], ...classicJson });
      expect(saved).to.deep.equal(classic);
      expect(model).to.be.instanceOf(LlamaModel);
    });

    it('rotary inverse frequencies equal the ones transformers used', function () {
      const cfg = model.config as LlamaConfig;
      const ours = ropeInvFreq(cfg, info.input_ids[0].length);
      info.inv_freq_after_forward.forEach((v, i) => expect(Math.abs(ours[i] - v) / v, `inv_freq[${i}]`).to.be.at.most(1e-6));
      expect(info.inv_freq_local_after_forward !== undefined).to.equal(cfg.gemma3 !== undefined);
      if (cfg.gemma3) {
        const local = ropeInvFreq({ ...cfg, ropeTheta: cfg.gemma3.localRopeTheta, rope: { type: 'default' } }, info.input_ids[0].length);
        info.inv_freq_local_after_forward!.forEach((v, i) => expect(Math.abs(local[i] - v) / v, `local inv_freq[${i}]`).to.be.at.most(1e-6));
      }
    });

    it(`base logits match transformers (${TOL})`, async function () {
      const out = model.forward(ids);
      const diff = maxAbsDiff(await out.data(), base);
      out.dispose();
      reached[`${family} base`] = diff;
      expect(diff).to.be.at.most(TOL);
    });

    it('PEFT key names and shapes equal those fedtune initialises for the same config', function () {
      const ours = initLoraAdapter(model.config, peft.config, 1);
      expect(peft.adapter.map((t) => t.name)).to.deep.equal(ours.map((t) => t.name));
      expect(peft.adapter.map((t) => t.shape.join('x'))).to.deep.equal(ours.map((t) => t.shape.join('x')));
      expect(peft.adapter[0].name).to.match(/^base_model\.model\.model\.layers\.0\.(self_attn|mlp)\.[a-z]+_proj\.lora_A\.weight$/);
    });

    it(`base + PEFT adapter logits match peft (${TOL})`, async function () {
      const state = loraStateFromAdapter(peft.adapter, peft.config);
      const out = model.forward(ids, { lora: state.state });
      const values = await out.data();
      out.dispose();
      state.dispose();
      expect(maxAbsDiff(values, base), 'the adapter must change the logits').to.be.greaterThan(1e-1);
      const diff = maxAbsDiff(values, lora);
      reached[`${family} lora`] = diff;
      expect(diff).to.be.at.most(TOL);
    });

    it('log-probabilities on the training path (one-hot selection) and the eval path (gather) match log_softmax', async function () {
      const v = model.config.vocabSize;
      const reqs = info.input_ids.map((row) => ({ tokens: row, pairs: row.slice(1).map((target, pos) => ({ pos, target })) }));
      const packed = packBatch(reqs, info.input_ids[0].length);
      const expected: number[] = [];
      info.input_ids.forEach((row, b) =>
        row.slice(1).forEach((target, pos) => {
          const l = Array.from(lora.subarray((b * row.length + pos) * v, (b * row.length + pos + 1) * v));
          const mx = Math.max(...l);
          expected.push(l[target] - (mx + Math.log(l.reduce((s, x) => s + Math.exp(x - mx), 0))));
        }),
      );
      const state = loraStateFromAdapter(peft.adapter, peft.config);
      for (const differentiable of [false, true]) {
        const lp = pairLogProbs(model, packed, { lora: state.state }, differentiable);
        expect(maxAbsDiff(await lp.data(), expected), `differentiable=${differentiable}`).to.be.at.most(TOL);
        lp.dispose();
      }
      state.dispose();
    });

    it('the PEFT export round trip: fedtune writes the adapter PEFT loaded (same config, same tensors) and reads it back', async function () {
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fedtune-llama-export-'));
      try {
        await savePeftAdapterDir(tmp, peft.adapter, peft.config, 'base');
        // make_llama_parity.py loaded exactly this adapter_config.json with PEFT and got the same logits (diff 0).
        const written = JSON.parse(fs.readFileSync(path.join(tmp, 'adapter_config.json'), 'utf8')) as Record<string, unknown>;
        const wanted = { ...info.fedtune_style_config, target_modules: peft.config.targetModules };
        expect(written).to.deep.equal(wanted);
        const ours = readSafetensors(fs.readFileSync(path.join(tmp, 'adapter_model.safetensors'))).tensors;
        const theirs = readSafetensors(fs.readFileSync(path.join(dir, 'lora', 'adapter_model.safetensors'))).tensors;
        expect(ours.map((t) => t.name)).to.deep.equal(theirs.map((t) => t.name).sort());
        for (const t of ours) expect(Buffer.from(t.data.buffer).equals(Buffer.from(theirs.find((x) => x.name === t.name)!.data.buffer))).to.equal(true);
        const back = await loadPeftAdapterDir(tmp);
        const state = loraStateFromAdapter(back.adapter, back.config);
        const out = model.forward(ids, { lora: state.state });
        expect(maxAbsDiff(await out.data(), lora)).to.be.at.most(TOL);
        out.dispose();
        state.dispose();
      } finally {
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    });
  });
}

for (const family of ['qwen3', 'gemma3'] as const) {
  describe(`${family} LoRA gradients equal torch autograd`, function () {
    it(`d(causal-LM loss)/d(every A and B) matches grads.safetensors (${GRAD_TOL} of each tensor's largest), and the loss`, async function () {
      await selectBackend();
      const dir = path.join(FIXTURES, family);
      const model = (await loadModelDir(path.join(dir, 'base'))).model;
      const peft = await loadPeftAdapterDir(path.join(dir, 'lora'));
      const info = JSON.parse(fs.readFileSync(path.join(dir, 'info.json'), 'utf8')) as Info & { lora_loss: number };
      const torch = readSafetensors(fs.readFileSync(path.join(dir, 'grads.safetensors'))).tensors;
      // transformers' loss with labels = input_ids: the mean cross-entropy of every next token, i.e. these pairs.
      const packed = packBatch(
        info.input_ids.map((row) => ({ tokens: row, pairs: row.slice(1).map((target, pos) => ({ pos, target })) })),
        info.input_ids[0].length,
      );
      try {
        const { loss, grad: flat } = await loraLossAndGrad(model, peft.adapter, peft.config, packed);
        expect(Math.abs(loss - info.lora_loss), `loss ${loss} against torch's ${info.lora_loss}`).to.be.at.most(1e-5);
        expect(torch.map((t) => t.name).sort()).to.deep.equal(peft.adapter.map((t) => t.name).sort());
        let off = 0;
        let worst = 0;
        for (const t of peft.adapter) {
          const ours = flat.subarray(off, off + t.data.length);
          off += t.data.length;
          const ref = torch.find((x) => x.name === t.name)!.data;
          const scale = Math.max(...Array.from(ref, Math.abs));
          expect(scale, `${t.name}: a gradient to compare`).to.be.greaterThan(1e-6);
          const rel = maxAbsDiff(ours, ref) / scale;
          worst = Math.max(worst, rel);
          expect(rel, t.name).to.be.at.most(GRAD_TOL);
        }
        reached[`${family} lora grads (relative)`] = worst;
      } finally {
        model.dispose();
      }
    });
  });
}

describe('sharded model directories', function () {
  it('model.safetensors.index.json with two shards loads the same model; the identity covers every shard', async function () {
    await selectBackend();
    const src = path.join(FIXTURES, 'llama', 'base');
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fedtune-shards-'));
    try {
      const tensors = await readModelTensors(src);
      const half = Math.ceil(tensors.length / 2);
      const shards = [tensors.slice(0, half), tensors.slice(half)];
      const weightMap: Record<string, string> = {};
      shards.forEach((s, i) => {
        const f = `model-0000${i + 1}-of-00002.safetensors`;
        fs.writeFileSync(path.join(tmp, f), writeSafetensors(s, { format: 'pt' }));
        for (const t of s) weightMap[t.name] = f;
      });
      fs.writeFileSync(path.join(tmp, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
      fs.copyFileSync(path.join(src, 'config.json'), path.join(tmp, 'config.json'));
      const a = await loadModelDir(src);
      const b = await loadModelDir(tmp);
      const ids = tf.tensor2d([[1, 2, 3, 4]], undefined, 'int32');
      const la = a.model.forward(ids);
      const lb = b.model.forward(ids);
      expect(maxAbsDiff(await la.data(), await lb.data())).to.equal(0);
      [la, lb, ids].forEach((t) => t.dispose());
      a.model.dispose();
      b.model.dispose();
      const h1 = await baseModelHash(tmp);
      expect(h1).to.match(/^[0-9a-f]{64}$/);
      const f2 = path.join(tmp, 'model-00002-of-00002.safetensors');
      const bytes = fs.readFileSync(f2);
      bytes[bytes.length - 1] ^= 1;
      fs.writeFileSync(f2, bytes);
      expect(await baseModelHash(tmp)).to.not.equal(h1);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  after(function () {
    // The figures the README quotes: what this implementation reaches on the fixtures.
    if (Object.keys(reached).length > 0) console.log('      llama-family parity reached:', JSON.stringify(reached));
  });
});
