// FLoRA stacking (lora.aggregation 'flora') on the coordinator's aggregation (coordinator/flora-stack.ts): the round's
// stacked product against float64 references (the bound: each committed lora_B value is one float32 rounding of
// p_k·b, relative error ≤ 2^-24, so the product is off by at most 2^-24·Σ|terms|; a dense compaction adds one more
// rounding of the value), independent of arrival order; the refusals of hostile factors; the configuration's
// refusals; and the WebGPU engine's. Over gRPC with real training: test/flora.test.ts.
import type { TrainingPlan } from '../client-sdk/trainer';
import { floraFreshLora } from '../client-sdk/sft/flora-site';
import { LoraMismatchError, TaskLoraTrainer } from '../client-sdk/sft/task-lora';
import type { CausalLm } from '../client-sdk/model/load';
import { ConfigError } from '../coordinator/config';
import { FloraStacking, MAX_ABS_FACTOR } from '../coordinator/flora-stack';
import { checkReportedRank } from '../coordinator/lora-aggregation';
import type { ClientUpdate } from '../coordinator/strategy/strategy';
import { compactComponents, concatComponents, loraModules, zeroAdapter } from '../proto/model/lora-stack';
import { Prng } from '../proto/prng';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { classicConfig } from './classic-defaults';
import { A_IN, B_OUT, MOD, bits, bytesOf, expectProduct, products, twoModules, weightedProducts } from './flora-kit';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** A one-step 'flora' task plan at flora_rank 4, for the refusal tests. */
const FLORA_PLAN: TrainingPlan = {
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
    // Compacted again with more components (the identity factor's sparse path): the product adds up.
    const extra = twoModules(2, 2, new Prng(43)).filter((t) => t.name.startsWith(MOD(0)));
    const moreTall: NamedTensor[] = [
      { ...extra[0], shape: [2, 5], data: extra[0].data.slice(0, 10) },
      { ...extra[1], shape: [9, 2], data: extra[1].data.slice(0, 18) },
    ];
    const again = compactComponents(concatComponents(c, moreTall), 5);
    const sum = weightedProducts([
      { adapter: tall, w: 1 },
      { adapter: moreTall, w: 1 },
    ]);
    expectProduct(again, sum, 'tall compacted twice', 2);
    expect(() => compactComponents(tall, 4)).to.throw('compactComponents: rank 4 is below min(d_in, d_out) = 5 of h.0.attn.c_attn');
  });
});

describe('FLoRA: refusals at config load, at the site and by the engine', function () {
  const base = { log: { level: 'silent' }, rounds: { minClients: 5, minUpdates: 5 } };
  const load = (o: Record<string, unknown>): unknown =>
    classicConfig({ overrides: { ...base, ...o, lora: { aggregation: 'flora', dropout: 0, ...(o.lora as object) } } });

  it("config: 'flora' loads with FedAvg and no EMA; refused under secagg, privacy, another strategy or the EMA, each with its reason", function () {
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
    // LoRA dropout applies to the fresh LoRA only (the version is merged into the weights): allowed.
    expect((load({ lora: { dropout: 0.05 } }) as { lora: { dropout: number } }).lora.dropout).to.equal(0.05);
  });

  it("a site refuses a 'flora' task it cannot honour, naming why: a rank above flora_rank (fatal: retrying cannot help), no flora_rank; the plan's dropout goes to the fresh LoRA", async function () {
    const config = { nLayer: 1 };
    const stack = zeroAdapter(twoModules(4, 4, null), 4);
    const site = (r: number): TaskLoraTrainer =>
      new TaskLoraTrainer({ model: { config } as unknown as CausalLm, data: { train: [{ prompt: [1], completion: [2] }] }, lora: { r }, backend: 'test' });
    const plan = FLORA_PLAN;
    const big = site(8);
    const err = await big.train(stack, plan).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err).to.be.instanceOf(LoraMismatchError);
    expect(err?.message).to.equal("the coordinator's flora_rank is 4; this site says --lora.r 8: a site may train a rank from 1 up to it, not above");
    expect(big.fatal).to.equal(err);
    expect(floraFreshLora({ ...plan, loraDropout: 0.1 }, {}, { targetModules: ['c_attn'] }).dropout).to.equal(0.1);
    expect(() => floraFreshLora({ ...plan, floraRank: undefined }, {}, { targetModules: ['c_attn'] })).to.throw(
      "a 'flora' task needs the coordinator's flora_rank",
    );
    // The default: the coordinator's rank and scaling (alpha 8 at flora_rank 4: s = 2, kept at a smaller rank).
    expect(floraFreshLora({ ...plan, loraAlpha: 8 }, { r: 2 }, { targetModules: ['c_attn'] })).to.deep.equal({
      r: 2,
      alpha: 4,
      dropout: 0,
      targetModules: ['c_attn'],
    });
  });
});
