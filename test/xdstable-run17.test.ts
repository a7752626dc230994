// Run 17 of the quality benchmark (bench/quality-configs-run17.ts, bench/QUALITY.md "Run 17"): the DP arm's z spends
// at most ε 8 by the run's last round at the cohort's rate, the twins differ in the noise alone, the configurations
// load as the coordinator runs them, the held-out scoring schedule, and the per-seed table the run reports.
import { RUN17_CONFIGS, RUN17_ROUNDS, RUN17_Z8, RUN17_CLIP, RUN17_ETA } from '../bench/quality-configs-run17';
import { XD_POISSON } from '../bench/quality-configs-run15';
import { sampledEpsilon } from '../bench/quality-cohort';
import { cellOverrides, deepMerge } from '../bench/quality-configs';
import { isScoredRound } from '../bench/quality-cell';
import { run17Table, seedRow } from '../bench/quality-run17-table';
import type { RoundPoint } from '../bench/quality-cell';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const point = (round: number, accuracy: number, extra: Record<string, number> = {}): RoundPoint => ({ round, accuracy, loss: 1, extra });

describe('quality run 17 (bench/quality-configs-run17.ts)', () => {
  it("z for ε 8 is the smallest on a 0.001 grid that keeps ε ≤ 8 at δ 1e-5 after the run's rounds at q = 50/1156", () => {
    const eps = sampledEpsilon(XD_POISSON, RUN17_Z8, RUN17_ROUNDS, 1e-5);
    expect(eps).to.be.at.most(8);
    expect(eps).to.be.above(7.95);
    expect(sampledEpsilon(XD_POISSON, RUN17_Z8 - 0.001, RUN17_ROUNDS, 1e-5)).to.be.above(8);
  });

  it('the DP arm and its noiseless twin differ in the noise multiplier alone; the plain arm drops DP-FedAvg alone', () => {
    const clip = RUN17_CONFIGS['xd17-clip'];
    const dp = RUN17_CONFIGS['xd17-dp8'];
    const plain = RUN17_CONFIGS['xd17-plain'];
    const strip = (o: Readonly<Record<string, unknown>>): Record<string, unknown> => {
      const { privacy: _p, ...rest } = o;
      return rest;
    };
    expect(strip(dp.overrides)).to.deep.equal(strip(clip.overrides));
    expect(strip(plain.overrides)).to.deep.equal(strip(clip.overrides));
    expect(dp.overrides.privacy).to.deep.equal({ ...(clip.overrides.privacy as object), noiseMultiplier: RUN17_Z8 });
    expect(plain.overrides.privacy).to.equal(undefined);
    for (const c of [clip, dp, plain]) expect([c.learningRate, c.localSteps, c.clients, c.cohort]).to.deep.equal([1, 1, XD_POISSON.slots, XD_POISSON]);
  });

  it('every run 17 configuration loads as the coordinator would run it', () => {
    for (const [name, c] of Object.entries(RUN17_CONFIGS)) {
      const cfg = classicConfig({
        overrides: deepMerge(
          { training: { localSteps: 1, batchSize: 4, learningRate: 1 }, lora: { dropout: 0 }, rounds: { total: RUN17_ROUNDS } },
          cellOverrides(c),
        ),
      });
      expect(cfg.lora.r, name).to.equal(1);
      expect(cfg.lora.targetModules, name).to.deep.equal(['c_attn']);
      expect(cfg.lora.aggregation, name).to.equal('fedit');
      expect(cfg.training.optimizer, name).to.equal('sgd');
      expect(cfg.training.momentum, name).to.equal(0);
      expect(cfg.strategy.name, name).to.equal('fedadam');
      expect(cfg.strategy.serverLearningRate, name).to.equal(RUN17_ETA);
      expect(cfg.strategy.biasCorrection, name).to.equal(true);
      expect(cfg.strategy.serverSchedule, name).to.equal('cosine');
      expect(cfg.privacy.enabled, name).to.equal(name !== 'xd17-plain');
      if (cfg.privacy.enabled) expect(cfg.privacy.clipNorm, name).to.equal(RUN17_CLIP);
    }
  });

  it('scores every 2nd round, each of the last 10 and the last', () => {
    const cell = { rounds: 150, evalEvery: 2, evalLast: 10 };
    const scored = Array.from({ length: 150 }, (_, i) => i + 1).filter((r) => isScoredRound(r, cell));
    expect(scored.filter((r) => r <= 140)).to.deep.equal(Array.from({ length: 70 }, (_, i) => 2 * (i + 1)));
    expect(scored.filter((r) => r > 140)).to.deep.equal([141, 142, 143, 144, 145, 146, 147, 148, 149, 150]);
    expect(isScoredRound(7, { rounds: 9, evalEvery: 20 })).to.equal(false);
    expect(isScoredRound(9, { rounds: 9, evalEvery: 20 })).to.equal(true);
    expect(isScoredRound(3, { rounds: 9 })).to.equal(true);
  });

  it('reports per seed the best, final, mean of the last rounds, largest drop, norms and ε, and DP minus noiseless seed by seed', () => {
    const curve = (accs: number[], eps?: number): RoundPoint[] => [
      point(0, 0.675),
      ...accs.map((a, i) => point(2 * (i + 1), a, { 'clients.update_norm': i + 1, ...(eps !== undefined ? { 'privacy.epsilon_sampled': eps } : {}) })),
    ];
    // rounds 2, 4, 6, 8, 10, 12 scored; the last 4 rounds of 12 are 9-12: rounds 10 and 12
    const a = seedRow('dp', 42, curve([0.7, 0.8, 0.9, 0.6, 0.85, 0.75], 7.98), 12, 4);
    expect(a).to.deep.include({ best: 0.9, bestRound: 6, final: 0.75, finalRound: 12, epsilon: 7.98, normEarly: 1.5, normLate: 5.5 });
    expect(a.lastMean).to.be.closeTo(0.8, 1e-12);
    expect(a.maxDrop).to.be.closeTo(0.3, 1e-12);
    expect(a.maxDropLate).to.be.closeTo(0.3, 1e-12); // the second half of 12 rounds: rounds > 6, so 6 → 8 counts
    // Had the run 20 rounds, its second half would start after round 10: only 10 → 12 (0.85 → 0.75) counts.
    expect(seedRow('dp', 42, curve([0.7, 0.8, 0.9, 0.6, 0.85, 0.75]), 20, 4).maxDropLate).to.be.closeTo(0.1, 1e-12);
    const b = seedRow('clip', 42, curve([0.7, 0.7, 0.8, 0.8, 0.8, 0.8]), 12, 4);
    expect(b.epsilon).to.equal(undefined);
    const t = run17Table([a, b], [['dp', 'clip']]);
    expect(t).to.include('| dp | 42 | 90.0 (6) | 75.0 (12) | 80.0 | 30.0 | 30.0 | 1.500 / 5.500 | 7.98 |');
    expect(t).to.include('| 42 | +10.0 | −5.0 | +0.0 |');
  });
});
