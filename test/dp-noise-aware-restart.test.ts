// strategy.noiseAware's state across a coordinator restart (real gRPC, real SDK clients): a DP-FedAvg run over the
// noise-aware FedAdam stopped after version 1 and restarted on the same run directory commits versions 2 and 3 byte
// for byte as an uninterrupted run does: adapters and server-state.safetensors (m, v and the noise's running
// variance). The noise is drawn per round from a fixed seed here (production draws a fresh secret one), so both
// runs add the same noise in the same round. The run keeps the EMA average too (strategy.ema, as the dp8 recipe
// does), so each manifest records the strategy as what ran: `fedadam+dp+ema`.
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { FedAdam, NOISE_KEY } from '../coordinator/strategy/fedopt';
import { dpRunTwice } from './dp-restart-kit';
import { restartSuite } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

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

describe('noise-aware FedAdam state across a coordinator restart (real gRPC)', function () {
  this.timeout(120_000);
  const suite = restartSuite();

  it('versions 2 and 3 after a stop and restart equal an uninterrupted run byte for byte, the noise average included', async () => {
    const { dirA } = await dpRunTwice(suite, 'noiseaware', {
      strategy: STRATEGY,
      privacy: PRIVACY,
      inner: () => new FedAdam(STRATEGY),
      dp: PRIVACY,
      k: [0.3, -0.1],
    });
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
