// Run 18 of the quality benchmark (bench/quality-configs-run18.ts, bench/QUALITY.md "Run 18"): every DP arm spends at
// most ε 8 by the run's last round at its cohort's rate and differs from its noiseless twin in z alone, and every
// configuration loads as the coordinator runs it (FedAdam with the noise-aware correction, the EMA, FFA or FedIT).
import { RUN18_CONFIGS, RUN18_ROUNDS, RUN18_Z8, RUN18_EMA, XD100 } from '../bench/quality-configs-run18';
import { XD_POISSON } from '../bench/quality-configs-run15';
import { sampledEpsilon } from '../bench/quality-cohort';
import { cellOverrides, deepMerge } from '../bench/quality-configs';
import { classicConfig } from './classic-defaults';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Each DP arm and its twin (the arm named `-clip` in its family). */
const TWINS = Object.keys(RUN18_CONFIGS)
  .filter((n) => /-dp8/.test(n))
  .map((n) => [n, n.replace(/-dp8.*$/, '-clip')] as const);

describe('quality run 18 (bench/quality-configs-run18.ts)', () => {
  it("z for ε 8 is the smallest on a 0.001 grid that keeps ε ≤ 8 at δ 1e-5 after the run's rounds, for cohorts of 50 and 100", () => {
    for (const [spec, z] of [
      [XD_POISSON, RUN18_Z8[50]],
      [XD100, RUN18_Z8[100]],
    ] as const) {
      expect(sampledEpsilon(spec, z, RUN18_ROUNDS, 1e-5)).to.be.within(7.95, 8);
      expect(sampledEpsilon(spec, z - 0.001, RUN18_ROUNDS, 1e-5)).to.be.above(8);
    }
  });

  it('each DP arm differs from its noiseless twin in z alone (and the plain-Adam arm in the noise-aware flag too)', () => {
    expect(TWINS.length).to.be.at.least(4);
    for (const [dp, twin] of TWINS) {
      const a = RUN18_CONFIGS[dp];
      const b = RUN18_CONFIGS[twin];
      expect(b, twin).to.not.equal(undefined);
      const privacy = (c: typeof a): Record<string, unknown> => c.overrides.privacy as Record<string, unknown>;
      const strategy = (c: typeof a): Record<string, unknown> => c.overrides.strategy as Record<string, unknown>;
      expect(privacy(a), dp).to.deep.equal({ ...privacy(b), noiseMultiplier: privacy(a).noiseMultiplier });
      expect(privacy(b).noiseMultiplier, twin).to.equal(1e-6);
      const z = a.cohort === XD100 ? RUN18_Z8[100] : RUN18_Z8[50];
      expect(privacy(a).noiseMultiplier, dp).to.equal(z);
      const aware = !dp.endsWith('-adam');
      expect(strategy(a), dp).to.deep.equal({ ...strategy(b), noiseAware: aware });
      expect({ ...a.overrides, privacy: 0, strategy: 0 }, dp).to.deep.equal({ ...b.overrides, privacy: 0, strategy: 0 });
      expect([a.learningRate, a.localSteps, a.clients, a.cohort], dp).to.deep.equal([b.learningRate, b.localSteps, b.clients, b.cohort]);
    }
  });

  it('every run 18 configuration loads as the coordinator would run it', () => {
    for (const [name, c] of Object.entries(RUN18_CONFIGS)) {
      const cfg = classicConfig({
        overrides: deepMerge(
          { training: { localSteps: 1, batchSize: 4, learningRate: 1 }, lora: { dropout: 0 }, rounds: { total: RUN18_ROUNDS } },
          cellOverrides(c),
        ),
      });
      expect(cfg.lora.r, name).to.equal(1);
      expect(cfg.lora.aggregation, name).to.equal(name.startsWith('x18f') ? 'ffa' : 'fedit');
      expect(cfg.strategy.name, name).to.equal('fedadam');
      expect(cfg.strategy.biasCorrection, name).to.equal(true);
      expect(cfg.strategy.noiseAware, name).to.equal(!name.endsWith('-adam'));
      expect(cfg.strategy.ema, name).to.equal(RUN18_EMA);
      expect(cfg.privacy.enabled, name).to.equal(true);
      expect(c.clients, name).to.equal(c.cohort!.slots);
    }
  });
});
