// LoRA gradients through the Llama block (RMSNorm, rotary embeddings as a matmul, grouped-query attention's
// reshapes, SwiGLU) checked against central finite differences of the loss, on the pure-JS cpu backend, in the
// steepest coordinate of A and B of every projection kind. Uses the parity fixture (tiny Llama with llama3 rope
// and GQA 4:2, PEFT adapter with non-zero B, so A gets a gradient too).
import * as path from 'path';
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir, type CausalLm } from '../client-sdk/model/load';
import { loadPeftAdapterDir, type PeftAdapter } from '../client-sdk/model/lora-io';
import { completionPairs, fitToWindow, packBatch } from '../client-sdk/sft/pack';
import { Prng } from '../proto/prng';
import { expectGradientsMatchCentralDifferences } from './lora-grad-kit';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const DIR = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', 'llama');

describe('Llama LoRA gradients against finite differences', function () {
  let original: string;
  let model: CausalLm;
  let peft: PeftAdapter;

  before(async function () {
    original = await selectBackend();
    await selectBackend({ force: 'cpu' });
    model = (await loadModelDir(path.join(DIR, 'base'))).model;
    peft = await loadPeftAdapterDir(path.join(DIR, 'lora'));
  });
  after(async function () {
    model?.dispose();
    await selectBackend({ force: original as 'wasm' });
  });

  function packed() {
    const rng = new Prng(9);
    const examples = Array.from({ length: 3 }, () => ({
      prompt: Array.from({ length: 6 }, () => rng.nextInt(256)),
      completion: Array.from({ length: 4 }, () => rng.nextInt(256)),
    }));
    return packBatch(
      examples.map((ex) => fitToWindow(ex, 16)).map((w) => ({ tokens: w.tokens, pairs: completionPairs(w) })),
      16,
    );
  }

  it('the steepest A and B coordinate of each of the 7 projections matches a central difference to 2%', async function () {
    const n = await expectGradientsMatchCentralDifferences(model, peft.adapter, peft.config, packed(), (name) => name.includes('layers.0.'));
    expect(n).to.equal(14);
  });
});
