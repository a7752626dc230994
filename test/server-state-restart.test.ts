// A server optimiser's state survives a coordinator restart exactly: a FedAdam run stopped right after version 1
// and restarted on the same run directory commits versions 2 and 3 byte for byte as an uninterrupted run does,
// adapters and server-state.safetensors alike. Real coordinators, real gRPC, real SDK clients; the sites' updates
// scale with the learning rate their plan carries, so the cosine schedule and FedProx's μ travel the wire too,
// and are recorded in each manifest. `fedtune verify` checks the state file like the adapter.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FsCheckpointStore, versionDirName } from '../coordinator/checkpoints/fs-store';
import { SERVER_STATE_FILE } from '../coordinator/checkpoints/server-state';
import { verifyRun } from '../coordinator/checkpoints/verify';
import type { TensorList } from '../proto/tensors';
import { startCoordinator, tempDir, type Harness } from './harness';
import { restartSuite, startRestartSites, versionFile, type RestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Moves every value by value·(100·learningRate)·(1 + i mod 3): the update depends on the plan's rate. */
class RateTrainer implements Trainer {
  readonly backend = 'test';
  readonly plans: { round: number; learningRate: number; proximalMu: number | undefined }[] = [];
  constructor(private readonly value: number) {}
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    this.plans.push({ round: plan.round, learningRate: plan.learningRate, proximalMu: plan.proximalMu });
    const k = this.value * 100 * plan.learningRate;
    const adapter = global.map((t) => ({ ...t, data: t.data.map((x, i) => x + k * (1 + (i % 3))) }));
    return { adapter, numExamples: 10, metrics: {} };
  }
}

const ROUNDS = { total: 3 };
const SETTINGS = {
  strategy: { name: 'fedadam', serverLearningRate: 0.05 },
  training: { learningRate: 0.01, schedule: 'cosine', minLearningRate: 0.001, proximalMu: 0.25 },
};
// Cosine over 3 rounds from 0.01 to 0.001: 0.001 + 0.009·(1 + cos(π·(r−1)/3))/2.
const RATES = [0.01, 0.001 + 0.009 * 0.75, 0.001 + 0.009 * 0.25];

describe('server optimiser state across a coordinator restart (real gRPC)', function () {
  this.timeout(120_000);
  const { dirs, clients, coordinators } = restartSuite();

  async function coordinator(runDir: string): Promise<Harness> {
    const h = await startCoordinator(runDir, ROUNDS, SETTINGS);
    coordinators.push(h.coordinator);
    return h;
  }
  const sites = (h: Harness): RestartSites<RateTrainer> => startRestartSites(h.address, [new RateTrainer(0.3), new RateTrainer(-0.1)], clients);
  const file = versionFile;

  it('versions 2 and 3 after a stop and restart equal an uninterrupted run byte for byte; plans carry the schedule and μ', async () => {
    // Uninterrupted.
    const dirA = await tempDir('serveropt-a');
    dirs.push(dirA);
    const a = await coordinator(dirA);
    const sa = sites(a);
    const finalA = await a.coordinator.done;
    await Promise.all(sa.runs);
    expect(finalA.manifest.version).to.equal(3);
    for (const t of sa.trainers) {
      expect(t.plans.map((p) => p.round)).to.deep.equal([1, 2, 3]);
      t.plans.forEach((p, i) => expect(p.learningRate, `round ${i + 1}`).to.be.closeTo(RATES[i], 1e-15));
      expect(t.plans.map((p) => p.proximalMu)).to.deep.equal([0.25, 0.25, 0.25]);
    }

    // Stopped once version 1 is committed, then restarted on the same run directory.
    const dirB = await tempDir('serveropt-b');
    dirs.push(dirB);
    const b1 = await coordinator(dirB);
    const committed1 = new Promise<void>((r) => b1.coordinator.on('roundCommitted', (e) => e.version === 1 && r()));
    const sb1 = sites(b1);
    await committed1;
    await b1.coordinator.stop(200);
    await sb1.stop();
    const restartedFrom = (await new FsCheckpointStore(dirB, { readOnly: true }).latest())!.manifest.version;
    expect(restartedFrom).to.be.oneOf([1, 2]);
    const b2 = await coordinator(dirB);
    const sb2 = sites(b2);
    const finalB = await b2.coordinator.done;
    await Promise.all(sb2.runs);
    expect(finalB.manifest.version).to.equal(3);

    for (let v = 1; v <= 3; v++) {
      expect((await file(dirB, v, 'adapter_model.safetensors')).equals(await file(dirA, v, 'adapter_model.safetensors')), `v${v} adapter`).to.equal(true);
      expect((await file(dirB, v, SERVER_STATE_FILE)).equals(await file(dirA, v, SERVER_STATE_FILE)), `v${v} server state`).to.equal(true);
    }
    // The state moved the adapter: round 3's step is not round 1's step again.
    const store = new FsCheckpointStore(dirA, { readOnly: true });
    const [v0, v1, v2, v3] = await Promise.all([0, 1, 2, 3].map((v) => store.read(v)));
    expect(v0.manifest.files).to.not.have.property(SERVER_STATE_FILE);
    expect(v0.serverState).to.deep.equal([]);
    expect(v3.serverState!.map((t) => t.name)).to.deep.equal(v3.adapter.flatMap((t) => [`m/${t.name}`]).concat(v3.adapter.map((t) => `v/${t.name}`)));
    expect(v2.serverState).to.not.deep.equal(v1.serverState);
    for (const [i, ck] of [v1, v2, v3].entries()) {
      expect(ck.manifest.strategy).to.equal('fedadam');
      expect(ck.manifest.serverOptimizer).to.deep.equal({ serverLearningRate: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
      expect(ck.manifest.clientTraining!.proximalMu).to.equal(0.25);
      expect(ck.manifest.clientTraining!.learningRate).to.equal(sa.trainers[0].plans[i].learningRate);
    }

    // verify covers the state file: intact it passes; one changed byte is reported against that file.
    expect((await verifyRun(dirB)).ok).to.equal(true);
    const statePath = path.join(dirB, 'versions', versionDirName(2), SERVER_STATE_FILE);
    const bytes = await fs.readFile(statePath);
    bytes[bytes.length - 1] ^= 1;
    await fs.writeFile(statePath, bytes);
    const report = await verifyRun(dirB);
    expect(report.ok).to.equal(false);
    expect(report.problems.map((p) => [p.version, p.file, p.kind])).to.deep.equal([[2, SERVER_STATE_FILE, 'file-hash']]);
    let refused: Error | undefined;
    await new FsCheckpointStore(dirB, { readOnly: true }).read(2).catch((e: Error) => (refused = e));
    expect(refused?.name).to.equal('CheckpointIntegrityError');
    expect(refused?.message).to.contain(`${versionDirName(2)}/${SERVER_STATE_FILE}: sha256`);
  });
});
