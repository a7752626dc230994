// SCAFFOLD (coordinator/strategy/scaffold.ts, client-sdk/scaffold-site.ts, client-sdk/sft/scaffold-local.ts):
// the server's x and c steps against hand-computed values over two rounds (dyadic values, so every figure is
// exact); the aggregate, c included, bit-identical whatever order the updates arrive in; the site's c − c_i and
// Δc_i by hand over two rounds; and on the real tfjs trainer, that the correction enters each step's gradient
// (one SGD step moves by exactly −η·(c − c_i) more) and that c_i⁺ is the paper's option II under plain SGD.
import * as tf from '@tensorflow/tfjs-core';
import '../client-sdk/model/gradients';
import { selectBackend } from '../client-sdk/model/backend';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { LocalControl } from '../client-sdk/sft/scaffold-local';
import { beginScaffoldRound } from '../client-sdk/scaffold-site';
import type { SftExample } from '../client-sdk/sft/types';
import type { TrainingPlan } from '../client-sdk/trainer';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { FedAvg, aggregateUpdates } from '../coordinator/strategy/fedavg';
import { Scaffold, withControlDeltas } from '../coordinator/strategy/scaffold';
import type { ClientUpdate, ServerState } from '../coordinator/strategy/strategy';
import { buildProgram } from '../client-sdk/engine/program';
import { modelLayout } from '../client-sdk/engine/layout';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { CONTROL_DELTA_PREFIX } from '../proto/model/scaffold';
import { Prng } from '../proto/prng';
import { sortByName, type NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const W = 'w';
const t = (name: string, values: number[]): NamedTensor => ({ name, dtype: 'float32', shape: [values.length], data: Float32Array.from(values) });
const upd = (clientId: string, n: number, dy: number[], dc: number[]): ClientUpdate => ({
  clientId,
  numExamples: n,
  delta: sortByName([t(W, dy), t(CONTROL_DELTA_PREFIX + W, dc)]),
});
const values = (xs: readonly NamedTensor[]): number[][] => xs.map((x) => [...x.data]);
const bits = (xs: readonly NamedTensor[]): string =>
  xs.map((x) => `${x.name}:${Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength).toString('hex')}`).join('|');

describe('SCAFFOLD on the server (coordinator/strategy/scaffold.ts)', () => {
  it('one site, two rounds, by hand: x ← x + η_g·Δy, c ← c + Δc (c starts at 0 and is the server state c/<tensor>)', () => {
    const s = new Scaffold({ serverLearningRate: 0, population: 0 });
    expect(s.hyperParameters).to.deep.equal({ serverLearningRate: 1, population: 0 });
    const state: ServerState = { tensors: [] };
    const x1 = aggregateUpdates(s, [t(W, [1, 2])], [upd('a', 3, [0.5, -0.25], [0.25, 0.125])], state).adapter;
    expect(values(x1)).to.deep.equal([[1.5, 1.75]]);
    expect(state.tensors.map((x) => x.name)).to.deep.equal(['c/w']);
    expect(values(state.tensors)).to.deep.equal([[0.25, 0.125]]);
    const x2 = aggregateUpdates(s, x1, [upd('a', 3, [-0.5, 0.5], [0.5, -0.25])], state).adapter;
    expect(values(x2)).to.deep.equal([[1, 2.25]]);
    expect(values(state.tensors)).to.deep.equal([[0.75, -0.125]]);
  });

  it('two sites of four (population 4): x moves by η_g times the weighted mean Δy, c by |S|/N = 1/2 of the weighted mean Δc', () => {
    const s = new Scaffold({ serverLearningRate: 0.5, population: 4 });
    const state: ServerState = { tensors: [t('c/w', [1, -1])] };
    // Weights 1 and 3: mean Δy = [(1·1 + 3·0.5)/4, (1·-2 + 3·2)/4] = [0.625, 1]; mean Δc = [(1·2 + 3·-2)/4, (1·4 + 3·0)/4] = [-1, 1].
    const out = aggregateUpdates(s, [t(W, [0, 0])], [upd('a', 1, [1, -2], [2, 4]), upd('b', 3, [0.5, 2], [-2, 0])], state);
    expect(values(out.adapter)).to.deep.equal([[0.3125, 0.5]]);
    expect(values(state.tensors)).to.deep.equal([[0.5, -0.5]]);
    expect(out.weights).to.deep.equal({ a: 0.25, b: 0.75 });
    // More sites in a round than the configured population is a configuration error, said at aggregation.
    const small = new Scaffold({ serverLearningRate: 1, population: 1 });
    expect(() => aggregateUpdates(small, [t(W, [0, 0])], [upd('a', 1, [1, 1], [1, 1]), upd('b', 1, [1, 1], [1, 1])], { tensors: [] })).to.throw(
      'SCAFFOLD: 2 sites in the round exceed strategy.population 1',
    );
  });

  it('with η_g = 1 the adapter is FedAvg bit for bit; the aggregate and c are bit-identical in any arrival order', () => {
    const rng = new Prng(17);
    const global = sortByName([
      t(
        'p.lora_A.weight',
        Array.from({ length: 40 }, () => rng.nextFloat() - 0.5),
      ),
      t(
        'p.lora_B.weight',
        Array.from({ length: 24 }, () => 0),
      ),
    ]);
    const updates: ClientUpdate[] = ['s1', 's2', 's3', 's4', 's5'].map((id, k) => ({
      clientId: id,
      numExamples: 3 + 7 * k,
      delta: withControlDeltas(global).map((g) => ({ ...g, data: Float32Array.from(g.data, () => (rng.nextFloat() - 0.5) * 0.01) })),
    }));
    const s = new Scaffold({ serverLearningRate: 1, population: 0 });
    const c0 = global.map((g) => ({ ...g, name: `c/${g.name}`, data: Float32Array.from(g.data, () => rng.nextFloat() * 1e-3) }));
    const runs = [0, 1, 2, 3, 4].map((shift) => {
      const order = [...updates.slice(shift), ...updates.slice(0, shift)].reverse();
      const state: ServerState = { tensors: c0 };
      const adapter = aggregateUpdates(s, global, order, state).adapter;
      return { adapter: bits(adapter), c: bits(state.tensors) };
    });
    for (const r of runs.slice(1)) expect(r).to.deep.equal(runs[0]);
    // FedAvg over the same Δy (without the Δc tensors): the same adapter bytes.
    const plain = updates.map((u) => ({ ...u, delta: u.delta.filter((x) => !x.name.startsWith(CONTROL_DELTA_PREFIX)) }));
    expect(bits(aggregateUpdates(new FedAvg(), global, plain).adapter)).to.equal(runs[0].adapter);
  });

  it('refuses a NaN, infinite or out-of-range Δc, and a Δc of the wrong length, at admission (naming the tensor)', () => {
    const s = new Scaffold({ serverLearningRate: 1, population: 0 });
    for (const bad of [NaN, Infinity, -Infinity, 128, -1e6]) {
      const agg = s.begin([t(W, [0, 0])]);
      expect(() => agg.admit(upd('a', 1, [0, 0], [0, bad]))).to.throw(`a:${CONTROL_DELTA_PREFIX}w[1] = ${bad} is outside the fixed-point range`);
    }
    const agg = s.begin([t(W, [0, 0])]);
    expect(() => agg.admit({ clientId: 'a', numExamples: 1, delta: sortByName([t(W, [0, 0]), t(CONTROL_DELTA_PREFIX + W, [0, 0, 0])]) })).to.throw(
      /shape|values/,
    );
    expect(() => agg.admit({ clientId: 'a', numExamples: 1, delta: [t(W, [0, 0])] })).to.throw();
  });

  it('is refused at configuration load with secure aggregation and with differential privacy, each saying why', () => {
    const base = { run: { dir: '/tmp/fedtune-scaffold-config' }, strategy: { name: 'scaffold' } };
    expect(() => classicConfig({ overrides: { ...base, secagg: { enabled: true }, rounds: { minClients: 3, minUpdates: 3 } } })).to.throw(
      "strategy.name 'scaffold' cannot run with secagg.enabled: the sites' control-variate updates (Δc) are not carried in the masked vector",
    );
    expect(() => classicConfig({ overrides: { ...base, privacy: { enabled: true, clipNorm: 1, noiseMultiplier: 1 } } })).to.throw(
      "strategy.name 'scaffold' cannot run with privacy.enabled",
    );
    expect(classicConfig({ overrides: { ...base, strategy: { name: 'scaffold', population: 5 } } }).strategy.population).to.equal(5);
  });
});

describe('SCAFFOLD at the site (client-sdk/scaffold-site.ts, sft/scaffold-local.ts)', function () {
  this.timeout(60_000);
  before(async () => {
    await selectBackend();
  });

  it('one site, two rounds, by hand: the correction c − c_i, then c_i⁺ = the mean gradient and Δc_i = c_i⁺ − c_i', async () => {
    const trained = [t(W, [0, 0])];
    // Round 1: a new site (c_i = 0) and the server's c = [0.5, −0.25].
    const r1 = beginScaffoldRound(trained, [t(W, [0.5, -0.25])], null, () => undefined);
    expect(values(r1.correction)).to.deep.equal([[0.5, -0.25]]);
    // Two local steps with raw gradients [1, 2] and [0.5, −1]: recorded on the device, their mean is c_i⁺.
    const lc = new LocalControl(trained, r1.correction);
    tf.tidy(() => {
      expect(lc.corrected(tf.tensor1d([1, 2])).arraySync()).to.deep.equal([1.5, 1.75]);
      lc.record(tf.tensor1d([1, 2]));
      lc.record(tf.tensor1d([0.5, -1]));
    });
    const mean = await lc.meanGradient();
    lc.dispose();
    expect(mean.steps).to.equal(2);
    expect(values(mean.tensors)).to.deep.equal([[0.75, 0.5]]);
    const f1 = r1.finish({ adapter: trained, numExamples: 1, metrics: {}, meanGradient: mean });
    expect(values(f1.next)).to.deep.equal([[0.75, 0.5]]);
    expect(f1.controlDeltas.map((x) => x.name)).to.deep.equal([CONTROL_DELTA_PREFIX + W]);
    expect(values(f1.controlDeltas)).to.deep.equal([[0.75, 0.5]]);
    // Round 2: the server's c moved to [0.625, 0.25]; c_i is round 1's c_i⁺.
    const r2 = beginScaffoldRound(trained, [t(W, [0.625, 0.25])], f1.next, () => undefined);
    expect(values(r2.correction)).to.deep.equal([[-0.125, -0.25]]);
    const f2 = r2.finish({ adapter: trained, numExamples: 1, metrics: {}, meanGradient: { steps: 2, tensors: [t(W, [0.25, 1])] } });
    expect(values(f2.controlDeltas)).to.deep.equal([[-0.5, 0.5]]);
    // No step taken: c_i stays, Δc_i = 0. A trainer without the mean gradient cannot take part.
    expect(
      values(r2.finish({ adapter: trained, numExamples: 1, metrics: {}, meanGradient: { steps: 0, tensors: [t(W, [0, 0])] } }).controlDeltas),
    ).to.deep.equal([[0, 0]]);
    expect(() => r2.finish({ adapter: trained, numExamples: 1, metrics: {} })).to.throw('the trainer returned no mean gradient for a SCAFFOLD task');
    // A stored c_i of another layout is set aside (with a warning); a non-finite c from the coordinator is refused.
    const warned: string[] = [];
    expect(values(beginScaffoldRound(trained, [t(W, [1, 1])], [t(W, [1, 1, 1])], (m) => warned.push(m)).correction)).to.deep.equal([[1, 1]]);
    expect(warned).to.have.length(1);
    expect(() => beginScaffoldRound(trained, [t(W, [NaN, 1])], null, () => undefined)).to.throw("the coordinator's SCAFFOLD control variate w[0] is NaN");
    expect(() => beginScaffoldRound(trained, [t('v', [1, 1])], null, () => undefined)).to.throw('not matching');
  });

  const CFG = parseGpt2Config({ model_type: 'gpt2', vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 2, n_head: 4, layer_norm_epsilon: 1e-5 });
  const LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_fc'] };
  const data = (): SftExample[] => {
    const rng = new Prng(5);
    return Array.from({ length: 12 }, () => {
      const p = Array.from({ length: 6 }, () => 4 + rng.nextInt(CFG.vocabSize - 4));
      return { prompt: [...p, 1], completion: [p[5] % 2 === 0 ? 2 : 3] };
    });
  };
  const plan = (over: Partial<TrainingPlan>): TrainingPlan => ({
    round: 1,
    taskId: 't',
    localSteps: 1,
    batchSize: 4,
    learningRate: 0.25,
    weightDecay: 0,
    maxSeqLen: 16,
    seed: 3,
    optimizer: { name: 'sgd', momentum: 0 },
    ...over,
  });

  it('tfjs trainer, plain SGD: one step moves by −η·(c − c_i) more than without; after K steps c_i⁺ is option II, c_i − c + (x − y)/(K·η)', async () => {
    const model = Gpt2Model.fromTensors(CFG, randomGpt2Weights(CFG, 11, 0.3));
    try {
      const trainer = new LoraSftTrainer({ model, lora: LORA, train: data() });
      // B nonzero so that every tensor has a gradient.
      const global = sortByName(
        initLoraAdapter(CFG, LORA, 7).map((x) => (x.name.includes('lora_B') ? { ...x, data: x.data.map((_, i) => ((i % 7) - 3) * 1e-2) } : x)),
      );
      const rng = new Prng(8);
      const c = global.map((g) => ({ ...g, data: Float32Array.from(g.data, () => (rng.nextFloat() - 0.5) * 0.02) }));
      const ci = global.map((g) => ({ ...g, data: Float32Array.from(g.data, () => (rng.nextFloat() - 0.5) * 0.02) }));
      const round = beginScaffoldRound(global, c, ci, () => undefined);
      const eta = 0.25;
      const plain = await trainer.train(global, plan({}));
      const one = await trainer.train(global, plan({ scaffold: { correction: round.correction } }));
      for (let k = 0; k < global.length; k++) {
        for (let j = 0; j < global[k].data.length; j++) {
          const want = plain.adapter[k].data[j] - eta * round.correction[k].data[j];
          expect(Math.abs(one.adapter[k].data[j] - want), `${global[k].name}[${j}]`).to.be.at.most(2e-7 * (1 + Math.abs(want)));
        }
      }
      const K = 3;
      const out = await trainer.train(global, plan({ localSteps: K, scaffold: { correction: round.correction } }));
      expect(out.meanGradient!.steps).to.equal(K);
      const next = round.finish(out).next;
      let worst = 0;
      let scale = 0;
      for (let k = 0; k < global.length; k++) {
        for (let j = 0; j < global[k].data.length; j++) {
          const optionII = ci[k].data[j] - c[k].data[j] + (global[k].data[j] - out.adapter[k].data[j]) / (K * eta);
          worst = Math.max(worst, Math.abs(next[k].data[j] - optionII));
          scale = Math.max(scale, Math.abs(optionII));
        }
      }
      expect(scale).to.be.greaterThan(1e-3);
      // The only difference is float32 rounding of y (|x − y| divided by K·η amplifies it by 4/3 here).
      expect(worst).to.be.at.most(1e-5 * (1 + scale));
    } finally {
      model.dispose();
    }
  });

  it("the WebGPU engine: only its update kernel changes with SCAFFOLD (two lines before FedProx's, two buffers); without it nothing does", () => {
    // The numbers need a GPU: `npm run test:gpu` compares the engine's SCAFFOLD rounds with the tfjs trainer's.
    const adapter = initLoraAdapter(CFG, LORA, 7);
    const layout = modelLayout(CFG, adapter, 2 * 16);
    const adam = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    for (const optimizer of [undefined, { name: 'sgd' as const, momentum: 0.9 }]) {
      for (const path of ['f32', 'f16', 'tc'] as const) {
        const common = { config: CFG, layout, batch: 2, seq: 16, path, loraScale: 2, adam, optimizer, proximal: true };
        const plain = buildProgram(common);
        const sc = buildProgram({ ...common, scaffold: true });
        expect(sc.kernels.map((k) => k.label)).to.deep.equal(plain.kernels.map((k) => k.label));
        const label = optimizer ? 'sgd' : 'adamw';
        sc.kernels.forEach((k, i) => {
          if (k.label !== label) expect(k.code, `${path} ${k.label}`).to.equal(plain.kernels[i].code);
        });
        const [a, b] = [plain, sc].map((p) => p.kernels.find((k) => k.label === label)!);
        expect(b.bindings.map((x) => x.buffer)).to.deep.equal([...a.bindings.map((x) => x.buffer), 'control', 'gsum']);
        const added = b.code.split('\n').filter((l) => !a.code.split('\n').includes(l));
        expect(added.map((l) => l.trim()).filter((l) => !l.startsWith('@group'))).to.deep.equal(['gsum[i] = gsum[i] + g;', 'g = g + control[i];']);
        // The raw gradient is summed, then corrected, then FedProx's term is added (the tfjs trainer's order).
        expect(b.code.indexOf('gsum[i] = gsum[i] + g;')).to.be.lessThan(b.code.indexOf('g = g + control[i];'));
        expect(b.code.indexOf('g = g + control[i];')).to.be.lessThan(b.code.indexOf('anchor[i]'));
        expect(plain.buffers.has('control') || plain.buffers.has('gsum')).to.equal(false);
        for (const name of ['control', 'gsum']) expect(sc.buffers.get(name)).to.deep.equal({ elems: layout.adapterSize, type: 'f32' });
      }
    }
  });
});
