// Adaptive clipping's C across a coordinator restart (real gRPC, real SDK clients): a DP-FedAvg run with
// privacy.adaptiveClipping, stopped after version 1 and restarted on the same run directory, commits versions 2 and 3
// byte for byte as an uninterrupted run does: adapters, server-state.safetensors (C_t beside the noise-aware FedAdam's
// state and the EMA average) and the manifests' privacy records. Each manifest's C is the one its parent stored, its
// C_{t+1} the paper's step from the noised fraction it records, and its ε the accountant's at z (not z_Δ). The noise
// is drawn per round from a fixed seed here (production draws a fresh secret one), so both runs draw the same.
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { formatVersionTable } from '../coordinator/checkpoints/table';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { CLIP_NORM_KEY, updateNoiseMultiplier } from '../coordinator/privacy/adaptive-clip';
import { FedAdam } from '../coordinator/strategy/fedopt';
import { dpRunTwice } from './dp-restart-kit';
import { restartSuite } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

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

describe('adaptive clipping across a coordinator restart (real gRPC)', function () {
  this.timeout(120_000);
  const suite = restartSuite();

  it('versions 2 and 3 after a stop and restart equal an uninterrupted run byte for byte, C included; C moves by the recorded rule and ε is charged at z', async () => {
    const dp = { clipNorm: 1, noiseMultiplier: Z, adaptive: ADAPTIVE };
    const { dirA, dirB } = await dpRunTwice(suite, 'adaclip', {
      strategy: STRATEGY,
      privacy: PRIVACY,
      inner: () => new FedAdam(STRATEGY),
      dp,
      k: [0.3, -0.02],
    });
    const storeA = new FsCheckpointStore(dirA, { readOnly: true });
    const storeB = new FsCheckpointStore(dirB, { readOnly: true });
    for (let v = 1; v <= 3; v++) expect((await storeB.read(v)).manifest.privacy, `v${v} privacy record`).to.deep.equal((await storeA.read(v)).manifest.privacy);

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
    // `fedtune checkpoints list` shows each version's C_t (what its round clipped to) in its clip column.
    const table = formatVersionTable(await storeA.list()).split('\n');
    const col = table[0].split(/\s+/).indexOf('clip');
    expect(table.slice(2, 5).map((l) => l.split(/\s+/)[col])).to.deep.equal([1, ...cs.slice(0, 2)].map((x) => x.toPrecision(4)));
  });
});
