// SCAFFOLD over real gRPC with real FederationClients, a real coordinator and real crypto: three sites whose
// trainers take one SGD step along g_k + (c − c_i) and report g_k as their mean gradient (dyadic values, so every
// figure below is exact). After round 1 the server's c (the version's server state) is the weighted mean of the
// sites' Δc; the coordinator and every site then restart, and each site's c_i comes back from its file store: its
// round-2 correction is c − c_i exactly. Then the refusals: an upload without its Δc tensors, with a NaN, an
// out-of-range or a wrongly shaped Δc; and a control-variate download from a run that is not SCAFFOLD.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { FederationClient } from '../client-sdk/client';
import { fileControlVariates } from '../client-sdk/scaffold-store';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { CONTROL_DELTA_PREFIX } from '../proto/model/scaffold';
import { sortByName, type NamedTensor, type TensorList } from '../proto/tensors';
import { downloadAdapter } from '../client-sdk/download';
import { expectRefused, join, rawClient, settled, siteDelta, smallAdapter, startCoordinator, tempDir, testIdentity, upload, uploadFrames } from './harness';
import { twoSitesInRound } from './sites-kit';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const LR = 0.125;

/** One SGD step along g·round + (c − c_i); reports g·round as the mean gradient of that one step. */
class ScaffoldTestSite implements Trainer {
  readonly backend = 'test';
  readonly corrections = new Map<number, number[][]>();
  constructor(
    private readonly g: number,
    private readonly n: number,
  ) {}
  train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    const corr = plan.scaffold!.correction;
    this.corrections.set(
      plan.round,
      corr.map((x) => [...x.data]),
    );
    const grad = this.g * plan.round;
    const adapter = global.map((t, k) => ({ ...t, data: t.data.map((x, j) => x - LR * (grad + corr[k].data[j])) }));
    const tensors = global.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(grad) }));
    return Promise.resolve({ adapter, numExamples: this.n, metrics: { train_loss: 1 }, meanGradient: { steps: 1, tensors } });
  }
}

const SITES = [
  { name: 'scaffold-a', g: 0.25, n: 2 },
  { name: 'scaffold-b', g: 0.5, n: 3 },
  { name: 'scaffold-c', g: -0.125, n: 5 },
];
const MEAN_G = (2 * 0.25 + 3 * 0.5 + 5 * -0.125) / 10; // Σ p_k g_k = 0.1375

describe('SCAFFOLD over gRPC', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it('3 sites: c is the weighted mean of the Δc after round 1; after a coordinator and site restart each c_i comes back from its store', async function () {
    const runDir = await tempDir('scaffold-run');
    const storeRoot = await tempDir('scaffold-sites');
    dirs.push(runDir, storeRoot);
    const rounds = { minClients: 3, minUpdates: 3 };
    const extra = { strategy: { name: 'scaffold' } };
    const runSites = async (address: string): Promise<ScaffoldTestSite[]> => {
      const trainers = SITES.map((s) => new ScaffoldTestSite(s.g, s.n));
      const clients = SITES.map(
        (s, k) =>
          new FederationClient({
            address,
            name: s.name,
            identity: testIdentity(s.name),
            trainer: trainers[k],
            controlVariates: fileControlVariates(path.join(storeRoot, s.name)),
          }),
      );
      await Promise.all(clients.map((c) => c.run()));
      return trainers;
    };

    // Round 1.
    const h1 = await startCoordinator(runDir, { ...rounds, total: 1 }, extra);
    const first = await runSites(h1.address);
    await h1.coordinator.done;
    const v1 = await h1.coordinator.store.read(1);
    await h1.coordinator.stop(500);
    const c1 = Math.fround(MEAN_G);
    expect(c1).to.not.equal(0);
    expect(v1.manifest.strategy).to.equal('scaffold');
    expect(v1.manifest.serverOptimizer).to.deep.equal({ serverLearningRate: 1, population: 0 });
    expect(v1.serverState!.map((t) => t.name)).to.deep.equal(smallAdapter().map((t) => `c/${t.name}`));
    for (const t of v1.serverState!) expect([...t.data], t.name).to.deep.equal(new Array(t.data.length).fill(c1));
    // Every site started at c_i = 0 and c = 0: no correction in round 1.
    for (const tr of first) for (const row of tr.corrections.get(1)!) expect(row.every((x) => x === 0)).to.equal(true);
    // x moved by the weighted mean of −LR·g_k.
    for (const t of v1.adapter) expect([...t.data]).to.deep.equal(new Array(t.data.length).fill(Math.fround(-LR * MEAN_G)));
    // The site's state: c_i⁺ = g_k in a file beside nothing else of the run.
    const files = await fs.readdir(path.join(storeRoot, 'scaffold-a'));
    expect(files).to.have.length(1);
    expect(files[0]).to.match(/^c_i-[0-9a-f]{16}\.safetensors$/);

    // Round 2 after both sides restarted: the coordinator restores c from v1, each site its c_i from its file.
    const h2 = await startCoordinator(runDir, { ...rounds, total: 2 }, extra);
    const second = await runSites(h2.address);
    await h2.coordinator.done;
    const v2 = await h2.coordinator.store.read(2);
    await h2.coordinator.stop(500);
    SITES.forEach((s, k) => {
      const want = Math.fround(c1 - s.g);
      for (const row of second[k].corrections.get(2)!) expect(row, s.name).to.deep.equal(new Array(row.length).fill(want));
    });
    // Δc_k = 2g_k − g_k = g_k, so c moves by Σ p_k g_k again.
    for (const t of v2.serverState!) expect([...t.data], t.name).to.deep.equal(new Array(t.data.length).fill(Math.fround(c1 + MEAN_G)));
  });

  it('refuses an upload without its Δc tensors, with a NaN, out-of-range or misshapen Δc; serves c (zeros at version 0)', async function () {
    const h = await startCoordinator(await tempDir('scaffold-refuse'), { total: 1 }, { strategy: { name: 'scaffold' } });
    const r = await twoSitesInRound(h);
    try {
      const v0 = await h.coordinator.store.read(0);
      const c0 = await downloadAdapter(r.c, r.a.session_token, 0, undefined, true);
      expect(c0.map((t) => [t.name, [...t.data].every((x) => x === 0)])).to.deep.equal(v0.adapter.map((t) => [t.name, true]));
      expect(r.taskA.config!.scaffold).to.equal(true);
      const dy = siteDelta('x', v0.adapter);
      const withDc = (f: (t: NamedTensor) => NamedTensor): NamedTensor[] =>
        sortByName([...dy, ...dy.map((t) => f({ ...t, name: CONTROL_DELTA_PREFIX + t.name, data: t.data.slice() }))]);
      const send = (delta: NamedTensor[]) => (): Promise<unknown> => upload(r.c, uploadFrames({ who: r.a, task: r.taskA }, delta));
      await expectRefused(h.runDir, send(dy), grpc.status.INVALID_ARGUMENT, `missing tensors: ${CONTROL_DELTA_PREFIX}`);
      const nan = withDc((t) => ({ ...t, data: t.data.map((x, i) => (i === 1 ? NaN : x)) }));
      await expectRefused(
        h.runDir,
        send(nan),
        grpc.status.INVALID_ARGUMENT,
        `update refused by the scaffold strategy: tensor ${CONTROL_DELTA_PREFIX}${dy[0].name} holds NaN at element 1; updates must be finite`,
      );
      const huge = withDc((t) => ({ ...t, data: t.data.map(() => 1e6) }));
      await expectRefused(
        h.runDir,
        send(huge),
        grpc.status.INVALID_ARGUMENT,
        `tensor ${CONTROL_DELTA_PREFIX}${dy[0].name} holds 1000000 at element 0; outside ±128`,
      );
      const misshapen = withDc((t) => ({ ...t, shape: [t.data.length * 2], data: new Float32Array(t.data.length * 2) }));
      await expectRefused(h.runDir, send(misshapen), grpc.status.INVALID_ARGUMENT, `tensor ${CONTROL_DELTA_PREFIX}${dy[0].name} has shape`);
      const ok = await upload(
        r.c,
        uploadFrames(
          { who: r.a, task: r.taskA },
          withDc((t) => t),
        ),
      );
      expect(ok.duplicate).to.equal(false);
    } finally {
      await r.close();
    }
  });

  it('a run that is not SCAFFOLD refuses a control-variate download with FAILED_PRECONDITION', async function () {
    const h = await startCoordinator(await tempDir('scaffold-none'), { total: 1, minClients: 1, minUpdates: 1 });
    dirs.push(h.runDir);
    const c = rawClient(h.address);
    try {
      await settled(h);
      const a = await join(c, 'site-a');
      await expectRefused(
        h.runDir,
        () => downloadAdapter(c, a.session_token, 0, undefined, true),
        grpc.status.FAILED_PRECONDITION,
        "this run's strategy is 'fedavg'",
      );
    } finally {
      c.close();
      await h.coordinator.stop(500);
    }
  });
});
