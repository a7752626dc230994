// The cross-device simulation of the quality benchmark (bench/quality-cohort.ts, run 15): the population's index
// ranges, the seeded cohorts both arms of a comparison share, the slots' trainers, and the ε the run's z give at its
// sampling rate from the project's accountant.
import {
  COHORT_TRAINERS,
  SharedTrainer,
  drawCohorts,
  sampledEpsilon,
  samplingRate,
  slotData,
  slotTrainer,
  virtualSites,
  type CohortSpec,
} from '../bench/quality-cohort';
import { RUN15_CONFIGS, RUN15_ROUNDS, RUN15_ROUNDS_LONG, RUN15_Z, RUN15_Z_LONG, XD_FIXED, XD_POISSON } from '../bench/quality-configs-run15';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { cellOverrides, deepMerge } from '../bench/quality-configs';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import type { SftExample } from '../client-sdk/sft/types';
import type { NamedTensor } from '../proto/tensors';
import type { Trainer, TrainingPlan } from '../client-sdk/trainer';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const example = (i: number): SftExample => ({ inputIds: [i], labels: [i] }) as unknown as SftExample;
const plan = (round: number): TrainingPlan => ({ round, taskId: 't', localSteps: 1, batchSize: 1, learningRate: 0.1, weightDecay: 0, maxSeqLen: 8, seed: 1 });

describe('quality benchmark cohorts (bench/quality-cohort.ts)', () => {
  it('cuts the population into disjoint index ranges of a seeded order', () => {
    const train = Array.from({ length: 4624 }, (_, i) => example(i));
    const sites = virtualSites(train, XD_POISSON, 7);
    expect(sites).to.have.length(1156);
    const all = sites.flat();
    expect(all).to.have.length(4624);
    expect(new Set(all).size).to.equal(4624);
    expect(virtualSites(train, XD_POISSON, 7)).to.deep.equal(sites);
    expect(virtualSites(train, XD_POISSON, 8)).to.not.deep.equal(sites);
    expect(() => virtualSites(train.slice(0, 4623), XD_POISSON, 7)).to.throw(/exceed the 4623 training e-mails/);
  });

  it('draws the same cohorts for the same seed, round by round, whatever the number of rounds', () => {
    const a = drawCohorts(XD_POISSON, 42, RUN15_ROUNDS);
    expect(drawCohorts(XD_POISSON, 42, RUN15_ROUNDS)).to.deep.equal(a);
    expect(drawCohorts(XD_POISSON, 42, 5)).to.deep.equal(a.slice(0, 5));
    expect(drawCohorts(XD_POISSON, 43, 5)).to.not.deep.equal(a.slice(0, 5));
    for (const c of a) {
      expect(c).to.deep.equal([...new Set(c)].sort((x, y) => x - y));
      expect(c.every((i) => Number.isInteger(i) && i >= 0 && i < XD_POISSON.sites)).to.equal(true);
    }
  });

  it('Poisson cohorts average m and never outgrow the slots for the run seeds; fixed cohorts are exactly m', () => {
    const sizes = [42, 43, 44, 45, 46].flatMap((s) => drawCohorts(XD_POISSON, s, RUN15_ROUNDS).map((c) => c.length));
    const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
    // 200 draws of Binomial(1156, 50/1156): the mean lies within 4 standard errors (0.49 each) of 50.
    expect(mean).to.be.within(48, 52);
    expect(Math.max(...sizes)).to.be.at.most(XD_POISSON.slots);
    for (const c of drawCohorts(XD_FIXED, 42, RUN15_ROUNDS)) expect(c).to.have.length(50);
    const tight: CohortSpec = { ...XD_POISSON, slots: 40 };
    expect(() => drawCohorts(tight, 42, RUN15_ROUNDS)).to.throw(/drew \d+ sites for 40 slots/);
  });

  it("the run's noise multipliers give ε 8, 4, 1 at δ 1e-5 after its rounds at q = 50/1156 (the project's accountant)", () => {
    expect(samplingRate(XD_POISSON)).to.equal(50 / 1156);
    expect(samplingRate(XD_FIXED)).to.equal(1);
    for (const [target, z] of Object.entries(RUN15_Z)) {
      const eps = sampledEpsilon(XD_POISSON, z, RUN15_ROUNDS, 1e-5);
      expect(eps, `z ${z}`).to.be.at.most(Number(target));
      expect(eps, `z ${z}`).to.be.above(Number(target) * 0.99);
      expect(eps).to.equal(epsilonSpent([{ q: 50 / 1156, z, steps: RUN15_ROUNDS }], 1e-5));
      // Without amplification (q = 1, what the manifest charges) the same z would spend far more.
      expect(epsilonSpent([{ q: 1, z, steps: RUN15_ROUNDS }], 1e-5)).to.be.above(10 * Number(target));
    }
    const long = sampledEpsilon(XD_POISSON, RUN15_Z_LONG[8], RUN15_ROUNDS_LONG, 1e-5);
    expect(long).to.be.within(7.99, 8);
  });

  it("a slot trains its cohort member's e-mails on a shared trainer and sends the global adapter back when the round has none for it", async () => {
    const sites = [[example(0)], [example(1), example(2)], [example(3)]];
    const seen: number[][] = [];
    const { data, pool } = slotData(sites, undefined);
    expect(data.train).to.equal(pool);
    const inner: Trainer = {
      backend: 'stub',
      train: (global) => {
        seen.push(pool.map((e) => (e as unknown as { inputIds: number[] }).inputIds[0]));
        return Promise.resolve({ adapter: global.map((t) => ({ ...t, data: t.data.map((x) => x + 1) })), numExamples: pool.length, metrics: {} });
      },
    };
    const t = slotTrainer([new SharedTrainer(inner, pool)], 1, [[0, 1], [2]], sites);
    expect(t.backend).to.equal('stub');
    const global: NamedTensor[] = [{ name: 'w', dtype: 'float32', shape: [2], data: new Float32Array([1, 2]) }];
    const r1 = await t.train(global, plan(1));
    expect(seen).to.deep.equal([[1, 2]]);
    expect([...r1.adapter[0].data]).to.deep.equal([2, 3]);
    const r2 = await t.train(global, plan(2));
    expect(seen).to.have.length(1);
    expect(r2.numExamples).to.equal(1);
    expect(r2.metrics).to.deep.equal({});
    expect([...r2.adapter[0].data]).to.deep.equal([1, 2]);
    expect(r2.adapter[0].data).to.not.equal(global[0].data);
    await t.train(global, plan(3)).then(
      () => expect.fail('round 3 has no draw'),
      (e: Error) => expect(e.message).to.match(/no draw for round 3/),
    );
  });

  it('slots sharing a trainer take turns: each trains on its own e-mails, one at a time, a failure passing only to its own slot', async () => {
    const sites = Array.from({ length: 6 }, (_, i) => [example(10 * i), example(10 * i + 1)]);
    const { pool } = slotData(sites, undefined);
    let busy = 0;
    let most = 0;
    const got: string[] = [];
    const inner: Trainer = {
      backend: 'stub',
      train: async (global, p) => {
        busy++;
        most = Math.max(most, busy);
        const first = (pool[0] as unknown as { inputIds: number[] }).inputIds[0];
        await new Promise((r) => setTimeout(r, 5)); // another slot's call would interleave here if it could
        const still = (pool[0] as unknown as { inputIds: number[] }).inputIds[0];
        busy--;
        if (first === 30) throw new Error('site 3 fails');
        got.push(`${p.round}:${first}:${still}`);
        return { adapter: global.map((t) => ({ ...t })), numExamples: pool.length, metrics: {} };
      },
    };
    const shared = [new SharedTrainer(inner, pool)];
    const cohorts = [[0, 2, 3, 5]];
    const slots = Array.from({ length: 6 }, (_, i) => slotTrainer(shared, i, cohorts, sites));
    const global: NamedTensor[] = [{ name: 'w', dtype: 'float32', shape: [1], data: new Float32Array([0]) }];
    const out = await Promise.allSettled(slots.map((s) => s.train(global, plan(1))));
    expect(most).to.equal(1);
    expect(got.sort()).to.deep.equal(['1:0:0', '1:20:20', '1:50:50']);
    expect(out.map((o) => o.status)).to.deep.equal(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect(COHORT_TRAINERS).to.be.below(50); // 50 engine devices per process ran in runs 9-12; 92 did not
  });

  it('every run 15 configuration loads as the coordinator would run it', () => {
    for (const [name, c] of Object.entries(RUN15_CONFIGS)) {
      const cfg = classicConfig({
        overrides: deepMerge({ training: { localSteps: 4, batchSize: 4, learningRate: 0.01 }, lora: { dropout: 0 } }, cellOverrides(c)),
      });
      expect(cfg.lora.r, name).to.equal(1);
      expect([c.learningRate, c.localSteps], name).to.deep.equal([0.02, 2]);
      expect(cfg.lora.targetModules, name).to.deep.equal(['c_attn']);
      expect(c.clients, name).to.equal(c.cohort?.slots);
      expect(cfg.privacy.enabled, name).to.equal(name !== 'xd-plain');
    }
  });
});
