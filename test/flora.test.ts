// FLoRA stacking (lora.aggregation 'flora'): each round's sites train fresh LoRAs of their own ranks on top of the
// version they were sent, and the coordinator stacks their factors (coordinator/flora-stack.ts), so the version's
// product is the base version's plus the weighted mean of the sites' products, with no cross terms. Checked on the
// aggregation against float64 references (the bound: each committed lora_B value is one float32 rounding of p_k·b,
// relative error ≤ 2^-24, so each product term is off by at most 2^-24 of its size, and the whole product by at most
// 2^-24·Σ|terms|); over real gRPC with real tfjs training on a tiny Llama (a rank-2 and a rank-4 site, two rounds,
// the export); the site's stacked path against weights truly merged; and the refusals.
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import * as tf from '@tensorflow/tfjs-core';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir, readModelTensors, type CausalLm } from '../client-sdk/model/load';
import { LlamaModel } from '../client-sdk/model/llama';
import { LoraSftTrainer, type SftData } from '../client-sdk/sft/lora-trainer';
import { TaskLoraTrainer } from '../client-sdk/sft/task-lora';
import { StackedPath } from '../client-sdk/sft/flora-site';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { completionPairs, fitToWindow, packBatch } from '../client-sdk/sft/pack';
import { ENGINE_FLORA_REFUSAL, EngineSftTrainer } from '../client-sdk/engine/trainer';
import type { EngineDevice } from '../client-sdk/engine/device';
import type { Gpt2Model } from '../client-sdk/model/gpt2';
import { ConfigError } from '../coordinator/config';
import { FloraStacking, MAX_ABS_FACTOR } from '../coordinator/flora-stack';
import { checkReportedRank } from '../coordinator/lora-aggregation';
import { floraInitSeed } from '../proto/model/lora-aggregation';
import type { ClientUpdate } from '../coordinator/strategy/strategy';
import { readSafetensors } from '../proto/safetensors';
import { compactComponents, loraModules, uniformRank as uniformRankOf, zeroAdapter } from '../proto/model/lora-stack';
import { readModelConfig } from '../proto/model/model-dir';
import type { LlamaConfig } from '../proto/model/llama-config';
import { Prng } from '../proto/prng';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { classicConfig } from './classic-defaults';
import { expectRefused, join, nextTask, rawClient, startCoordinator, tempDir, testIdentity, upload, uploadFrames, type Harness } from './harness';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const BASE = path.resolve(__dirname, '..', '..', 'test', 'fixtures', 'llama', 'llama', 'base');
const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const bits = (x: Float32Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

/** Per module s·B·A in float64 ([out, in]) and Σ|terms| (the error bound's scale), keyed by module path. */
function products(adapter: TensorList, scaling = 1): Map<string, { p: Float64Array; abs: Float64Array }> {
  const out = new Map<string, { p: Float64Array; abs: Float64Array }>();
  for (const { path: key, a, b } of loraModules(adapter)) {
    const [r, n] = a.shape;
    const m = b.shape[0];
    const p = new Float64Array(m * n);
    const abs = new Float64Array(m * n);
    for (let o = 0; o < m; o++)
      for (let i = 0; i < n; i++)
        for (let j = 0; j < r; j++) {
          const t = scaling * b.data[o * r + j] * a.data[j * n + i];
          p[o * n + i] += t;
          abs[o * n + i] += Math.abs(t);
        }
    out.set(key, { p, abs });
  }
  return out;
}

/** Σ_k w_k·(site k's product) in float64, with Σ|terms|. */
function weightedProducts(sites: { adapter: TensorList; w: number }[]): Map<string, { p: Float64Array; abs: Float64Array }> {
  const out = new Map<string, { p: Float64Array; abs: Float64Array }>();
  for (const s of sites) {
    for (const [k, { p, abs }] of products(s.adapter, s.w)) {
      const e = out.get(k) ?? { p: new Float64Array(p.length), abs: new Float64Array(p.length) };
      p.forEach((v, i) => {
        e.p[i] += v;
        e.abs[i] += Math.abs(abs[i]);
      });
      out.set(k, e);
    }
  }
  return out;
}

/**
 * got's product equals want's within 2^-24·(1 + roundings)·Σ|terms| (+ float64 slack), element by element: one
 * float32 rounding of every lora_B value (≤ 2^-24 of each term), and `roundings` more of a whole value (a dense
 * compaction each, ≤ 2^-24 of the value then, itself ≤ Σ|terms| of the terms summed so far).
 * Returns the worst error as a share of its bound.
 */
function expectProduct(got: TensorList, want: Map<string, { p: Float64Array; abs: Float64Array }>, what: string, roundings = 0): number {
  const g = products(got);
  expect([...g.keys()], what).to.deep.equal([...want.keys()]);
  let worst = 0;
  for (const [k, { p, abs }] of want) {
    const x = g.get(k)!.p;
    for (let i = 0; i < p.length; i++) {
      const bound = 2 ** -24 * (1 + roundings) * abs[i] * (1 + 1e-6) + 1e-300;
      const err = Math.abs(x[i] - p[i]);
      worst = Math.max(worst, err / bound);
      if (err > bound) expect.fail(`${what} ${k}[${i}]: ${x[i]} against ${p[i]}, off by ${err} > ${bound}`);
    }
  }
  return worst;
}

const A_IN = 16;
const B_OUT = 14;
const MOD = (i: number): string => `base_model.model.transformer.h.${i}.attn.c_attn`;

/** Two modules at rank r, lora_A [r, 16], lora_B [14, r]; random values from `rng` in the first `rank` components, zero beyond. */
function twoModules(r: number, rank: number, rng: Prng | null): NamedTensor[] {
  const out: NamedTensor[] = [];
  for (const m of [0, 1]) {
    const a = new Float32Array(r * A_IN);
    const b = new Float32Array(B_OUT * r);
    if (rng) {
      for (let j = 0; j < rank; j++) for (let i = 0; i < A_IN; i++) a[j * A_IN + i] = (2 * rng.nextFloat() - 1) * 0.4;
      for (let o = 0; o < B_OUT; o++) for (let j = 0; j < rank; j++) b[o * r + j] = (2 * rng.nextFloat() - 1) * 0.03;
    }
    out.push({ name: `${MOD(m)}.lora_A.weight`, dtype: 'float32', shape: [r, A_IN], data: a });
    out.push({ name: `${MOD(m)}.lora_B.weight`, dtype: 'float32', shape: [B_OUT, r], data: b });
  }
  return out.sort((x, y) => (x.name < y.name ? -1 : 1));
}

/** The bytes of an update as the tensor stream carries them (float32 little-endian, layout order). */
const bytesOf = (t: TensorList): Uint8Array => Buffer.concat(t.map((x) => Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength)));

describe('FLoRA stacking: the aggregation', function () {
  const version0 = twoModules(4, 4, new Prng(1)).map((t) => (t.name.includes('lora_B') ? { ...t, data: new Float32Array(t.data.length) } : t));
  const layout = zeroAdapter(version0, 4);
  const sites = [
    { id: 'c', n: 7, rank: 2, adapter: twoModules(4, 2, new Prng(11)) },
    { id: 'a', n: 3, rank: 4, adapter: twoModules(4, 4, new Prng(12)) },
    { id: 'b', n: 5, rank: 3, adapter: twoModules(4, 3, new Prng(13)) },
  ];
  const total = 15;

  /** The version FloraStacking commits after `global` with the sites added in `order` (one streamed in odd splits). */
  function stacked(global: TensorList, order: typeof sites): NamedTensor[] {
    const s = new FloraStacking();
    const agg = s.begin(layout);
    for (const [k, site] of order.entries()) {
      if (k === 0) {
        const f = agg.open(site.id, site.n);
        const b = bytesOf(site.adapter);
        for (let at = 0; at < b.length; at += 7) f.push(b.subarray(at, Math.min(b.length, at + 7)));
        f.finish();
        f.commit();
      } else {
        const u: ClientUpdate = { clientId: site.id, numExamples: site.n, delta: site.adapter };
        agg.admit(u);
        agg.add(u);
      }
      agg.declareRank(site.id, site.rank);
    }
    expect(agg.weights()).to.deep.equal({ a: 3 / total, b: 5 / total, c: 7 / total });
    return s.aggregate(global, agg.sum());
  }

  it('the stacked product equals Σ p_k B_k·A_k (float64 reference, one float32 rounding of each B value), the same bytes in any arrival order', function () {
    const v = stacked(version0, sites);
    const again = stacked(version0, [...sites].reverse());
    v.forEach((t, k) => expect(bits(again[k].data).equals(bits(t.data)), t.name).to.equal(true));
    // Rank R = Σ declared ranks, sites in client-id order (a, b, c), version 0's zero product contributing nothing.
    expect(v.map((t) => t.shape)).to.deep.equal([
      [9, A_IN],
      [B_OUT, 9],
      [9, A_IN],
      [B_OUT, 9],
    ]);
    const worst = expectProduct(v, weightedProducts(sites.map((s) => ({ adapter: s.adapter, w: s.n / total }))), 'stack');
    expect(worst).to.be.at.most(1);
    // lora_A's rows are the sites' own, bit for bit: a's 4 rows, b's 3, c's 2.
    const a0 = v[0].data;
    const rows = (t: NamedTensor, from: number, n: number): Buffer => bits(t.data.subarray(from * A_IN, (from + n) * A_IN));
    expect(bits(a0.subarray(0, 4 * A_IN)).equals(rows(sites[1].adapter[0], 0, 4))).to.equal(true);
    expect(bits(a0.subarray(4 * A_IN, 7 * A_IN)).equals(rows(sites[2].adapter[0], 0, 3))).to.equal(true);
    expect(bits(a0.subarray(7 * A_IN, 9 * A_IN)).equals(rows(sites[0].adapter[0], 0, 2))).to.equal(true);
  });

  it("for contrast, FedIT's separate means of A and B miss the weighted mean of the products by far more than the bound", function () {
    const mean = (k: number): Float32Array =>
      Float32Array.from(sites[0].adapter[k].data, (_, i) => sites.reduce((s, x) => s + (x.n / total) * x.adapter[k].data[i], 0));
    const fedit = sites[0].adapter.map((t, k) => ({ ...t, data: mean(k) }));
    const want = weightedProducts(sites.map((s) => ({ adapter: s.adapter, w: s.n / total })));
    expect(() => expectProduct(fedit, want, 'fedit')).to.throw(/off by/);
  });

  it("a base with a non-zero product keeps its components first: the next version's product is the base's plus the round's", function () {
    const base = twoModules(3, 3, new Prng(21));
    const v = stacked(base, sites);
    expect(v[0].shape).to.deep.equal([12, A_IN]);
    loraModules(v).forEach((m, k) => {
      const b = loraModules(base)[k];
      expect(bits(m.a.data.subarray(0, 3 * A_IN)).equals(bits(b.a.data))).to.equal(true);
    });
    const round = weightedProducts(sites.map((s) => ({ adapter: s.adapter, w: s.n / total })));
    for (const [k, e] of products(base)) {
      const r = round.get(k)!;
      e.p.forEach((x, i) => {
        r.p[i] += x;
        r.abs[i] += e.abs[i];
      });
    }
    expectProduct(v, round, 'base + round');
  });

  it('refuses a NaN, an infinite or an out-of-range factor (naming tensor and element), a second update, a declared rank that leaves components out', function () {
    const agg = new FloraStacking().begin(layout);
    const bad = (v: number): NamedTensor[] =>
      sites[1].adapter.map((t, k) => (k === 1 ? { ...t, data: Float32Array.from(t.data, (x, i) => (i === 3 ? v : x)) } : t));
    for (const v of [NaN, Infinity, -MAX_ABS_FACTOR]) {
      expect(() => agg.admit({ clientId: 'x', numExamples: 1, delta: bad(v) })).to.throw(`tensor ${MOD(0)}.lora_B.weight holds ${v} at element 3`);
    }
    const f = agg.open('y', 2);
    const b = bytesOf(bad(NaN));
    expect(() => f.push(b)).to.throw(`tensor ${MOD(0)}.lora_B.weight holds NaN at element 3; factors must be finite`);
    f.abandon();
    expect(() => agg.admit({ clientId: 'x', numExamples: 1, delta: zeroAdapter(layout, 3) })).to.throw(/\[3,16\] where the layout has .* \[4,16\]/);
    agg.admit({ clientId: 'x', numExamples: 1, delta: sites[1].adapter });
    agg.add({ clientId: 'x', numExamples: 1, delta: sites[1].adapter });
    expect(() => agg.open('x', 1)).to.throw('FLoRA: two updates from x');
    expect(() => agg.declareRank('x', 2)).to.throw('lora_rank 2: the uploaded factors have non-zero components beyond it');
    // Through the report's check: INVALID_ARGUMENT with the same words, and a rank above lora.r first.
    expect(() => checkReportedRank(2, layout, agg, 'x')).to.throw('lora_rank 2: the uploaded factors have non-zero components beyond it');
    expect(() => checkReportedRank(5, layout, agg, 'x')).to.throw("lora_rank 5 exceeds the adapter's rank 4");
    agg.declareRank('x', 4);
  });

  it('past the dense rank K = max min(d_in, d_out) a version is the cumulative delta in dense factored form (rank K, an identity factor), exact to one more float32 rounding; later versions stay at K', function () {
    const s = new FloraStacking();
    const round = (base: TensorList, id: string, seed: number): NamedTensor[] => {
      const agg = s.begin(layout);
      const delta = twoModules(4, 4, new Prng(seed));
      agg.admit({ clientId: id, numExamples: 1, delta });
      agg.add({ clientId: id, numExamples: 1, delta });
      return s.aggregate(base, agg.sum());
    };
    const base = twoModules(11, 11, new Prng(3));
    const v1 = round(base, 'a', 41); // rank 11 + 4 = 15 > K = min(16, 14) = 14
    expect(v1.map((t) => t.shape)).to.deep.equal([
      [14, A_IN],
      [B_OUT, 14],
      [14, A_IN],
      [B_OUT, 14],
    ]);
    // d_out < d_in here: B is the identity, A holds ΔW.
    for (const m of loraModules(v1)) expect(m.b.data.every((v, i) => v === (Math.floor(i / 14) === i % 14 ? 1 : 0))).to.equal(true);
    const want = weightedProducts([
      { adapter: base, w: 1 },
      { adapter: twoModules(4, 4, new Prng(41)), w: 1 },
    ]);
    expectProduct(v1, want, 'v1 compacted', 1);
    const v2 = round(v1, 'b', 42);
    expect(v2[0].shape).to.deep.equal([14, A_IN]);
    const more = weightedProducts([{ adapter: twoModules(4, 4, new Prng(42)), w: 1 }]);
    for (const [k, e] of want) {
      const r = more.get(k)!;
      r.p.forEach((x, i) => {
        e.p[i] += x;
        e.abs[i] += r.abs[i];
      });
    }
    expectProduct(v2, want, 'v2 compacted again', 2);
    // d_in ≤ d_out: A is the identity, B holds ΔW.
    const tall: NamedTensor[] = [
      { name: `${MOD(0)}.lora_A.weight`, dtype: 'float32', shape: [7, 5], data: Float32Array.from({ length: 35 }, (_, i) => Math.sin(i)) },
      { name: `${MOD(0)}.lora_B.weight`, dtype: 'float32', shape: [9, 7], data: Float32Array.from({ length: 63 }, (_, i) => Math.cos(i)) },
    ];
    const c = compactComponents(tall, 5);
    expect(c[0].shape).to.deep.equal([5, 5]);
    expect(c[0].data.every((v, i) => v === (Math.floor(i / 5) === i % 5 ? 1 : 0))).to.equal(true);
    expectProduct(c, products(tall), 'tall', 1);
    expect(() => compactComponents(tall, 4)).to.throw('compactComponents: rank 4 is below min(d_in, d_out) = 5 of h.0.attn.c_attn');
  });
});

function data(seed: number): SftData {
  const rng = new Prng(seed);
  const ex = () => ({ prompt: Array.from({ length: 6 }, () => rng.nextInt(256)), completion: Array.from({ length: 3 }, () => rng.nextInt(256)) });
  return { train: Array.from({ length: 6 + seed }, ex), eval: Array.from({ length: 2 }, ex) };
}

/** A coordinator running 'flora' on the tiny Llama (lora.r 4, alpha 8, q_proj and v_proj), `total` rounds. */
async function floraCoordinator(prefix: string, total: number, extra: Record<string, unknown> = {}): Promise<Harness> {
  const lora = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'], aggregation: 'flora' };
  const training = { localSteps: 2, batchSize: 2, maxSeqLen: 16, learningRate: 0.05 };
  return startCoordinator(
    await tempDir(prefix),
    { total, deadlineMs: 120_000 },
    { model: { dir: BASE, name: 'tiny-llama' }, lora, training, ...extra },
    { fromModelDir: true },
  );
}

/** A site whose trainer is `inner`, telling `onTrain` what each task sent it and what it trained. */
function recordingSite(h: Harness, name: string, inner: Trainer, onTrain: (g: TensorList, p: TrainingPlan, out: TrainOutcome) => void): FederationClient {
  const trainer: Trainer = {
    backend: 'test',
    train: async (g, p, s) => {
      const out = await inner.train(g, p, s);
      onTrain(g, p, out);
      return out;
    },
    evaluate: (a, o) => inner.evaluate!(a, o),
  };
  return new FederationClient({ address: h.address, name, identity: testIdentity(name), trainer });
}

describe('FLoRA over gRPC with real training (tiny Llama)', function () {
  this.timeout(180_000);
  let model: CausalLm;

  before(async function () {
    await selectBackend();
    model = (await loadModelDir(BASE)).model;
  });
  after(() => model?.dispose());

  it('two rounds, a rank-2 and a rank-4 site (TaskLoraTrainer and LoraSftTrainer): each version is the stack of every round, its product base + ΔW_1 (+ ΔW_2); export gives that PEFT adapter', async function () {
    const h = await floraCoordinator('flora', 2);
    const seen: { round: number; site: string; global: TensorList; plan: TrainingPlan; out: TrainOutcome; evaluated?: Record<string, number> }[] = [];
    // The rank-2 site runs the SDK's TaskLoraTrainer (rank from --lora.r); the rank-4 one a plain LoraSftTrainer with
    // the coordinator's settings, as the demo's sites (trainerForModel) do. Each records its own evaluation.
    const site = (name: string, r: number | undefined, seed: number): FederationClient => {
      const inner = r
        ? new TaskLoraTrainer({ model, data: data(seed), lora: { r, dropout: 0 }, backend: 'test' })
        : new LoraSftTrainer({ model, lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] }, ...data(seed) });
      const scoring: Trainer = {
        backend: 'test',
        train: (g, p, s) => inner.train(g, p, s),
        evaluate: async (a, o) => {
          const m = await inner.evaluate(a, o);
          const e = seen.find((x) => x.out.adapter === a);
          if (e) e.evaluated = m;
          return m;
        },
      };
      return recordingSite(h, name, scoring, (global, plan, out) => seen.push({ round: plan.round, site: name, global, plan, out }));
    };
    try {
      const clients = [site('rank-2', 2, 1), site('rank-4', undefined, 2)];
      const runs = clients.map((c) => c.run());
      await h.coordinator.done;
      await Promise.all(runs);
      const [v0, v1, v2] = await Promise.all([0, 1, 2].map((v) => h.coordinator.store.read(v)));
      const got = (round: number, name: string) => seen.find((x) => x.round === round && x.site === name)!;

      for (const e of seen) {
        expect(e.plan).to.include({ loraAggregation: 'flora', floraRank: 4, loraAlpha: 8 });
        // Every upload is at the round's rank 4; the rank-2 site's components beyond 2 are zero.
        expect(e.out.adapter.map((t) => (t.name.includes('lora_A') ? t.shape[0] : t.shape[1]))).to.deep.equal([4, 4, 4, 4, 4, 4, 4, 4]);
        expect(e.out.loraRank).to.equal(e.site === 'rank-2' ? 2 : 4);
        // Its own evaluation scored the model it trained (stack + its components): figures came back.
        expect(e.evaluated).to.have.property('eval_loss').that.is.a('number');
      }
      // Round 1 trains on version 0; round 2 on version 1, its stack, bit for bit (sites merge what they are sent).
      for (const [round, v] of [
        [1, v0],
        [2, v1],
      ] as const) {
        for (const name of ['rank-2', 'rank-4']) {
          const g = got(round, name).global;
          expect(g.length).to.equal(v.adapter.length);
          g.forEach((t, k) => expect(bits(t.data).equals(bits(v.adapter[k].data)), `round ${round} ${name} ${t.name}`).to.equal(true));
        }
      }
      expect(v0.adapterConfig).to.include({ r: 4, lora_alpha: 4 });
      expect(v1.adapterConfig).to.include({ r: 6, lora_alpha: 6, use_rslora: false });
      expect(v2.adapterConfig).to.include({ r: 12, lora_alpha: 12 });
      expect((v1.manifest.config.lora as { aggregation: string }).aggregation).to.equal('flora');
      // Each site's fresh lora_A seed, derived from its task seed, is in the manifest.
      expect(v1.manifest.seeds.floraInit).to.deep.equal(Object.fromEntries(v1.manifest.participants.map((p) => [p.clientId, floraInitSeed(p.seed)])));

      const roundDelta = (v: typeof v1, round: number) => {
        const ranks = Object.fromEntries(v.manifest.participants.map((p) => [p.clientName, p.loraRank]));
        expect(ranks).to.deep.equal({ 'rank-2': 2, 'rank-4': 4 });
        const ws = Object.fromEntries(v.manifest.participants.map((p) => [p.clientName, p.weight!]));
        expect(ws['rank-2'] + ws['rank-4']).to.be.closeTo(1, 1e-15);
        return weightedProducts(['rank-2', 'rank-4'].map((n) => ({ adapter: got(round, n).out.adapter, w: ws[n] })));
      };
      // v1: Σ p_k (s_k·B_k)·A_k of round 1, exactly as the bound allows. Training moved it (not a zero product), and
      // the two sites' fresh lora_A differ (seeded from their own task seeds).
      const d1 = roundDelta(v1, 1);
      expect(Math.max(...[...d1.values()].map((e) => Math.max(...e.p.map(Math.abs))))).to.be.greaterThan(1e-4);
      const a1 = (n: string) => got(1, n).out.adapter[0].data.subarray(0, 2 * 64);
      expect(bits(a1('rank-2')).equals(bits(a1('rank-4')))).to.equal(false);
      expectProduct(v1.adapter, d1, 'v1');
      // v2 carries v1's 6 components bit for bit, then round 2's: its product is ΔW_1 + ΔW_2.
      for (const [k, m] of loraModules(v2.adapter).entries()) {
        const m1 = loraModules(v1.adapter)[k];
        expect(bits(m.a.data.subarray(0, m1.a.data.length)).equals(bits(m1.a.data))).to.equal(true);
        const out = m.b.shape[0];
        for (let o = 0; o < out; o++) expect(bits(m.b.data.subarray(o * 12, o * 12 + 6)).equals(bits(m1.b.data.subarray(o * 6, o * 6 + 6)))).to.equal(true);
      }
      const d2 = roundDelta(v2, 2);
      const cumulative = new Map([...d1].map(([k, e]) => [k, { p: e.p.map((x, i) => x + d2.get(k)!.p[i]), abs: e.abs.map((x, i) => x + d2.get(k)!.abs[i]) }]));
      expectProduct(v2.adapter, cumulative, 'v2');

      // `checkpoints export` of v2: a PEFT adapter (adapter_config r = lora_alpha = 12) whose product is ΔW_1 + ΔW_2.
      const out = await tempDir('flora-export');
      await h.coordinator.stop(500);
      const r = await promisify(execFile)(process.execPath, [CLI, 'checkpoints', 'export', h.runDir, '2', out], { timeout: 30_000 });
      expect(r.stderr).to.equal('');
      const cfg = JSON.parse(await fs.readFile(path.join(out, 'adapter_config.json'), 'utf8')) as { r: number; lora_alpha: number; peft_type: string };
      expect(cfg).to.include({ peft_type: 'LORA', r: 12, lora_alpha: 12 });
      const exported = readSafetensors(await fs.readFile(path.join(out, 'adapter_model.safetensors'))).tensors;
      expectProduct(exported, cumulative, 'export');
      await fs.rm(out, { recursive: true, force: true });
    } finally {
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });

  it('a site that joins after version 2 trains on the version it is sent (every earlier round merged); federated evaluation scores each candidate as a stack', async function () {
    const h = await floraCoordinator('flora-late', 4, { evaluation: { enabled: true } });
    const seen: { round: number; site: string; global: TensorList; out: TrainOutcome }[] = [];
    const site = (name: string, r: number | undefined, seed: number): FederationClient =>
      recordingSite(h, name, new TaskLoraTrainer({ model, data: data(seed), lora: { ...(r ? { r } : {}), dropout: 0 }, backend: 'test' }), (global, p, out) =>
        seen.push({ round: p.round, site: name, global, out }),
      );
    try {
      const runs = [site('early-2', 2, 1), site('early-4', undefined, 2)].map((c) => c.run());
      h.coordinator.on('roundCommitted', (e: { version: number }) => {
        if (e.version === 2) runs.push(site('late', 3, 4).run());
      });
      await h.coordinator.done;
      await Promise.all(runs);
      const vs = await Promise.all([0, 1, 2, 3, 4].map((v) => h.coordinator.store.read(v)));
      const late = seen.filter((x) => x.site === 'late');
      expect(late.length).to.be.at.least(1);
      for (const e of late) {
        // It was sent the version its round started from and trained on it whole: rank 2+4 per earlier round.
        const base = vs[e.round - 1];
        expect(uniformRankOf(e.global)).to.equal(6 * (e.round - 1));
        e.global.forEach((t, k) => expect(bits(t.data).equals(bits(base.adapter[k].data)), t.name).to.equal(true));
        const next = vs[e.round];
        expect(next.manifest.participants.find((p) => p.clientName === 'late')?.loraRank).to.equal(3);
        // The next version: the base's components bit for bit, then the round's (the late site's 3 among them).
        const ws = Object.fromEntries(next.manifest.participants.map((p) => [p.clientName, p.weight!]));
        const round = weightedProducts(seen.filter((x) => x.round === e.round).map((x) => ({ adapter: x.out.adapter, w: ws[x.site] })));
        for (const [k, b] of products(base.adapter)) {
          const r = round.get(k)!;
          b.p.forEach((x, i) => {
            r.p[i] += x;
            r.abs[i] += b.abs[i];
          });
        }
        expectProduct(next.adapter, round, `v${e.round}`);
      }
      // Federated evaluation of v1: each site scored the stack at scaling 1 (EvaluateTask.lora_stack), as a trainer
      // given the stack's own config does; at the run's scaling (alpha 8 / r 6) the figure would differ.
      const v1 = vs[1];
      const at = (lora: { r: number; alpha: number }, seed: number) =>
        new LoraSftTrainer({ model, lora: { ...lora, dropout: 0, targetModules: ['q_proj', 'v_proj'] }, ...data(seed) }).evaluate(v1.adapter);
      const want = ((await at({ r: 6, alpha: 6 }, 1)).eval_loss + (await at({ r: 6, alpha: 6 }, 2)).eval_loss) / 2;
      expect(v1.manifest.evaluation?.sites).to.equal(2);
      expect(v1.manifest.evaluation?.loss).to.be.closeTo(want, Math.abs(want) * 1e-12);
      const wrong = ((await at({ r: 6, alpha: 8 }, 1)).eval_loss + (await at({ r: 6, alpha: 8 }, 2)).eval_loss) / 2;
      expect(Math.abs(wrong - want)).to.be.greaterThan(Math.abs(want) * 1e-6);
    } finally {
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });

  it('past the dense rank over gRPC: version 3 of two rank-16 sites holds ΔW_1 + ΔW_2 + ΔW_3 at rank K = 64 (one more rounding); `fedtune verify` passes', async function () {
    const h = await floraCoordinator('flora-dense', 3, { lora: { r: 16, alpha: 32, dropout: 0, targetModules: ['q_proj', 'v_proj'], aggregation: 'flora' } });
    const seen: { round: number; site: string; global: TensorList; out: TrainOutcome }[] = [];
    try {
      const runs = [1, 2].map((seed) =>
        recordingSite(h, `dense-${seed}`, new TaskLoraTrainer({ model, data: data(seed), lora: { dropout: 0 }, backend: 'test' }), (global, p, out) =>
          seen.push({ round: p.round, site: `dense-${seed}`, global, out }),
        ).run(),
      );
      await h.coordinator.done;
      await Promise.all(runs);
      const vs = await Promise.all([1, 2, 3].map((v) => h.coordinator.store.read(v)));
      // Ranks 32, 64 (= K: still a stack), then 96 > K: dense factored form at 64, in adapter_config too.
      expect(vs.map((v) => [uniformRankOf(v.adapter), v.adapterConfig.r, v.adapterConfig.lora_alpha])).to.deep.equal([
        [32, 32, 32],
        [64, 64, 64],
        [64, 64, 64],
      ]);
      // Round 3's sites were sent version 2, bit for bit.
      for (const e of seen.filter((x) => x.round === 3)) e.global.forEach((t, k) => expect(bits(t.data).equals(bits(vs[1].adapter[k].data))).to.equal(true));
      const want = new Map<string, { p: Float64Array; abs: Float64Array }>();
      for (const v of vs) {
        const ws = Object.fromEntries(v.manifest.participants.map((p) => [p.clientName, p.weight!]));
        const d = weightedProducts(seen.filter((x) => x.round === v.manifest.round).map((x) => ({ adapter: x.out.adapter, w: ws[x.site] })));
        for (const [k, e] of d) {
          const w = want.get(k) ?? { p: new Float64Array(e.p.length), abs: new Float64Array(e.p.length) };
          e.p.forEach((x, i) => {
            w.p[i] += x;
            w.abs[i] += e.abs[i];
          });
          want.set(k, w);
        }
      }
      expectProduct(vs[2].adapter, want, 'v3', 1);
      await h.coordinator.stop(500);
      const r = await promisify(execFile)(process.execPath, [CLI, 'verify', h.runDir], { timeout: 30_000 });
      expect(r.stdout).to.contain('OK: 4 versions');
    } finally {
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });

  it("the site's stacked path is the merged model: log-probs with the stack beside a zero fresh LoRA equal those of W0 + ΔW merged into the weights", async function () {
    const cfg = (await readModelConfig(BASE)) as LlamaConfig;
    const rng = new Prng(5);
    // A stack of rank 6 over q_proj and v_proj of both layers, product ΔW = B·A (scaling 1).
    const stack: NamedTensor[] = [];
    const shapes = new Map<string, [number, number]>();
    for (const t of await readModelTensors(BASE))
      if (/(q|v)_proj\.weight$/.test(t.name)) shapes.set(t.name.replace(/^model\./, '').replace(/\.weight$/, ''), [t.shape[0], t.shape[1]]);
    for (const [p, [out, inn]] of shapes) {
      stack.push({
        name: `base_model.model.model.${p}.lora_A.weight`,
        dtype: 'float32',
        shape: [6, inn],
        data: Float32Array.from({ length: 6 * inn }, () => (2 * rng.nextFloat() - 1) * 0.3),
      });
      stack.push({
        name: `base_model.model.model.${p}.lora_B.weight`,
        dtype: 'float32',
        shape: [out, 6],
        data: Float32Array.from({ length: out * 6 }, () => (2 * rng.nextFloat() - 1) * 0.3),
      });
    }
    const delta = products(stack);
    let touched = 0;
    // HF Linear weights are [out, in], as ΔW = B·A is.
    const merged = (await readModelTensors(BASE)).map((t) => {
      const d = delta.get(t.name.replace(/^model\./, '').replace(/\.weight$/, ''));
      if (!d) return t;
      touched++;
      return { ...t, data: Float32Array.from(t.data, (x, i) => x + d.p[i]) };
    });
    expect(touched).to.equal(4);
    const truly = LlamaModel.fromTensors(cfg, merged);
    const packed = packBatch(
      data(3)
        .train.slice(0, 4)
        .map((ex) => {
          const w = fitToWindow(ex, 16);
          return { tokens: w.tokens, pairs: completionPairs(w) };
        }),
      16,
    );
    const path2 = new StackedPath(stack);
    try {
      const fresh = new Map(
        [...shapes].map(([p, [out, inn]]) => [
          p,
          {
            a: tf.tensor2d(
              Float32Array.from({ length: 4 * inn }, () => (2 * rng.nextFloat() - 1) * 0.1),
              [4, inn],
            ),
            b: tf.zeros<tf.Rank.R2>([out, 4]),
          },
        ]),
      );
      const viaPath = await pairLogProbs(model, packed, { lora: path2.state(fresh, 2, 0) }, false).data();
      const viaMerge = await pairLogProbs(truly, packed, {}, false).data();
      const scale = Math.max(...viaMerge.map(Math.abs));
      // float32 forward passes summing in different orders (W0·x + B·(A·x) against (W0 + B·A)·x): agreement to a
      // few float32 ulps of the log-probs' scale, where ΔW itself moves them by orders of magnitude more.
      viaPath.forEach((x, i) => expect(Math.abs(x - viaMerge[i]), `pair ${i}`).to.be.at.most(scale * 2 ** -16));
      const plain = await pairLogProbs(model, packed, {}, false).data();
      expect(Math.max(...plain.map((x, i) => Math.abs(x - viaMerge[i])))).to.be.greaterThan(scale * 2 ** -8);
      for (const m of fresh.values()) tf.dispose([m.a, m.b]);
    } finally {
      path2.dispose();
      truly.dispose();
    }
  });
});

describe('FLoRA: refusals, and a restart', function () {
  const base = { log: { level: 'silent' }, rounds: { minClients: 5, minUpdates: 5 } };
  const load = (o: Record<string, unknown>): unknown =>
    classicConfig({ overrides: { ...base, ...o, lora: { aggregation: 'flora', dropout: 0, ...(o.lora as object) } } });

  it("config: 'flora' loads with FedAvg, no EMA and lora.dropout 0; refused under secagg, privacy, another strategy, the EMA or LoRA dropout, each with its reason", function () {
    expect((load({}) as { lora: { aggregation: string } }).lora.aggregation).to.equal('flora');
    expect(() => load({ secagg: { enabled: true } })).to.throw(
      ConfigError,
      "lora.aggregation 'flora' stacks each site's own factors, which secure aggregation hides",
    );
    expect(() => load({ privacy: { enabled: true } })).to.throw(
      ConfigError,
      "fedtune states no differential-privacy guarantee for that: it cannot run with privacy.enabled (use 'ffa')",
    );
    expect(() => load({ strategy: { name: 'fedadam' } })).to.throw(
      ConfigError,
      "it runs with strategy.name 'fedavg' and strategy.ema 0 only (got 'fedadam', ema 0)",
    );
    expect(() => load({ strategy: { ema: 0.9 } })).to.throw(ConfigError, "(got 'fedavg', ema 0.9)");
    expect(() => load({ lora: { dropout: 0.05 } })).to.throw(ConfigError, 'it needs lora.dropout 0 (got 0.05)');
  });

  it('over gRPC: an upload of the wrong shape, a NaN factor, a rank above lora.r and a rank that drops components are refused (INVALID_ARGUMENT), nothing persisted', async function () {
    const init = (): NamedTensor[] =>
      twoModules(4, 4, new Prng(1)).map((t) => (t.name.includes('lora_B') ? { ...t, data: new Float32Array(t.data.length) } : t));
    const h = await startCoordinator(
      await tempDir('flora-refuse'),
      { total: 1 },
      { lora: { r: 4, dropout: 0, aggregation: 'flora' } },
      { initialAdapter: init },
    );
    const c = rawClient(h.address);
    const a = await join(c, 'site-a');
    const b = await join(c, 'site-b');
    const ta = nextTask(c, a.session_token);
    const tb = nextTask(c, b.session_token);
    try {
      const [taskA] = await Promise.all([ta.task, tb.task]);
      expect(taskA.config!.lora_aggregation).to.equal('flora');
      expect(taskA.config!.flora_rank).to.equal(4);
      const send = (t: TensorList) => () => upload(c, uploadFrames({ who: a, task: taskA, numExamples: 3 }, t));
      // The round's upload layout is the fresh rank lora.r = 4, whatever the version's stacked rank.
      await expectRefused(
        h.runDir,
        send(twoModules(3, 3, new Prng(2))),
        grpc.status.INVALID_ARGUMENT,
        `tensor ${MOD(0)}.lora_A.weight has shape [3,16]; the global adapter has [4,16]`,
      );
      const nan = twoModules(4, 2, new Prng(2)).map((t, k) => (k === 3 ? { ...t, data: Float32Array.from(t.data, (x, i) => (i === 1 ? NaN : x)) } : t));
      await expectRefused(h.runDir, send(nan), grpc.status.INVALID_ARGUMENT, `tensor ${MOD(1)}.lora_B.weight holds NaN at element 1; factors must be finite`);
      // Nothing of either refusal was kept: the site's proper upload is then accepted.
      const ok = await upload(c, uploadFrames({ who: a, task: taskA, numExamples: 3 }, twoModules(4, 2, new Prng(2))));
      expect(ok.duplicate).to.equal(false);
      const report = (rank: number) => (): Promise<void> =>
        new Promise((res, rej) =>
          c.ReportMetrics(
            { session_token: a.session_token, task_id: taskA.task_id, round: taskA.round, num_examples: 3, backend: 'test', metrics: {}, lora_rank: rank },
            (e) => (e ? rej(e) : res()),
          ),
        );
      await expectRefused(h.runDir, report(5), grpc.status.INVALID_ARGUMENT, "lora_rank 5 exceeds the adapter's rank 4");
      await expectRefused(h.runDir, report(1), grpc.status.INVALID_ARGUMENT, 'lora_rank 1: the uploaded factors have non-zero components beyond it');
      await report(2)();
      expect((await h.coordinator.store.latest())!.manifest.version).to.equal(0);
    } finally {
      ta.stream.cancel();
      tb.stream.cancel();
      c.close();
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });

  it('a restarted coordinator stacks the update it spooled (all lora.r components: its report is not carried), exactly', async function () {
    const runDir = await tempDir('flora-restart');
    const init = (): NamedTensor[] =>
      twoModules(4, 4, new Prng(1)).map((t) => (t.name.includes('lora_B') ? { ...t, data: new Float32Array(t.data.length) } : t));
    const cfg = [runDir, { total: 1 }, { lora: { r: 4, dropout: 0, aggregation: 'flora' } }, { initialAdapter: init }] as const;
    const h1 = await startCoordinator(...cfg);
    const c1 = rawClient(h1.address);
    const a1 = await join(c1, 'site-a');
    const b1 = await join(c1, 'site-b');
    const t1 = nextTask(c1, a1.session_token);
    const t2 = nextTask(c1, b1.session_token);
    const fa = twoModules(4, 2, new Prng(31));
    await upload(c1, uploadFrames({ who: a1, task: await t1.task, numExamples: 3 }, fa));
    t1.stream.cancel();
    t2.stream.cancel();
    c1.close();
    await h1.coordinator.stop(500);
    const h2 = await startCoordinator(...cfg);
    const c = rawClient(h2.address);
    try {
      const a = await join(c, 'site-a');
      const b = await join(c, 'site-b');
      const ta = nextTask(c, a.session_token);
      const tb = nextTask(c, b.session_token);
      const taskB = await tb.task;
      const fb = twoModules(4, 2, new Prng(32));
      await upload(c, uploadFrames({ who: b, task: taskB, numExamples: 7 }, fb));
      await new Promise<void>((res, rej) =>
        c.ReportMetrics(
          { session_token: b.session_token, task_id: taskB.task_id, round: 1, num_examples: 7, backend: 'test', metrics: {}, lora_rank: 2 },
          (e) => (e ? rej(e) : res()),
        ),
      );
      await h2.coordinator.done;
      const v1 = await h2.coordinator.store.read(1);
      ta.stream.cancel();
      tb.stream.cancel();
      // site-a's carried update keeps all 4 components (2 of them zero), site-b its declared 2: rank 6, product exact.
      expect(v1.adapter[0].shape).to.deep.equal([6, A_IN]);
      expectProduct(
        v1.adapter,
        weightedProducts([
          { adapter: fa, w: 3 / 10 },
          { adapter: fb, w: 7 / 10 },
        ]),
        'v1 after a restart',
      );
    } finally {
      c.close();
      await h2.coordinator.stop(500);
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });

  it("the WebGPU engine refuses a 'flora' task, with the reason", async function () {
    const t = new EngineSftTrainer({
      model: {} as Gpt2Model,
      lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn'] },
      train: [{ prompt: [1], completion: [2] }],
      device: {} as EngineDevice,
      path: 'f32',
    });
    const plan: TrainingPlan = {
      round: 1,
      taskId: 't',
      localSteps: 1,
      batchSize: 1,
      learningRate: 0.1,
      weightDecay: 0,
      maxSeqLen: 8,
      seed: 1,
      loraAggregation: 'flora',
      floraRank: 4,
    };
    const err = await t.train([], plan).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).to.equal(ENGINE_FLORA_REFUSAL);
  });
});
