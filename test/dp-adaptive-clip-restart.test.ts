// Adaptive clipping's C across a coordinator restart (real gRPC, real SDK clients): a DP-FedAvg run with
// privacy.adaptiveClipping, stopped after version 1 and restarted on the same run directory, commits versions 2 and 3
// byte for byte as an uninterrupted run does: adapters, server-state.safetensors (C_t beside the noise-aware FedAdam's
// state and the EMA average) and the manifests' privacy records. Each manifest's C is the one its parent stored, its
// C_{t+1} the paper's step from the noised fraction it records, and its ε the accountant's at z (not z_Δ). The noise
// is drawn per round from a fixed seed here (production draws a fresh secret one), so both runs draw the same.
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { SERVER_STATE_FILE } from '../coordinator/checkpoints/server-state';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { CLIP_NORM_KEY, updateNoiseMultiplier } from '../coordinator/privacy/adaptive-clip';
import { DpStrategy } from '../coordinator/strategy/dp';
import { FedAdam } from '../coordinator/strategy/fedopt';
import { GaussianStream } from '../proto/gaussian';
import type { TensorList } from '../proto/tensors';
import { startCoordinator, tempDir, type Harness } from './harness';
import { restartSuite, startRestartSites, versionFile, type RestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Moves value i by k·(1 + i mod 3)/(round + 1): the updates' norms shrink from round to round. */
class StepTrainer implements Trainer {
  readonly backend = 'test';
  constructor(private readonly k: number) {}
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    const adapter = global.map((t) => ({ ...t, data: t.data.map((x, i) => x + (this.k * (1 + (i % 3))) / (plan.round + 1)) }));
    return { adapter, numExamples: 10, metrics: {} };
  }
}

const STRATEGY = { name: 'fedadam', serverLearningRate: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3, biasCorrection: true, noiseAware: true, ema: 0.5 };
const Z = 0.5;
const PRIVACY = {
  enabled: true,
  clipNorm: 1,
  noiseMultiplier: Z,
  delta: 1e-5,
  adaptiveClipping: true,
  clipTargetQuantile: 0.5,
  clipLearningRate: 0.2,
  clipCountNoise: 1,
};
const ADAPTIVE = { targetQuantile: 0.5, learningRate: 0.2, countNoise: 1 };

/** DP-FedAvg with adaptive clipping whose noise in round r is drawn from seed r; `committed`: rounds already in the run. */
function seededStrategy(committed: number): DpStrategy {
  let round = committed;
  return new DpStrategy(
    new FedAdam(STRATEGY),
    { clipNorm: 1, noiseMultiplier: Z, adaptive: ADAPTIVE },
    () => new GaussianStream(new Uint8Array(32).fill(++round)),
  );
}

describe('adaptive clipping across a coordinator restart (real gRPC)', function () {
  this.timeout(120_000);
  const { dirs, clients, coordinators } = restartSuite();

  async function coordinator(runDir: string, committed: number): Promise<Harness> {
    const h = await startCoordinator(runDir, { total: 3 }, { strategy: STRATEGY, privacy: PRIVACY }, { strategy: seededStrategy(committed) });
    coordinators.push(h.coordinator);
    return h;
  }
  const sites = (h: Harness): RestartSites<StepTrainer> => startRestartSites(h.address, [new StepTrainer(0.3), new StepTrainer(-0.02)], clients);

  it('versions 2 and 3 after a stop and restart equal an uninterrupted run byte for byte, C included; C moves by the recorded rule and ε is charged at z', async () => {
    const dirA = await tempDir('adaclip-a');
    dirs.push(dirA);
    const a = await coordinator(dirA, 0);
    const sa = sites(a);
    expect((await a.coordinator.done).manifest.version).to.equal(3);
    await Promise.all(sa.runs);

    const dirB = await tempDir('adaclip-b');
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

    const storeA = new FsCheckpointStore(dirA, { readOnly: true });
    const storeB = new FsCheckpointStore(dirB, { readOnly: true });
    for (let v = 1; v <= 3; v++) {
      expect(
        (await versionFile(dirB, v, 'adapter_model.safetensors')).equals(await versionFile(dirA, v, 'adapter_model.safetensors')),
        `v${v} adapter`,
      ).to.equal(true);
      expect((await versionFile(dirB, v, SERVER_STATE_FILE)).equals(await versionFile(dirA, v, SERVER_STATE_FILE)), `v${v} server state`).to.equal(true);
      expect((await storeB.read(v)).manifest.privacy, `v${v} privacy record`).to.deep.equal((await storeA.read(v)).manifest.privacy);
    }

    // The trajectory, from the records: each round clips to what its parent stored (the configured 1 first).
    const zDelta = updateNoiseMultiplier(Z, 1);
    let c = 1;
    const cs: number[] = [];
    for (let v = 1; v <= 3; v++) {
      const ck = await storeA.read(v);
      const p = ck.manifest.privacy!;
      const clip = p.adaptiveClipping!;
      expect(clip.clipNorm, `v${v} C_t`).to.equal(c);
      expect(p.clipNorm).to.equal(c);
      expect(clip.updateNoiseMultiplier).to.equal(zDelta);
      expect(p.sigma).to.equal(zDelta * c);
      expect(clip.nextClipNorm, `v${v} C_t+1`).to.equal(Math.fround(c * Math.exp(-0.2 * (clip.unclippedFraction - 0.5))));
      expect(Array.from(ck.serverState!.find((t) => t.name === CLIP_NORM_KEY)!.data)).to.deep.equal([clip.nextClipNorm]);
      // ε as if every round were a plain Gaussian at z: the count's noise is paid from it.
      expect(p.effectiveNoiseMultiplier).to.equal(Z);
      expect(p.epsilon, `v${v} ε`).to.equal(epsilonSpent([{ q: 1, z: Z, steps: v }], 1e-5));
      expect(ck.manifest.strategy).to.equal('fedadam+dp+ema');
      c = clip.nextClipNorm;
      cs.push(c);
    }
    expect(new Set([1, ...cs]).size, 'C moved every round').to.equal(4);
  });
});
