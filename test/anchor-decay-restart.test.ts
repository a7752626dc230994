// strategy.anchorDecay across a coordinator restart (real gRPC, real SDK clients): a DP-FedAvg run over FedAdam with
// the pull towards the starting adapter, stopped after version 1 and restarted on the same run directory, commits
// versions 2 and 3 byte for byte as an uninterrupted run does (adapters and server-state.safetensors: m, v, the
// noise's running variance and the anchor). The anchor every version stores is version 0's adapter, bit for bit.
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { AnchorStrategy } from '../coordinator/strategy/anchor';
import { FedAdam } from '../coordinator/strategy/fedopt';
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
  serverSchedule: 'cosine' as const,
  anchorDecay: 0.2,
  ema: 0.5,
};
const PRIVACY = { enabled: true, clipNorm: 1, noiseMultiplier: 0.5, delta: 1e-5 };

describe('the pull towards the starting adapter across a coordinator restart (real gRPC)', function () {
  this.timeout(120_000);
  const suite = restartSuite();

  it('versions 2 and 3 after a stop and restart equal an uninterrupted run byte for byte, the anchor included', async () => {
    const { dirA } = await dpRunTwice(suite, 'anchor', {
      strategy: STRATEGY,
      privacy: PRIVACY,
      inner: () => new AnchorStrategy(new FedAdam({ ...STRATEGY, roundsTotal: 3 }), 0.2, { serverSchedule: 'cosine', roundsTotal: 3 }),
      dp: PRIVACY,
      k: [0.3, -0.1],
    });
    const store = new FsCheckpointStore(dirA, { readOnly: true });
    const start = (await store.read(0)).adapter;
    for (let v = 1; v <= 3; v++) {
      const ck = await store.read(v);
      for (const t of start) {
        const a = ck.serverState!.find((s) => s.name === `anchor/${t.name}`);
        expect(a, `v${v} anchor/${t.name}`).to.not.equal(undefined);
        expect(
          Buffer.from(a!.data.buffer, a!.data.byteOffset, a!.data.byteLength).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)),
          `v${v} ${t.name}`,
        ).to.equal(true);
      }
      expect(ck.manifest.serverOptimizer).to.deep.include({ anchorDecay: 0.2, noiseAware: 1 });
      expect(ck.manifest.strategy, `v${v}`).to.equal('fedadam+anchor+dp+ema');
    }
  });
});
