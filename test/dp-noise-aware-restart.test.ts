// strategy.noiseAware's state across a coordinator restart (real gRPC, real SDK clients): a DP-FedAvg run over the
// noise-aware FedAdam stopped after version 1 and restarted on the same run directory commits versions 2 and 3 byte
// for byte as an uninterrupted run does: adapters and server-state.safetensors (m, v and the noise's running
// variance). The noise is drawn per round from a fixed seed here (production draws a fresh secret one), so both
// runs add the same noise in the same round. The run keeps the EMA average too (strategy.ema, as the dp8 recipe
// does), so each manifest records the strategy as what ran: `fedadam+dp+ema`.
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { SERVER_STATE_FILE } from '../coordinator/checkpoints/server-state';
import { DpStrategy } from '../coordinator/strategy/dp';
import { FedAdam, NOISE_KEY } from '../coordinator/strategy/fedopt';
import { GaussianStream } from '../proto/gaussian';
import type { TensorList } from '../proto/tensors';
import { startCoordinator, tempDir, type Harness } from './harness';
import { restartSuite, startRestartSites, versionFile, type RestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Moves value i by k·(1 + i mod 3)/(round + 1): the update changes from round to round. */
class StepTrainer implements Trainer {
  readonly backend = 'test';
  constructor(private readonly k: number) {}
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    const adapter = global.map((t) => ({ ...t, data: t.data.map((x, i) => x + (this.k * (1 + (i % 3))) / (plan.round + 1)) }));
    return { adapter, numExamples: 10, metrics: {} };
  }
}

const STRATEGY = {
  name: 'fedadam',
  serverLearningRate: 0.05,
  beta1: 0.9,
  beta2: 0.99,
  tau: 1e-3,
  biasCorrection: true,
  noiseAware: true,
  noiseFloor: 0.25,
  ema: 0.5,
};
const PRIVACY = { enabled: true, clipNorm: 1, noiseMultiplier: 0.5, delta: 1e-5 };

/** DP-FedAvg over the noise-aware FedAdam whose noise in round r is drawn from seed r; `committed`: rounds already in the run. */
function seededStrategy(committed: number): DpStrategy {
  let round = committed;
  return new DpStrategy(new FedAdam(STRATEGY), PRIVACY, () => new GaussianStream(new Uint8Array(32).fill(++round)));
}

describe('noise-aware FedAdam state across a coordinator restart (real gRPC)', function () {
  this.timeout(120_000);
  const { dirs, clients, coordinators } = restartSuite();

  async function coordinator(runDir: string, committed: number): Promise<Harness> {
    const h = await startCoordinator(runDir, { total: 3 }, { strategy: STRATEGY, privacy: PRIVACY }, { strategy: seededStrategy(committed) });
    coordinators.push(h.coordinator);
    return h;
  }
  const sites = (h: Harness): RestartSites<StepTrainer> => startRestartSites(h.address, [new StepTrainer(0.3), new StepTrainer(-0.1)], clients);
  const file = versionFile;

  it('versions 2 and 3 after a stop and restart equal an uninterrupted run byte for byte, the noise average included', async () => {
    const dirA = await tempDir('noiseaware-a');
    dirs.push(dirA);
    const a = await coordinator(dirA, 0);
    const sa = sites(a);
    expect((await a.coordinator.done).manifest.version).to.equal(3);
    await Promise.all(sa.runs);

    const dirB = await tempDir('noiseaware-b');
    dirs.push(dirB);
    const b1 = await coordinator(dirB, 0);
    const committed1 = new Promise<void>((r) => b1.coordinator.on('roundCommitted', (e) => e.version === 1 && r()));
    const sb1 = sites(b1);
    await committed1;
    await b1.coordinator.stop(200);
    await sb1.stop();
    const restartedFrom = (await new FsCheckpointStore(dirB, { readOnly: true }).latest())!.manifest.version;
    expect(restartedFrom).to.be.oneOf([1, 2]);
    const b2 = await coordinator(dirB, restartedFrom);
    const sb2 = sites(b2);
    expect((await b2.coordinator.done).manifest.version).to.equal(3);
    await Promise.all(sb2.runs);

    for (let v = 1; v <= 3; v++) {
      expect((await file(dirB, v, 'adapter_model.safetensors')).equals(await file(dirA, v, 'adapter_model.safetensors')), `v${v} adapter`).to.equal(true);
      expect((await file(dirB, v, SERVER_STATE_FILE)).equals(await file(dirA, v, SERVER_STATE_FILE)), `v${v} server state`).to.equal(true);
    }
    // The noise's running variance: ν = (σ/n)² with σ = z·C = 0.5 and n = 2 updates, averaged as v is (β2 0.99).
    const store = new FsCheckpointStore(dirA, { readOnly: true });
    const nu = (0.5 / 2) ** 2;
    let s = 0;
    for (let v = 1; v <= 3; v++) {
      s = Math.fround(0.99 * s + 0.01 * nu);
      const ck = await store.read(v);
      expect(Array.from(ck.serverState!.find((t) => t.name === NOISE_KEY)!.data), `v${v}`).to.deep.equal([s]);
      expect(ck.manifest.serverOptimizer).to.deep.include({ noiseAware: 1, noiseFloor: 0.25, biasCorrection: 1, ema: 0.5 });
      expect(ck.manifest.strategy, `v${v}`).to.equal('fedadam+dp+ema');
    }
  });
});
