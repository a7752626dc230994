// strategy.serverSchedule (coordinator/strategy/server-schedule.ts): the server learning rate decays by round,
// η_r = η·(1 + cos(π·(r − 1)/R))/2, for FedAvgM and the adaptive optimisers. Two rounds against hand values (exact
// binary fractions) and a float64 transcription of Reddi et al.'s Algorithm 2; the configuration's refusals; and a
// real federation (coordinator over gRPC, SDK clients) whose committed adapters carry the decayed steps exactly.
import { promises as fs } from 'node:fs';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { loadConfig } from '../coordinator/config';
import { aggregateUpdates } from '../coordinator/strategy/fedavg';
import { FedAvgM } from '../coordinator/strategy/fedavgm';
import { FedAdam } from '../coordinator/strategy/fedopt';
import { serverRateAt } from '../coordinator/strategy/server-schedule';
import type { ServerState, Strategy } from '../coordinator/strategy/strategy';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { startCoordinator, tempDir, testIdentity } from './harness';
import { GLOBAL, ROUND1, ROUND2, f, values } from './server-rounds-fixture';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const D = [
  [0.3125, 0.5, 0],
  [-0.25, 0.25, 0.125],
];

/** Rounds 1 and 2 through `s`, the state carrying the round as the coordinator's does (round-outcome.ts). */
function twoRounds(s: Strategy): { w1: NamedTensor[]; w2: NamedTensor[]; s2: readonly NamedTensor[] } {
  const st1: ServerState = { tensors: [], round: 1 };
  const w1 = aggregateUpdates(s, GLOBAL, ROUND1, st1).adapter;
  const st2: ServerState = { tensors: st1.tensors, round: 2 };
  const w2 = aggregateUpdates(s, w1, ROUND2, st2).adapter;
  return { w1, w2, s2: st2.tensors };
}

describe('server learning-rate schedule (strategy.serverSchedule)', () => {
  it('cosine over R rounds: η, then η·(1 + cos(π/R))/2, …; constant and the last round', () => {
    const cos = { serverSchedule: 'cosine', roundsTotal: 3 } as const;
    expect(serverRateAt('x', 0.5, cos, 1)).to.equal(0.5);
    // cos(π/3) = 0.5 in float64 up to one ulp: 0.5·0.75.
    expect(serverRateAt('x', 0.5, cos, 2)).to.be.closeTo(0.375, 1e-16);
    expect(serverRateAt('x', 0.5, cos, 3)).to.be.closeTo(0.125, 1e-16);
    expect(serverRateAt('x', 0.5, { serverSchedule: 'constant', roundsTotal: 3 }, 3)).to.equal(0.5);
    expect(serverRateAt('x', 0.5, {}, undefined)).to.equal(0.5);
    expect(() => serverRateAt('FedAdam', 0.5, cos, undefined)).to.throw("FedAdam: strategy.serverSchedule 'cosine' needs the round being aggregated");
    expect(() => serverRateAt('FedAdam', 0.5, { serverSchedule: 'cosine' }, 1)).to.throw("FedAdam: strategy.serverSchedule 'cosine' needs rounds.total");
  });

  it('FedAvgM: round 2 steps by 0.75·η (R = 2 would halve it), against hand values', () => {
    // R = 3: η1 = 0.5, η2 = 0.375 (= 0.5·0.75 exactly: (1 + cos(π/3))/2 rounds to 0.75 in float64).
    const { w1, w2, s2 } = twoRounds(new FedAvgM({ serverLearningRate: 0.5, momentum: 0.5, serverSchedule: 'cosine', roundsTotal: 3 }));
    // Round 1: buf = Δ1; w = [0.5, −1, 0.125] + 0.5·[0.3125, 0.5, 0].
    expect(values(w1, 'w')).to.deep.equal([0.65625, -0.75, 0.125]);
    // Round 2: buf = 0.5·Δ1 + Δ2 = [−0.09375, 0.5, 0.125]; w += 0.375·buf (constant η would add 0.5·buf).
    expect(values(s2, 'momentum/w')).to.deep.equal([-0.09375, 0.5, 0.125]);
    expect(values(w2, 'w')).to.deep.equal([0.62109375, -0.5625, 0.171875]);
    // 'constant' is the strategy without a schedule, bit for bit.
    const plain = twoRounds(new FedAvgM({ serverLearningRate: 0.5, momentum: 0.5 }));
    const constant = twoRounds(new FedAvgM({ serverLearningRate: 0.5, momentum: 0.5, serverSchedule: 'constant', roundsTotal: 3 }));
    expect(values(constant.w2, 'w')).to.deep.equal(values(plain.w2, 'w'));
    expect(values(plain.w2, 'w')).to.deep.equal([0.609375, -0.5, 0.1875]);
  });

  it('FedAdam: each round steps by its own η_r, against a float64 transcription of Algorithm 2', () => {
    const [eta, b1, b2, tau] = [0.1, 0.9, 0.99, 1e-3];
    const rates = [eta, eta * ((1 + Math.cos(Math.PI / 4)) / 2)]; // R = 4
    const w = Array.from(GLOBAL[0].data);
    let m = [0, 0, 0];
    let v = [tau * tau, tau * tau, tau * tau];
    const expected: number[][] = [];
    for (const [r, d] of D.entries()) {
      const m64 = m.map((mi, i) => b1 * mi + (1 - b1) * d[i]);
      const v64 = v.map((vi, i) => b2 * vi + (1 - b2) * d[i] * d[i]);
      for (let i = 0; i < 3; i++) w[i] = f(w[i] + (rates[r] * m64[i]) / (Math.sqrt(v64[i]) + tau));
      m = m64.map(f);
      v = v64.map(f);
      expected.push([...w]);
    }
    const { w1, w2 } = twoRounds(new FedAdam({ serverLearningRate: eta, beta1: b1, beta2: b2, tau, serverSchedule: 'cosine', roundsTotal: 4 }));
    expect(values(w1, 'w')).to.deep.equal(expected[0]);
    expect(values(w2, 'w')).to.deep.equal(expected[1]);
    // The decay changed round 2: a constant η lands elsewhere.
    const constant = twoRounds(new FedAdam({ serverLearningRate: eta, beta1: b1, beta2: b2, tau }));
    expect(values(constant.w2, 'w')).to.not.deep.equal(expected[1]);
  });

  it('the configuration: cosine needs a server optimiser with a rate; the variable and the default', () => {
    // The default recipe's cosine under its FedAdam; under another strategy, unless set, constant (default-recipe.ts).
    expect(loadConfig({ overrides: {} }).strategy.serverSchedule).to.equal('cosine');
    expect(loadConfig({ overrides: { strategy: { name: 'fedavgm' } } }).strategy.serverSchedule).to.equal('constant');
    expect(loadConfig({ overrides: { strategy: { name: 'fedadam' } }, env: { FEDTUNE_STRATEGY_SERVER_SCHEDULE: 'cosine' } }).strategy.serverSchedule).to.equal(
      'cosine',
    );
    for (const name of ['fedavg', 'scaffold']) {
      expect(() => loadConfig({ overrides: { strategy: { name, serverSchedule: 'cosine' } } })).to.throw(
        `strategy.serverSchedule 'cosine' needs a server optimiser with a learning rate (fedavgm, fedadam, fedyogi, fedadagrad); strategy.name is '${name}'`,
      );
    }
    expect(() => loadConfig({ overrides: { strategy: { name: 'fedavgm', serverSchedule: 'linear' } } })).to.throw('strategy.serverSchedule');
  });
});

/** Adds k·(1 + i mod 3) to every value: on the all-zero adapter of the harness, every delta is a binary fraction. */
class StepTrainer implements Trainer {
  readonly backend = 'test';
  constructor(private readonly k: number) {}
  train(global: TensorList, _plan: TrainingPlan): Promise<TrainOutcome> {
    const adapter = global.map((x) => ({ ...x, data: x.data.map((y, i) => y + this.k * (1 + (i % 3))) }));
    return Promise.resolve({ adapter, numExamples: 10, metrics: {} });
  }
}

describe('server learning-rate schedule in a federation (real gRPC)', function () {
  this.timeout(60_000);
  let dir = '';
  after(async () => {
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it('FedAvgM η 0.5 β 0.5, cosine over 2 rounds: v1 = 0.5·Δ, v2 = v1 + 0.25·1.5·Δ, and the manifest says so', async () => {
    dir = await tempDir('server-schedule');
    const h = await startCoordinator(dir, { total: 2 }, { strategy: { name: 'fedavgm', serverLearningRate: 0.5, momentum: 0.5, serverSchedule: 'cosine' } });
    const clients = [0.125, -0.0625].map(
      (k, i) =>
        new FederationClient({
          address: h.address,
          name: `site-${i}`,
          identity: testIdentity(`schedule-site-${i}`),
          trainer: new StepTrainer(k),
          backoff: { initialMs: 20, maxMs: 200, factor: 2 },
        }),
    );
    try {
      const runs = clients.map((c) => c.run());
      const final = await h.coordinator.done;
      await Promise.all(runs);
      expect(final.manifest.version).to.equal(2);
      const store = new FsCheckpointStore(dir, { readOnly: true });
      const [v1, v2] = await Promise.all([1, 2].map((v) => store.read(v)));
      // Δ = mean of 0.125 and −0.0625 times (1, 2, 3, 1, 2, 3, …) = 0.03125·(1 + i mod 3) every round.
      const delta = (n: number): number[] => Array.from({ length: n }, (_, i) => 0.03125 * (1 + (i % 3)));
      for (const x of v1.adapter) expect(Array.from(x.data), `v1 ${x.name}`).to.deep.equal(delta(x.data.length).map((d) => 0.5 * d));
      // Round 2 (η2 = 0.5·(1 + cos(π/2))/2 = 0.25): buf = 0.5·Δ + Δ; v2 = 0.5·Δ + 0.25·1.5·Δ = 0.875·Δ (constant η: 1.25·Δ).
      for (const x of v2.adapter) expect(Array.from(x.data), `v2 ${x.name}`).to.deep.equal(delta(x.data.length).map((d) => 0.875 * d));
      expect((v2.manifest.config as { strategy: { serverSchedule: string } }).strategy.serverSchedule).to.equal('cosine');
    } finally {
      for (const c of clients) await c.stop().catch(() => undefined);
      await h.coordinator.stop(200).catch(() => undefined);
    }
  });
});
