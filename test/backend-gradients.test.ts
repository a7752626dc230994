// The same loss gradient on wasm and on the pure-JS cpu backend, compared as values (not through an optimiser
// step, whose size lr·sign(g) would hide a wrong magnitude), plus a central finite difference on the cpu
// backend in the steepest coordinates as a check that does not trust either backend's gradient code.
import { selectBackend } from '../client-sdk/model/backend';
import { parseGpt2Config, type Gpt2Config } from '../proto/model/gpt2-config';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { canonicalAdapter, initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import { completionPairs, fitToWindow, packBatch } from '../client-sdk/sft/pack';
import { loraLossAndGrad } from './lora-grad-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CFG: Gpt2Config = parseGpt2Config({ model_type: 'gpt2', vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4, layer_norm_epsilon: 1e-5 });
const LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] };

function batch() {
  const rng = new Prng(5);
  const examples = Array.from({ length: 6 }, () => {
    const p = Array.from({ length: 7 }, () => 4 + rng.nextInt(CFG.vocabSize - 4));
    return { prompt: [...p, 1], completion: [2 + (p[6] % 2), 3] };
  });
  const windows = examples.map((ex) => fitToWindow(ex, 16));
  return packBatch(
    windows.map((w) => ({ tokens: w.tokens, pairs: completionPairs(w) })),
    16,
  );
}

/** Loss and its gradient with respect to the flat adapter, on the backend in use. */
async function lossAndGrad(adapterData: Float32Array | null): Promise<{ loss: number; grad: Float32Array }> {
  const model = Gpt2Model.fromTensors(CFG, randomGpt2Weights(CFG, 11, 0.3));
  const layout = canonicalAdapter(initLoraAdapter(CFG, LORA, 7)).map((t) => {
    // B ≠ 0, so that A gets a gradient too.
    const rng = new Prng(3);
    return t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.2) } : t;
  });
  try {
    return await loraLossAndGrad(model, layout, LORA, batch(), adapterData ?? undefined);
  } finally {
    model.dispose();
  }
}

async function flat(): Promise<Float32Array> {
  const layout = canonicalAdapter(initLoraAdapter(CFG, LORA, 7)).map((t) => {
    const rng = new Prng(3);
    return t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.2) } : t;
  });
  const out = new Float32Array(layout.reduce((a, t) => a + t.data.length, 0));
  let off = 0;
  for (const t of layout) {
    out.set(t.data, off);
    off += t.data.length;
  }
  return out;
}

describe('backends agree on gradients (values)', function () {
  let original: string;
  before(async function () {
    original = await selectBackend();
  });
  after(async function () {
    await selectBackend({ force: original as 'wasm' });
  });

  it('wasm and cpu give the same loss to 1e-5 and the same adapter gradient to 1e-4 of its largest entry', async function () {
    await selectBackend({ force: 'wasm' });
    const w = await lossAndGrad(null);
    await selectBackend({ force: 'cpu' });
    const c = await lossAndGrad(null);
    expect(Math.abs(w.loss - c.loss)).to.be.at.most(1e-5);
    let gmax = 0;
    let dmax = 0;
    for (let i = 0; i < w.grad.length; i++) {
      gmax = Math.max(gmax, Math.abs(c.grad[i]));
      dmax = Math.max(dmax, Math.abs(w.grad[i] - c.grad[i]));
    }
    expect(gmax, 'a gradient to compare').to.be.greaterThan(1e-3);
    expect(dmax / gmax).to.be.at.most(1e-4);
    // A backend whose gradient were off by a constant factor fails here: compare the norms too.
    const norm = (g: Float32Array): number => Math.sqrt(g.reduce((a, x) => a + x * x, 0));
    expect(Math.abs(norm(w.grad) / norm(c.grad) - 1)).to.be.at.most(1e-4);
  });

  it('the cpu gradient matches a central finite difference in its 4 steepest coordinates to 2%', async function () {
    await selectBackend({ force: 'cpu' });
    const theta = await flat();
    const { grad } = await lossAndGrad(theta);
    const order = Array.from(grad.keys())
      .sort((a, b) => Math.abs(grad[b]) - Math.abs(grad[a]))
      .slice(0, 4);
    const h = 1e-2;
    for (const i of order) {
      const plus = theta.slice();
      plus[i] += h;
      const minus = theta.slice();
      minus[i] -= h;
      const fd = ((await lossAndGrad(plus)).loss - (await lossAndGrad(minus)).loss) / (2 * h);
      expect(Math.abs(fd - grad[i]), `coordinate ${i}: finite difference ${fd}, gradient ${grad[i]}`).to.be.at.most(0.02 * Math.abs(grad[i]));
    }
  });
});
