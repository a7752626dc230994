// Run 22 of the quality benchmark (bench/quality-configs-run22.ts, bench/quality-sampled-cell.ts, bench/QUALITY.md
// "Run 22"): the two arms of a seed share the coordinator's sampling secret and run id, so the product draws the same
// cohorts for both; each DP arm spends at most ε 8 at its regime's rate and differs from its twin in z alone; the
// table pairs the arms seed by seed.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { loadOrCreateSamplingSecret, poissonSample, samplingKeyFile } from '../coordinator/privacy/sampling';
import { clientIdFor } from '../coordinator/registry';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { RUN22_DELTA, RUN22_REGIMES, RUN22_Z8, zForEpsilon, type Run22RegimeName } from '../bench/quality-configs-run22';
import { pairedRunId, pairedSamplingSecret, writeSamplingSecret } from '../bench/quality-sampled-cell';
import { PAIRED_ARMS, run22Cell } from '../bench/quality-run22-cell';
import { RUN24_EMA, RUN24_REGIMES, RUN24_Z8, type Run24RegimeName } from '../bench/quality-configs-run24';
import { pairedSummary, run22Table, t975 } from '../bench/quality-run22-table';
import { run25Table } from '../bench/quality-run25-table';
import { seedRow } from '../bench/quality-run17-table';
import { cellOverrides, deepMerge } from '../bench/quality-configs';
import type { RoundPoint } from '../bench/quality-cell';
import { classicConfig } from './classic-defaults';
import { tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const REGIMES = Object.keys(RUN22_REGIMES) as Run22RegimeName[];
/** Every paired regime of runs 22 and 24, with its z for ε 8 and the EMA its arms are scored under. */
const PAIRED = [
  ...REGIMES.map((name) => ({ prefix: 'x22' as const, name, r: RUN22_REGIMES[name], z: RUN22_Z8[name], ema: 0.95 })),
  ...(Object.keys(RUN24_REGIMES) as Run24RegimeName[]).map((name) => ({
    prefix: 'x24' as const,
    name,
    r: RUN24_REGIMES[name],
    z: RUN24_Z8[name],
    ema: RUN24_EMA,
  })),
];

describe('quality run 22: paired sampling, ε 8 per regime, the paired table', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it("z for ε 8 is the smallest on a 0.001 grid that keeps ε ≤ 8 at δ 1e-5 after each regime's rounds at q = m/N", () => {
    for (const { name, r, z } of PAIRED) {
      const eps = (x: number): number => epsilonSpent([{ q: r.cohort / r.sites, z: x, steps: r.rounds }], RUN22_DELTA);
      expect(z, name).to.equal(zForEpsilon(r));
      expect(eps(z), name).to.be.within(7.9, 8);
      expect(eps(z - 0.001), name).to.be.above(8);
    }
    // Run 21's regime is run 17's z.
    expect(RUN22_Z8.e4m50).to.equal(0.749);
  });

  it('each DP arm differs from its twin in z alone, samples at its regime’s q over its population, and loads as the coordinator runs it', () => {
    for (const { prefix, name, r, z, ema } of PAIRED) {
      const dp = PAIRED_ARMS[`${prefix}-${name}-dp8`];
      const twin = PAIRED_ARMS[`${prefix}-${name}-clip`];
      const privacy = (c: typeof dp): Record<string, unknown> => c.overrides.privacy as Record<string, unknown>;
      expect(privacy(dp), name).to.deep.equal({ ...privacy(twin), noiseMultiplier: z });
      expect(privacy(twin).noiseMultiplier, name).to.equal(1e-6);
      expect({ ...dp.overrides, privacy: 0 }, name).to.deep.equal({ ...twin.overrides, privacy: 0 });
      const cell = run22Cell({ prefix, regime: name, arm: 'dp8', seed: 42 });
      expect([cell.clients, cell.batchSize, cell.rounds, cell.localSteps, cell.learningRate], name).to.deep.equal([r.sites, r.perSite, r.rounds, 1, 1]);
      const cfg = classicConfig({
        overrides: deepMerge(
          { training: { localSteps: 1, batchSize: r.perSite, learningRate: 1 }, lora: { dropout: 0 }, rounds: { total: r.rounds } },
          cellOverrides(dp),
        ),
      });
      expect([cfg.privacy.sampling, cfg.privacy.samplingRate, cfg.privacy.minPopulation, cfg.privacy.clipNorm], name).to.deep.equal([
        'poisson',
        r.cohort / r.sites,
        r.sites,
        2,
      ]);
      expect([cfg.strategy.name, cfg.strategy.noiseAware, cfg.strategy.ema, cfg.lora.r], name).to.deep.equal(['fedadam', true, ema, 1]);
      expect(cfg.strategy.serverSchedule, name).to.equal('cosine');
    }
  });

  it("gives both arms of a seed the same secret, which the coordinator's own loader reads back, so they draw the same cohorts", async () => {
    expect(pairedSamplingSecret(42)).to.have.length(32);
    expect(pairedSamplingSecret(42)).to.deep.equal(pairedSamplingSecret(42));
    expect(pairedSamplingSecret(42)).to.not.deep.equal(pairedSamplingSecret(43));
    const r = RUN22_REGIMES.e1m100;
    const ids = Array.from({ length: r.sites }, (_, i) => clientIdFor(`site-${i}`));
    const draws: string[][][] = [];
    for (const arm of ['dp8', 'clip']) {
      const runDir = await tempDir(`dp22-${arm}-`);
      dirs.push(runDir);
      await writeSamplingSecret(runDir, pairedSamplingSecret(42));
      expect((await fs.stat(samplingKeyFile(runDir))).mode & 0o777).to.equal(0o600);
      expect(path.dirname(samplingKeyFile(runDir))).to.equal(path.join(runDir, 'keys'));
      const secret = await loadOrCreateSamplingSecret(samplingKeyFile(runDir));
      draws.push(Array.from({ length: 10 }, (_, k) => poissonSample(secret, pairedRunId(42), k + 1, ids, r.cohort / r.sites)));
    }
    expect(draws[0]).to.deep.equal(draws[1]);
    // The draws are the sampled Gaussian's: 10 rounds of Binomial(4,624, 100/4,624), total within 4σ of 1,000.
    const total = draws[0].reduce((a, d) => a + d.length, 0);
    expect(Math.abs(total - 10 * r.cohort)).to.be.below(4 * Math.sqrt(10 * r.cohort));
    // Another seed's arms draw other cohorts.
    const other = poissonSample(pairedSamplingSecret(43), pairedRunId(43), 1, ids, r.cohort / r.sites);
    expect(other).to.not.deep.equal(draws[0][0]);
  });

  it('pairs the arms seed by seed: differences, their mean ± sd and the draws compared', () => {
    const curve = (accs: number[]): RoundPoint[] => accs.map((a, i) => ({ round: i * 75, accuracy: a, loss: 1, extra: {} }));
    const cell = (arm: string, seed: number, accs: number[], sha: string) => {
      const config = `x22-e1m100-${arm}`;
      const c = { ...run22Cell({ regime: 'e1m100', arm: arm as 'dp8', seed }), config };
      return {
        regime: 'e1m100',
        arm,
        row: seedRow(config, seed, curve(accs), 150, 10),
        r: { cell: c, ok: true, curves: [curve(accs)], backend: 'test', seconds: 1, draws: { sha256: sha, siteRounds: 3 } },
      };
    };
    const md = run22Table(
      [
        cell('dp8', 42, [0.6, 0.7, 0.78], 'aa'),
        cell('clip', 42, [0.6, 0.8, 0.8], 'aa'),
        cell('dp8', 43, [0.6, 0.75, 0.7], 'bb'),
        cell('clip', 43, [0.6, 0.76, 0.74], 'cc'),
      ],
      [],
    );
    expect(md).to.contain('| e1m100 | 42 | yes | −2.0 | −2.0 | −2.0 |');
    expect(md).to.contain('| e1m100 | 43 | **no** | −1.0 | −4.0 | −4.0 |');
    // Mean of (−2, −1) on best: −1.5, sd 0.71; within 3 points on both.
    expect(md).to.match(
      /\| e1m100 \| \*\*mean ± sd\*\* \(2 pairs\) \| \| \*\*−1\.5\*\* ± 0\.7 .*within 3 on 2 of 2 \| \*\*−3\.0\*\* ± 1\.4 .*within 3 on 1 of 2/,
    );
  });

  it("run 25's table pairs adaptive DP with either twin across tables, and its interval takes t for the pairs it has", () => {
    const curve = (accs: number[]): RoundPoint[] => accs.map((a, i) => ({ round: i * 75, accuracy: a, loss: 1, extra: {} }));
    const row = (config: string, seed: number, accs: number[]) => seedRow(config, seed, curve(accs), 150, 10);
    const md = run25Table(
      [
        { seed: 47, rows: { dp: row('x24a-e4m50-dp8', 47, [0.6, 0.7, 0.68]), fixed: row('x22-e4m50-clip', 47, [0.6, 0.8, 0.8]) }, sameDraws: true },
        {
          seed: 42,
          rows: {
            dp: row('x24a-e4m50-dp8', 42, [0.6, 0.8, 0.8]),
            twin: row('x24a-e4m50-clip', 42, [0.6, 0.81, 0.8]),
            fixed: row('x22-e4m50-clip', 42, [0.6, 0.78, 0.78]),
          },
          sameDraws: false,
        },
      ],
      [],
    );
    // Sorted by seed; a missing twin reads –; DP − twin on best and on final.
    expect(md).to.contain('| 42 | 80.0 (75) | 81.0 | 78.0 | −1.0 | +0.0 | +2.0 | +2.0 | **no** |');
    expect(md).to.contain('| 47 | 70.0 (75) | – | 80.0 | – | – | −10.0 | −12.0 | yes |');
    // One pair with its own twin is no interval; two with the fixed-C twin: mean −4.0, sd 8.5, t(1) 12.706.
    expect(md).to.not.contain('| its own twin |');
    expect(md).to.contain('| the fixed-C twin | 2 | **−4.0** ± 8.5 (95%: −80.2 to +72.2); within 3 on 1 of 2 |');
    // t at 97.5%: the table to 30 degrees of freedom, then the bracket's lower end (a wider interval).
    expect([t975(1), t975(10), t975(11), t975(30), t975(35), t975(59), t975(200)]).to.deep.equal([12.706, 2.228, 2.201, 2.042, 2.042, 2.021, 1.98]);
    // 12 pairs of ±1 point around −3: sd 1.04, half-width 2.201 · 1.04 / √12 = 0.66.
    expect(pairedSummary(Array.from({ length: 12 }, (_, i) => (i % 2 ? -0.02 : -0.04)))).to.equal('**−3.0** ± 1.0 (95%: −3.7 to −2.3); within 3 on 6 of 12');
  });
});
