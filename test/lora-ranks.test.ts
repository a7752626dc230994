// Mixed LoRA ranks (a site trains r_s < r, zero-padded to the global rank, client-sdk/sft/rank-padding.ts) and
// the refusals of exact aggregation: the padded adapter's product is exactly the one the site trained (real
// tfjs training on a tiny Llama); a real round over gRPC under 'ffa' with a rank-2 and a rank-4 site keeps A bit
// for bit, records the small site's rank in the manifest and commits exactly the strategy's mean of the padded
// adapters; a rank above the global one, 'flora' under SecAgg and the WebGPU engine's gradient clip under 'ffa' are
// refused with their reasons; lora.aggregation 'auto' resolves by secagg.enabled and privacy.enabled.
import { promises as fs } from 'node:fs';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir, type CausalLm } from '../client-sdk/model/load';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { LoraMismatchError, TaskLoraTrainer, loraConfigFromTask, siteRankPlan } from '../client-sdk/sft/task-lora';
import { padToRank, truncateToRank } from '../client-sdk/sft/rank-padding';
import { ENGINE_FFA_REFUSAL, EngineSftTrainer } from '../client-sdk/engine/trainer';
import type { EngineDevice } from '../client-sdk/engine/device';
import type { Gpt2Model } from '../client-sdk/model/gpt2';
import { ConfigError } from '../coordinator/config';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { uploadLayout } from '../coordinator/lora-aggregation';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { initLoraAdapter, loraScaling, parsePeftKey, type LoraConfig } from '../proto/model/lora-layout';
import { readModelConfig } from '../proto/model/model-dir';
import type { ModelConfig } from '../proto/model/model-config';
import { Prng } from '../proto/prng';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { startCoordinator, tempDir, testIdentity } from './harness';
import { BASE, data } from './flora-kit';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const GLOBAL: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] };

const plan = (mode: 'ffa' | 'fedit'): TrainingPlan => ({
  round: 1,
  taskId: 't',
  localSteps: 2,
  batchSize: 2,
  learningRate: 0.05,
  weightDecay: 0,
  maxSeqLen: 16,
  seed: 3,
  loraAggregation: mode,
});

/** Per module s·B·A in float64 ([out, in]), keyed by module path. */
function products(adapter: TensorList, scaling: number): Map<string, Float64Array> {
  const by = new Map<string, { a?: NamedTensor; b?: NamedTensor }>();
  for (const t of adapter) {
    const k = parsePeftKey(t.name)!;
    const e = by.get(k.path) ?? {};
    e[k.which === 'A' ? 'a' : 'b'] = t;
    by.set(k.path, e);
  }
  const out = new Map<string, Float64Array>();
  for (const [p, { a, b }] of by) {
    const [r, n] = a!.shape;
    const m = b!.shape[0];
    const prod = new Float64Array(m * n);
    for (let o = 0; o < m; o++) for (let i = 0; i < n; i++) for (let j = 0; j < r; j++) prod[o * n + i] += scaling * b!.data[o * r + j] * a!.data[j * n + i];
    out.set(p, prod);
  }
  return out;
}

const bits = (x: Float32Array): Buffer => Buffer.from(x.buffer, x.byteOffset, x.byteLength);

describe('mixed LoRA ranks: zero-padding to the global rank', function () {
  this.timeout(120_000);
  let model: CausalLm;
  let cfg: ModelConfig;
  let global: NamedTensor[];

  before(async function () {
    await selectBackend();
    model = (await loadModelDir(BASE)).model;
    cfg = await readModelConfig(BASE);
    global = initLoraAdapter(cfg, GLOBAL, 9);
    // A trained global: non-zero B, so the truncation's scaling matters.
    const rng = new Prng(4);
    global = global.map((t) => (t.name.includes('.lora_B.') ? { ...t, data: Float32Array.from(t.data, () => (2 * rng.nextFloat() - 1) * 0.02) } : t));
  });
  after(() => model?.dispose());

  for (const mode of ['fedit', 'ffa'] as const) {
    it(`${mode}: a rank-2 site trains for real; its padded rank-4 adapter has exactly the product it trained`, async function () {
      const small = siteRankPlan(GLOBAL, { r: 2 })!;
      expect(small.ratio).to.equal(1);
      expect(loraScaling(small.lora)).to.equal(loraScaling(GLOBAL));
      const start = truncateToRank(global, 2, small.ratio);
      const out = await new LoraSftTrainer({ model, lora: small.lora, ...data(1) }).train(start, plan(mode));
      const padded = padToRank(out.adapter, global, small.ratio);
      const want = products(out.adapter, loraScaling(small.lora));
      const got = products(padded, loraScaling(GLOBAL));
      for (const [p, w] of want) expect(Buffer.from(got.get(p)!.buffer).equals(Buffer.from(w.buffer)), p).to.equal(true);
      for (const t of padded) {
        if (t.name.includes('.lora_B.')) {
          const r = t.shape[1];
          expect(
            t.data.every((v, i) => i % r < 2 || v === 0),
            `${t.name}: columns beyond 2 are zero`,
          ).to.equal(true);
        } else {
          const g = global.find((x) => x.name === t.name)!;
          // Rows beyond the site's rank keep the global values; under ffa all of A does.
          const from = mode === 'ffa' ? 0 : 2 * t.shape[1];
          expect(bits(t.data.subarray(from)).equals(bits(g.data.subarray(from))), t.name).to.equal(true);
        }
      }
      if (mode === 'fedit')
        expect(out.adapter.some((t) => t.name.includes('.lora_A.') && !bits(t.data).equals(bits(start.find((x) => x.name === t.name)!.data)))).to.equal(true);
    });
  }

  it('a site alpha of its own: B is rescaled by s_site / s_global, the product kept to float32 rounding of B', function () {
    const small = siteRankPlan(GLOBAL, { r: 2, alpha: 3 })!;
    expect(small.ratio).to.equal(3 / 2 / 2);
    const trained = truncateToRank(global, 2, small.ratio);
    const padded = padToRank(trained, global, small.ratio);
    const want = products(trained, loraScaling(small.lora));
    const got = products(padded, loraScaling(GLOBAL));
    for (const [p, w] of want) {
      const g = got.get(p)!;
      const scale = Math.max(...w.map(Math.abs));
      w.forEach((v, i) => expect(Math.abs(g[i] - v), p).to.be.at.most(scale * 2 ** -20));
    }
  });

  it("a round over gRPC under ffa with a rank-2 and a rank-4 site: A unchanged, the small site's rank in the manifest, B the strategy's exact mean", async function () {
    const h = await startCoordinator(
      await tempDir('ranks'),
      { total: 1, deadlineMs: 60_000 },
      {
        model: { dir: BASE, name: 'tiny-llama' },
        lora: { ...GLOBAL, aggregation: 'ffa' },
        training: { localSteps: 2, batchSize: 2, maxSeqLen: 16, learningRate: 0.05 },
      },
      { fromModelDir: true },
    );
    try {
      const sent = new Map<string, TrainOutcome>();
      const site = (name: string, r: number | undefined, seed: number): FederationClient => {
        const inner = new TaskLoraTrainer({ model, data: data(seed), lora: { ...(r ? { r } : {}), dropout: 0 }, backend: 'test' });
        const trainer: Trainer = {
          backend: 'test',
          train: async (g, p, s) => {
            const out = await inner.train(g, p, s);
            sent.set(name, out);
            return out;
          },
        };
        return new FederationClient({ address: h.address, name, identity: testIdentity(name), trainer });
      };
      const clients = [site('rank-2', 2, 1), site('rank-4', undefined, 2)];
      const runs = clients.map((c) => c.run());
      await h.coordinator.done;
      await Promise.all(runs);
      const [v0, v1] = await Promise.all([0, 1].map((v) => h.coordinator.store.read(v)));
      for (const t of v1.adapter.filter((x) => x.name.includes('.lora_A.'))) {
        expect(bits(t.data).equals(bits(v0.adapter.find((x) => x.name === t.name)!.data)), t.name).to.equal(true);
      }
      const ranks = Object.fromEntries(v1.manifest.participants.map((p) => [p.clientName, p.loraRank]));
      expect(ranks).to.deep.equal({ 'rank-2': 2, 'rank-4': undefined });
      expect(sent.get('rank-2')!.loraRank).to.equal(2);
      // The strategy over the two padded adapters the sites returned (B deltas only), bit for bit.
      const strategy = new FedAvg();
      const layout = uploadLayout(v0.adapter, 'ffa');
      const agg = strategy.begin(layout);
      for (const [name, out] of sent) {
        const delta = layout.map((g) => ({ ...g, data: Float32Array.from(out.adapter.find((x) => x.name === g.name)!.data, (v, i) => v - g.data[i]) }));
        const u = { clientId: name, numExamples: out.numExamples, delta };
        agg.admit(u);
        agg.add(u);
      }
      const want = strategy.aggregate(v0.adapter, agg.sum());
      want.forEach((t, k) => expect(bits(v1.adapter[k].data).equals(bits(t.data)), t.name).to.equal(true));
    } finally {
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });
});

describe('exact LoRA aggregation: refusals and defaults', function () {
  const base = { overrides: { log: { level: 'silent' }, rounds: { minClients: 5, minUpdates: 5 } } };

  it('a site rank above the global one is refused, naming both', function () {
    const g: NamedTensor[] = [
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'float32', shape: [4, 8], data: new Float32Array(32) },
      { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'float32', shape: [8, 4], data: new Float32Array(32) },
    ];
    expect(() => loraConfigFromTask(g, 1, { r: 8 })).to.throw(
      LoraMismatchError,
      "the coordinator's adapter has r=4; this site says --lora.r 8: a site may train a rank from 1 up to the adapter's",
    );
    expect(loraConfigFromTask(g, 1, { r: 2 }, 12)).to.include({ r: 4, alpha: 12 });
  });

  it("'flora' is refused under secure aggregation (it needs each site's factors) and loads without it (test/flora.test.ts runs it)", function () {
    const load = (secagg: boolean): { lora: { aggregation: string } } =>
      classicConfig({ overrides: { ...base.overrides, lora: { aggregation: 'flora', dropout: 0 }, secagg: { enabled: secagg } } });
    expect(() => load(true)).to.throw(ConfigError, "lora.aggregation 'flora' stacks each site's own factors, which secure aggregation hides");
    expect(load(false).lora.aggregation).to.equal('flora');
  });

  it("'auto' resolves to ffa under secagg.enabled or privacy.enabled and to fedit otherwise; an explicit mode wins", function () {
    const mode = (o: Record<string, unknown>): string => classicConfig({ overrides: { ...base.overrides, ...o } }).lora.aggregation;
    expect(mode({ secagg: { enabled: true } })).to.equal('ffa');
    expect(mode({ privacy: { enabled: true } })).to.equal('ffa');
    expect(mode({})).to.equal('fedit');
    expect(mode({ secagg: { enabled: true }, lora: { aggregation: 'fedit' } })).to.equal('fedit');
    expect(mode({ lora: { aggregation: 'ffa' } })).to.equal('ffa');
  });

  it('the WebGPU engine refuses an ffa task under gradient clipping, with the reason (its global norm would count the frozen A)', async function () {
    const t = new EngineSftTrainer({
      model: {} as Gpt2Model,
      lora: { ...GLOBAL, targetModules: ['c_attn'] },
      train: [{ prompt: [1], completion: [2] }],
      device: {} as EngineDevice,
      path: 'f32',
      maxGradNorm: 1,
    });
    const err = await t.train([], plan('ffa')).then(
      () => undefined,
      (e: Error) => e,
    );
    expect(err?.message).to.equal(ENGINE_FFA_REFUSAL);
  });
});
