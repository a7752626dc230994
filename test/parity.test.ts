// Parity with PyTorch: a tiny random GPT-2 and a PEFT LoRA adapter, both made by transformers + peft
// (test/fixtures/make_parity.py), must give the same logits here to 5e-7. This pins down parameter names and
// layouts (Conv1D [in, out], fused c_attn, tied head), numerics (LayerNorm, gelu_new, attention scaling) and
// PEFT's adapter semantics (A [r, in], B [out, r], scaling alpha / r, key names).
import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../client-sdk/model/backend';
import type { Gpt2Model } from '../client-sdk/model/gpt2';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { initLoraAdapter, loraScaling } from '../proto/model/lora-layout';
import { loraStateFromAdapter } from '../client-sdk/model/lora';
import { loadPeftAdapterDir, type PeftAdapter } from '../client-sdk/model/lora-io';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { packBatch } from '../client-sdk/sft/pack';
import { geluNew } from '../client-sdk/model/layers';

// chai 6 is ESM-only: Node 20.19+ can require() it, but TypeScript's CommonJS output cannot `import` it.
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ROOT = path.resolve(__dirname, '..', '..');
const FIXTURES = path.join(ROOT, 'test', 'fixtures', 'parity');
// What the implementation reaches on these fixtures (logits |x| ≤ 0.4, log-probs ≈ −6): 3–5e-7, measured;
// float32 rounding of a few hundred accumulations. A wrong GELU constant moves the logits by ~1e-5.
const TOL = 5e-7;

interface ParityLogits {
  input_ids: number[][];
  base_logits: number[][][];
  lora_logits: number[][][];
}

function requireFixtures(): void {
  const needed = ['tiny-gpt2/config.json', 'tiny-gpt2/model.safetensors', 'lora/adapter_config.json', 'lora/adapter_model.safetensors', 'logits.json'];
  const missing = needed.filter((f) => !fs.existsSync(path.join(FIXTURES, f)));
  if (missing.length > 0) {
    throw new Error(
      `parity fixtures missing in ${FIXTURES}: ${missing.join(', ')}. ` +
        'Generate them with transformers + peft: python3 test/fixtures/make_parity.py test/fixtures/parity',
    );
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).to.equal(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('parity with PyTorch (transformers + peft fixtures)', function () {
  let model: Gpt2Model | undefined;
  let peft: PeftAdapter;
  let ref: ParityLogits;
  let ids: tf.Tensor2D;

  before(async function () {
    await selectBackend();
    requireFixtures();
    model = (await loadGpt2Dir(path.join(FIXTURES, 'tiny-gpt2'))).model;
    peft = await loadPeftAdapterDir(path.join(FIXTURES, 'lora'));
    ref = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'logits.json'), 'utf8')) as ParityLogits;
    ids = tf.tensor2d(ref.input_ids, undefined, 'int32');
  });

  after(function () {
    model?.dispose();
    ids?.dispose();
  });

  it('base model logits match transformers to 5e-7', async function () {
    const m = model as Gpt2Model;
    const logits = m.forward(ids);
    const diff = maxAbsDiff(await logits.data(), ref.base_logits.flat(2));
    logits.dispose();
    expect(diff).to.be.at.most(TOL);
  });

  it('adapter_config.json is read as PEFT means it (scaling alpha / r)', function () {
    expect(peft.config.r).to.equal(4);
    expect(loraScaling(peft.config)).to.equal(8 / 4);
  });

  it('PEFT key names and shapes equal those fedtune initialises for the same config', function () {
    const m = model as Gpt2Model;
    const ours = initLoraAdapter(m.config, peft.config, 1);
    expect(peft.adapter.map((t) => t.name)).to.deep.equal(ours.map((t) => t.name));
    expect(peft.adapter.map((t) => t.shape.join('x'))).to.deep.equal(ours.map((t) => t.shape.join('x')));
  });

  it('base + PEFT adapter logits match peft to 5e-7', async function () {
    const m = model as Gpt2Model;
    const lora = loraStateFromAdapter(peft.adapter, peft.config);
    const logits = m.forward(ids, { lora: lora.state });
    const values = await logits.data();
    const diff = maxAbsDiff(values, ref.lora_logits.flat(2));
    const change = maxAbsDiff(values, ref.base_logits.flat(2));
    logits.dispose();
    lora.dispose();
    expect(change, 'the adapter must change the logits').to.be.greaterThan(1e-2);
    expect(diff).to.be.at.most(TOL);
  });

  it('next-token log-probabilities (gather and one-hot selection paths) match log_softmax of the reference', async function () {
    const m = model as Gpt2Model;
    const reqs = ref.input_ids.map((row) => ({ tokens: row, pairs: row.slice(1).map((target, pos) => ({ pos, target })) }));
    const packed = packBatch(reqs, row0Len(ref));
    const lora = loraStateFromAdapter(peft.adapter, peft.config);
    const expected: number[] = [];
    ref.input_ids.forEach((row, b) =>
      row.slice(1).forEach((target, pos) => {
        const l = ref.lora_logits[b][pos];
        const mx = Math.max(...l);
        const lse = mx + Math.log(l.reduce((s, v) => s + Math.exp(v - mx), 0));
        expected.push(l[target] - lse);
      }),
    );
    for (const differentiable of [false, true]) {
      const lp = pairLogProbs(m, packed, { lora: lora.state }, differentiable);
      expect(maxAbsDiff(await lp.data(), expected), `differentiable=${differentiable}`).to.be.at.most(TOL);
      lp.dispose();
    }
    lora.dispose();
  });
});

function row0Len(ref: ParityLogits): number {
  return ref.input_ids[0].length;
}

/** erf by its Maclaurin series (float64; converges to ~1e-15 for |x| ≤ 4): independent of the code under test. */
function erf(x: number): number {
  let term = x;
  let sum = x;
  for (let n = 1; n < 200; n++) {
    term *= (-x * x) / n;
    sum += term / (2 * n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

describe('gelu_new, pinned against its formula', () => {
  it('matches 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))) in float64 to 1e-6, and is not erf-GELU', async function () {
    const xs = Array.from({ length: 161 }, (_, i) => -4 + i * 0.05);
    const y = tf.tidy(() => geluNew(tf.tensor2d(xs, [1, xs.length])));
    const got = await y.data();
    y.dispose();
    const tanhGelu = xs.map((x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))));
    const erfGelu = xs.map((x) => 0.5 * x * (1 + erf(x / Math.SQRT2)));
    expect(maxAbsDiff(got, tanhGelu)).to.be.at.most(1e-6);
    // The two GELUs differ by up to ~5e-4 here: the check above tells them apart.
    expect(maxAbsDiff(got, erfGelu)).to.be.greaterThan(1e-4);
    expect(erf(1)).to.be.closeTo(0.8427007929497149, 1e-14);
  });
});
