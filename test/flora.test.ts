// FLoRA stacking (lora.aggregation 'flora'): each round's sites train fresh LoRAs of their own ranks on top of the
// version they were sent, and the coordinator stacks their factors (coordinator/flora-stack.ts), so the version's
// product is the base version's plus the weighted mean of the sites' products, with no cross terms. Checked on the
// aggregation against float64 references (the bound: each committed lora_B value is one float32 rounding of p_k·b,
// relative error ≤ 2^-24, so each product term is off by at most 2^-24 of its size, and the whole product by at most
// 2^-24·Σ|terms|); over real gRPC with real tfjs training on a tiny Llama (a rank-2 and a rank-4 site, two rounds,
// the export; a late joiner; past the dense rank); the site's stacked path against weights truly merged. The
// aggregation alone and the configuration's refusals: flora-stack.test.ts; raw gRPC refusals: flora-refusals.test.ts.
import * as path from 'node:path';
import { promises as fs } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir, readModelTensors, type CausalLm } from '../client-sdk/model/load';
import { LlamaModel } from '../client-sdk/model/llama';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { TaskLoraTrainer } from '../client-sdk/sft/task-lora';
import { MergedBase, stackLayout, stackLoraConfig } from '../client-sdk/sft/flora-site';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { loraStateFromAdapter } from '../client-sdk/model/lora';
import type { Gpt2Config } from '../proto/model/gpt2-config';
import { pairLogProbs } from '../client-sdk/sft/logprobs';
import { completionPairs, fitToWindow, packBatch } from '../client-sdk/sft/pack';
import { floraInitSeed } from '../proto/model/lora-aggregation';
import { readSafetensors } from '../proto/safetensors';
import { loraModules, uniformRank as uniformRankOf } from '../proto/model/lora-stack';
import type { LlamaConfig } from '../proto/model/llama-config';
import { Prng } from '../proto/prng';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { tempDir } from './harness';
import { BASE, CLI, GPT2, bits, data, expectProduct, floraCoordinator, products, recordingSite, weightedProducts } from './flora-kit';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

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
      // Round 2 trained on the merged version 1, reproducibly from the manifest: the rank-4 site's plan (its seed the
      // manifest's) over v1 gives its upload bit for bit again; over version 0 (nothing merged) another one.
      const r2 = got(2, 'rank-4');
      expect(r2.plan.seed).to.equal(v2.manifest.participants.find((p) => p.clientName === 'rank-4')!.seed);
      const again = (g: TensorList) =>
        new LoraSftTrainer({ model, lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'] }, ...data(2) }).train(g, r2.plan);
      const same = await again(v1.adapter);
      same.adapter.forEach((t, k) => expect(bits(t.data).equals(bits(r2.out.adapter[k].data)), t.name).to.equal(true));
      const unmerged = await again(v0.adapter);
      expect(unmerged.adapter.some((t, k) => !bits(t.data).equals(bits(r2.out.adapter[k].data)))).to.equal(true);

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
    // With LoRA dropout on the fresh LoRA (the merged version is part of the weights, untouched by it).
    const h = await floraCoordinator('flora-dense', 3, { lora: { r: 16, alpha: 32, dropout: 0.1, targetModules: ['q_proj', 'v_proj'], aggregation: 'flora' } });
    const seen: { round: number; site: string; global: TensorList; out: TrainOutcome; dropout?: number }[] = [];
    try {
      const runs = [1, 2].map((seed) =>
        recordingSite(h, `dense-${seed}`, new TaskLoraTrainer({ model, data: data(seed), lora: {}, backend: 'test' }), (global, p, out) =>
          seen.push({ round: p.round, site: `dense-${seed}`, global, out, dropout: p.loraDropout }),
        ).run(),
      );
      await h.coordinator.done;
      await Promise.all(runs);
      const vs = await Promise.all([1, 2, 3].map((v) => h.coordinator.store.read(v)));
      expect(seen.map((e) => e.dropout)).to.deep.equal([0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
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

  // Per family: the model directory, the adapted projections' HF weight names, and whether they are stored [in, out].
  const families = [
    { family: 'llama', dir: BASE, targets: /\.(q|v)_proj\.weight$/, prefix: 'model.', inOut: false, modules: 4 },
    { family: 'gpt2 (c_attn in three parts)', dir: GPT2, targets: /\.(c_attn|c_proj|c_fc)\.weight$/, prefix: 'transformer.', inOut: true, modules: 16 },
  ];
  for (const f of families) {
    it(`${f.family}: the merged base (W0 + B·A in the weights) gives the log-probs of a model built from weights merged in float64, and so does the stack as a LoRA at scaling 1`, async function () {
      const loaded = await loadModelDir(f.dir);
      const tensors = await readModelTensors(f.dir);
      const rng = new Prng(5);
      // A stack of rank 6 over every adapted projection, product ΔW = B·A ([out, in], scaling 1).
      const stack: NamedTensor[] = [];
      for (const t of tensors.filter((x) => f.targets.test(x.name))) {
        const [out, inn] = f.inOut ? [t.shape[1], t.shape[0]] : [t.shape[0], t.shape[1]];
        const key = `base_model.model.${t.name.replace(/\.weight$/, '')}`;
        const rand = (n: number): Float32Array => Float32Array.from({ length: n }, () => (2 * rng.nextFloat() - 1) * 0.3);
        stack.push({ name: `${key}.lora_A.weight`, dtype: 'float32', shape: [6, inn], data: rand(6 * inn) });
        stack.push({ name: `${key}.lora_B.weight`, dtype: 'float32', shape: [out, 6], data: rand(out * 6) });
      }
      const delta = products(stack);
      expect(delta.size).to.equal(f.modules);
      const merged = tensors.map((t) => {
        const d = delta.get(t.name.slice(f.prefix.length).replace(/\.weight$/, ''));
        if (!d) return t;
        const [rows, cols] = t.shape;
        // ΔW is [out, in]; a weight stored [in, out] (GPT-2's Conv1D) takes its transpose.
        return { ...t, data: Float32Array.from(t.data, (x, k) => x + (f.inOut ? d.p[(k % cols) * rows + Math.floor(k / cols)] : d.p[k])) };
      });
      const truly =
        f.family === 'llama' ? LlamaModel.fromTensors(loaded.config as LlamaConfig, merged) : Gpt2Model.fromTensors(loaded.config as Gpt2Config, merged);
      const packed = packBatch(
        data(3)
          .train.slice(0, 4)
          .map((ex) => {
            const w = fitToWindow(ex, 16);
            return { tokens: w.tokens, pairs: completionPairs(w) };
          }),
        16,
      );
      const base = new MergedBase(loaded.model, stack);
      const asLora = loraStateFromAdapter(stack, stackLoraConfig(stack, stackLayout(stack, loaded.model.config.nLayer)));
      try {
        const want = await pairLogProbs(truly, packed, {}, false).data();
        const viaMerge = await pairLogProbs(loaded.model, packed, { merged: base.weights }, false).data();
        const viaLora = await pairLogProbs(loaded.model, packed, { lora: asLora.state }, false).data();
        const scale = Math.max(...want.map(Math.abs));
        // float32 forward passes that round ΔW (float32 matmul) or sum in another order (W0·x + B·(A·x)): agreement to
        // a few float32 ulps of the log-probs' scale, where ΔW itself moves them by orders of magnitude more.
        viaMerge.forEach((x, k) => expect(Math.abs(x - want[k]), `merged, pair ${k}`).to.be.at.most(scale * 2 ** -16));
        viaLora.forEach((x, k) => expect(Math.abs(x - want[k]), `as a LoRA, pair ${k}`).to.be.at.most(scale * 2 ** -16));
        const plain = await pairLogProbs(loaded.model, packed, {}, false).data();
        expect(Math.max(...plain.map((x, k) => Math.abs(x - want[k])))).to.be.greaterThan(scale * 2 ** -8);
      } finally {
        base.dispose();
        asLora.dispose();
        truly.dispose();
        loaded.model.dispose();
      }
    });
  }
});
