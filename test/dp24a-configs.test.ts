// Run 24a's arms (bench/quality-configs-run24a.ts): run 22's e4m50 pair with adaptive clipping on, as the paper
// advises it (γ 0.5, η_C 0.2, σ_b = m/20 = 2.5, C from 2); each arm loads as the coordinator runs it, differs from its
// run 22 arm in the adaptive keys alone and from its twin in z alone; ε 8 by round 150 stays the accountant's at z.
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { updateNoiseMultiplier } from '../coordinator/privacy/adaptive-clip';
import { RUN22_CONFIGS, RUN22_DELTA, RUN22_REGIMES, RUN22_Z8 } from '../bench/quality-configs-run22';
import { RUN24A_CONFIGS } from '../bench/quality-configs-run24a';
import { run22Cell } from '../bench/quality-run22-cell';
import { cellOverrides, deepMerge } from '../bench/quality-configs';
import { classicConfig } from './classic-defaults';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('quality run 24a: run 22’s e4m50 arms with adaptive clipping', () => {
  it('adds only the adaptive keys to run 22’s arms, the twin differing in z alone, and loads as the coordinator runs it', () => {
    const r = RUN22_REGIMES.e4m50;
    const adaptive = { adaptiveClipping: true, clipTargetQuantile: 0.5, clipLearningRate: 0.2, clipCountNoise: 2.5 };
    for (const arm of ['dp8', 'clip'] as const) {
      const c = RUN24A_CONFIGS[`x24a-e4m50-${arm}`];
      const run22 = RUN22_CONFIGS[`x22-e4m50-${arm}`];
      expect(c.overrides.privacy).to.deep.equal({ ...(run22.overrides.privacy as object), ...adaptive });
      expect({ ...c.overrides, privacy: 0 }).to.deep.equal({ ...run22.overrides, privacy: 0 });
      expect(c.regime).to.equal('e4m50');
      const cell = run22Cell({ regime: 'e4m50', arm, seed: 42, prefix: 'x24a' });
      expect(cell.config).to.equal(`x24a-e4m50-${arm}`);
      const cfg = classicConfig({
        overrides: deepMerge(
          { training: { localSteps: 1, batchSize: r.perSite, learningRate: 1 }, lora: { dropout: 0 }, rounds: { total: r.rounds } },
          cellOverrides(c),
        ),
      });
      expect([cfg.privacy.clipNorm, cfg.privacy.adaptiveClipping, cfg.privacy.clipCountNoise, cfg.privacy.sampling]).to.deep.equal([2, true, 2.5, 'poisson']);
    }
    const dp = RUN24A_CONFIGS['x24a-e4m50-dp8'].overrides.privacy as Record<string, unknown>;
    const twin = RUN24A_CONFIGS['x24a-e4m50-clip'].overrides.privacy as Record<string, unknown>;
    expect(dp).to.deep.equal({ ...twin, noiseMultiplier: RUN22_Z8.e4m50 });
    // The update's noise for ε 8: z_Δ 0.7575 where run 22 used z 0.749; ε by round 150 is the same.
    expect(updateNoiseMultiplier(0.749, 2.5)).to.be.closeTo(0.757548, 1e-6);
    expect(epsilonSpent([{ q: r.cohort / r.sites, z: 0.749, steps: r.rounds }], RUN22_DELTA)).to.be.within(7.9, 8);
  });
});
