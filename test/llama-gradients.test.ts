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
import { loraLossAndGrad } from './lora-grad-kit';

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

  const lossAndGrad = (theta?: Float32Array): Promise<{ loss: number; grad: Float32Array }> =>
    loraLossAndGrad(model, peft.adapter, peft.config, packed(), theta);

  it('the steepest A and B coordinate of each of the 7 projections matches a central difference to 2%', async function () {
    const theta = new Float32Array(peft.adapter.reduce((a, t) => a + t.data.length, 0));
    const ranges: Array<{ name: string; start: number; end: number }> = [];
    let off = 0;
    for (const t of peft.adapter) {
      theta.set(t.data, off);
      ranges.push({ name: t.name, start: off, end: off + t.data.length });
      off += t.data.length;
    }
    const { grad } = await lossAndGrad(theta);
    const picks: Array<{ name: string; i: number }> = [];
    for (const mod of ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj']) {
      for (const which of ['lora_A', 'lora_B']) {
        const r = ranges.find((x) => x.name.includes(`layers.0.`) && x.name.includes(`.${mod}.${which}.`))!;
        let best = r.start;
        for (let i = r.start; i < r.end; i++) if (Math.abs(grad[i]) > Math.abs(grad[best])) best = i;
        picks.push({ name: r.name, i: best });
      }
    }
    const h = 1e-2;
    for (const { name, i } of picks) {
      const plus = theta.slice();
      plus[i] += h;
      const minus = theta.slice();
      minus[i] -= h;
      const fd = ((await lossAndGrad(plus)).loss - (await lossAndGrad(minus)).loss) / (2 * h);
      expect(Math.abs(grad[i]), `${name}: a gradient to compare`).to.be.greaterThan(1e-4);
      expect(Math.abs(fd - grad[i]), `${name}[${i}]: finite difference ${fd}, gradient ${grad[i]}`).to.be.at.most(0.02 * Math.abs(grad[i]));
    }
  });
});
