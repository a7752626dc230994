// privacy.targetEpsilon (coordinator/privacy/target.ts): loadConfig derives z from the target (the planner's smallest
// z on a 0.001 grid at the run's q, δ and rounds.total) and makes the target the budget when none is set; giving z as
// well, a target without privacy.enabled, or one no z reaches is refused; a configuration built in code with a z its
// target does not derive is refused when the coordinator starts; over real gRPC a run under a target commits its
// rounds at the derived z and ends within the target.
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { loadConfig } from '../coordinator/config';
import { epsilonAfter, noiseForEpsilon } from '../coordinator/privacy/plan';
import { withPrivacy } from '../coordinator/privacy/wrap';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { StepTrainer } from './dp-restart-kit';
import { startCoordinator, tempDir } from './harness';
import { restartSuite, startRestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SAMPLED = { enabled: true, sampling: 'poisson', samplingRate: 0.0432526, minPopulation: 1156 };
const refusal = (overrides: Record<string, unknown>, env?: NodeJS.ProcessEnv): string => {
  try {
    loadConfig({ overrides, env });
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('accepted');
};

describe('privacy.targetEpsilon: z derived from an ε target', function () {
  this.timeout(60_000);
  const suite = restartSuite();

  it('derives z at the run’s q and rounds, and makes the target the budget unless one is set', () => {
    const sampled = loadConfig({ overrides: { rounds: { total: 150, minUpdates: 2 }, privacy: { ...SAMPLED, targetEpsilon: 8 } } });
    expect(sampled.privacy).to.deep.include({ noiseMultiplier: 0.749, epsilonBudget: 8, targetEpsilon: 8 });
    const plain = loadConfig({ overrides: { rounds: { total: 150 }, privacy: { enabled: true, targetEpsilon: 8, epsilonBudget: 9 } } });
    expect(plain.privacy).to.deep.include({ noiseMultiplier: 7.81, epsilonBudget: 9 });
    const viaEnv = loadConfig({ env: { FEDTUNE_PRIVACY_ENABLED: 'true', FEDTUNE_PRIVACY_TARGET_EPSILON: '8', FEDTUNE_ROUNDS_TOTAL: '150' } });
    expect(viaEnv.privacy.noiseMultiplier).to.equal(7.81);
    // Off (0), z is privacy.noiseMultiplier as configured.
    expect(loadConfig({ overrides: { privacy: { enabled: true, noiseMultiplier: 2 } } }).privacy).to.deep.include({ noiseMultiplier: 2, epsilonBudget: 0 });
  });

  it('refuses z given beside the target, a target without DP, and a target no z reaches', () => {
    expect(refusal({ privacy: { enabled: true, targetEpsilon: 8, noiseMultiplier: 1 } })).to.contain(
      'set privacy.noiseMultiplier or privacy.targetEpsilon, not both: the target derives z',
    );
    expect(refusal({ privacy: { enabled: true, targetEpsilon: 8 } }, { FEDTUNE_PRIVACY_NOISE_MULTIPLIER: '1' })).to.contain('not both');
    expect(refusal({ privacy: { targetEpsilon: 8 } })).to.contain('privacy.targetEpsilon (8) needs privacy.enabled');
    expect(refusal({ rounds: { total: 600 }, privacy: { enabled: true, targetEpsilon: 0.001 } })).to.match(
      /privacy.targetEpsilon 0.001 by rounds.total 600 cannot be met: (no noise multiplier up to 10000|it needs z [\d.]+, above the bound)/,
    );
    expect(refusal({ privacy: { enabled: true, targetEpsilon: -1 } })).to.contain('privacy.targetEpsilon');
  });

  it('a configuration built in code with another z is refused when the coordinator starts', () => {
    const cfg = loadConfig({ overrides: { rounds: { total: 150 }, privacy: { enabled: true, targetEpsilon: 8 } } });
    expect(() => withPrivacy({ ...cfg, privacy: { ...cfg.privacy, noiseMultiplier: 1 } }, new FedAvg())).to.throw(
      'invalid configuration: privacy.targetEpsilon 8 derives privacy.noiseMultiplier 7.81; the configuration has 1 (loadConfig resolves it)',
    );
    // Off the 0.001 grid, within ε but not the target's z: refused too.
    expect(() => withPrivacy({ ...cfg, privacy: { ...cfg.privacy, noiseMultiplier: 7.8105 } }, new FedAvg())).to.throw(
      'privacy.targetEpsilon 8 derives privacy.noiseMultiplier 7.81; the configuration has 7.8105',
    );
    expect(() => withPrivacy(cfg, new FedAvg())).to.not.throw();
  });

  it('over gRPC: every round at the derived z, ε after the last within the target, the target stamped as the budget', async () => {
    const runDir = await tempDir('dp-target');
    suite.dirs.push(runDir);
    const z = noiseForEpsilon({ samplingRate: 1, delta: 1e-5 }, 3, 20);
    const h = await startCoordinator(runDir, { total: 3 }, { privacy: { enabled: true, clipNorm: 1, targetEpsilon: 20 } });
    suite.coordinators.push(h.coordinator);
    const sites = startRestartSites(h.address, [new StepTrainer(0.3), new StepTrainer(-0.1)], suite.clients);
    const final = await h.coordinator.done;
    await sites.stop();
    expect(final.manifest.version).to.equal(3);
    const store = new FsCheckpointStore(runDir, { readOnly: true });
    for (let v = 1; v <= 3; v++) {
      const p = (await store.read(v)).manifest.privacy!;
      expect(p, `v${v}`).to.deep.include({ noiseMultiplier: z, epsilonBudget: 20, rounds: v });
      expect(p.epsilon).to.equal(epsilonAfter({ samplingRate: 1, delta: 1e-5 }, z, v));
    }
    expect(final.manifest.privacy!.epsilon!).to.be.at.most(20);
    expect(epsilonAfter({ samplingRate: 1, delta: 1e-5 }, Math.round((z - 0.001) * 1000) / 1000, 3)).to.be.above(20);
  });
});
