// privacy.sampling 'poisson' (coordinator/privacy/sampling.ts) without a network: the keyed-hash draw against its
// exact expectation (seeded secret, bounds of 4 standard deviations), a site's coin independent of everything but
// (secret, run, round, site), the secret created once and drawn from identically by a second coordinator on the
// same run directory, the ledger charging the configured q (ε equal to the accountant's), and the configurations
// the mode cannot make honest refused with a clear message.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../coordinator/config';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { PrivacyLedger } from '../coordinator/privacy/ledger';
import { loadOrCreateSamplingSecret, poissonSample, sampledCohort, samplingKeyFile, siteCoin } from '../coordinator/privacy/sampling';
import { RoundPrivacy } from '../coordinator/round-privacy';
import { classicConfig } from './classic-defaults';
import { tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SECRET = Buffer.alloc(32, 7);
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `c-${String(i).padStart(4, '0')}`);

describe('DP Poisson sampling: the draw, the secret, the charge, the refusals', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it('includes each site with probability q, independently across sites and rounds (exact expectations, 4σ bounds)', () => {
    const N = 1000;
    const R = 200;
    const q = 0.05;
    const pool = ids(N);
    const rounds = Array.from({ length: R }, (_, r) => new Set(poissonSample(SECRET, 'run-s', r + 1, pool, q)));
    const sizes = rounds.map((s) => s.size);
    // Total inclusions: Binomial(N·R, q).
    const total = sizes.reduce((a, b) => a + b, 0);
    expect(Math.abs(total - N * R * q)).to.be.below(4 * Math.sqrt(N * R * q * (1 - q)));
    // A round's size has variance N·q(1−q) (47.5); its sample variance over 200 rounds has relative sd √(2/199) ≈ 0.1.
    const mean = total / R;
    const variance = sizes.reduce((a, s) => a + (s - mean) ** 2, 0) / (R - 1);
    expect(variance / (N * q * (1 - q))).to.be.within(1 - 4 * 0.1, 1 + 4 * 0.1);
    // Consecutive rounds share N·q² sites in expectation: the coins of one round do not repeat the last.
    let overlap = 0;
    for (let r = 1; r < R; r++) for (const id of rounds[r]) if (rounds[r - 1].has(id)) overlap++;
    const pairs = (R - 1) * N;
    expect(Math.abs(overlap - pairs * q * q)).to.be.below(4 * Math.sqrt(pairs * q * q * (1 - q * q)));
    // Each site's own frequency: Binomial(R, q) per site, so Σ (k − Rq)² / (Rq(1−q)) is χ² with N degrees of freedom.
    const perSite = new Map<string, number>();
    for (const s of rounds) for (const id of s) perSite.set(id, (perSite.get(id) ?? 0) + 1);
    const chi2 = pool.reduce((a, id) => a + ((perSite.get(id) ?? 0) - R * q) ** 2 / (R * q * (1 - q)), 0);
    expect(Math.abs(chi2 - N)).to.be.below(4 * Math.sqrt(2 * N));
  });

  it("decides a site's coin from (secret, run, round, site) alone: not the pool, its order, nor the attempt; q = 1 takes all", () => {
    const pool = ids(60);
    const all = poissonSample(SECRET, 'run-s', 3, pool, 0.4);
    expect(poissonSample(SECRET, 'run-s', 3, [...pool].reverse().concat(pool), 0.4)).to.deep.equal(all);
    // A site's membership does not depend on who else is connected.
    const half = pool.filter((_, i) => i % 2 === 0);
    expect(poissonSample(SECRET, 'run-s', 3, half, 0.4)).to.deep.equal(all.filter((id) => half.includes(id)));
    // Another secret, run or round draws anew (the public run id and seeds alone predict nothing).
    expect(poissonSample(Buffer.alloc(32, 8), 'run-s', 3, pool, 0.4)).to.not.deep.equal(all);
    expect(poissonSample(SECRET, 'run-t', 3, pool, 0.4)).to.not.deep.equal(all);
    expect(poissonSample(SECRET, 'run-s', 4, pool, 0.4)).to.not.deep.equal(all);
    expect(poissonSample(SECRET, 'run-s', 3, pool, 1)).to.deep.equal([...pool].sort());
    for (const id of pool) expect(siteCoin(SECRET, 'run-s', 3, id)).to.be.within(0, 1 - 2 ** -53);
    expect(() => poissonSample(SECRET, 'run-s', 3, pool, 0)).to.throw(RangeError);
  });

  it('creates the secret once, owner-only; a second coordinator on the same run directory draws the same sample', async () => {
    const runDir = await tempDir('dpsample-secret');
    dirs.push(runDir);
    const config = classicConfig({
      overrides: { run: { dir: runDir }, privacy: { enabled: true, sampling: 'poisson', samplingRate: 0.3, minPopulation: 10 } },
    });
    const a = new RoundPrivacy(config);
    await a.load(null);
    const file = samplingKeyFile(runDir);
    expect(file.startsWith(path.join(runDir, 'keys'))).to.equal(true);
    expect((await fs.stat(file)).mode & 0o777).to.equal(0o600);
    const before = await fs.readFile(file);
    const b = new RoundPrivacy(config);
    await b.load(null);
    expect((await fs.readFile(file)).equals(before)).to.equal(true);
    const pool = ids(40);
    for (let r = 1; r <= 5; r++) {
      const da = a.draw(r, pool);
      expect(b.draw(r, [...pool].reverse())).to.deep.equal(da);
      expect(da.ids).to.deep.equal(poissonSample(await loadOrCreateSamplingSecret(file), config.run.id, r, pool, 0.3));
      expect(da.cohort).to.deep.equal({ method: 'poisson', rate: 0.3, population: 40, denominator: 0.3 * 40 });
    }
    expect(a.minConnected()).to.equal(10);
  });

  it('charges a sampled round at its q (ε equals the accountant’s), q = 1 otherwise, and stops before a round past the budget', () => {
    const cfg = { clipNorm: 1, noiseMultiplier: 0.9, delta: 1e-5, epsilonBudget: 0 };
    const q = 0.05;
    const ledger = new PrivacyLedger(cfg, null);
    const cohort = sampledCohort(q, 400);
    let rec = ledger.record();
    for (let t = 1; t <= 30; t++) rec = ledger.charge(0.9, 'coordinator', cohort);
    expect(rec.epsilon).to.equal(epsilonSpent([{ q, z: 0.9, steps: 30 }], 1e-5));
    expect(rec).to.deep.include({ samplingRate: q, rounds: 30, sampling: { method: 'poisson', rate: q, population: 400, denominator: 20 } });
    expect(rec.history).to.deep.equal([{ samplingRate: q, noiseMultiplier: 0.9, rounds: 30 }]);
    // A round charged at q = 1 (privacy.sampling 'selection') costs far more, and the record says q = 1.
    const mixed = ledger.charge(0.9, 'coordinator');
    expect(mixed.samplingRate).to.equal(1);
    expect(mixed.sampling).to.equal(undefined);
    expect(mixed.epsilon).to.equal(
      epsilonSpent(
        [
          { q, z: 0.9, steps: 30 },
          { q: 1, z: 0.9, steps: 1 },
        ],
        1e-5,
      ),
    );
    // The budget check prices the next round at the rate it will be charged.
    const e = (t: number): number => epsilonSpent([{ q, z: 0.9, steps: t }], 1e-5);
    const budgeted = new PrivacyLedger({ ...cfg, epsilonBudget: (e(30) + e(31)) / 2 }, null);
    for (let t = 1; t <= 30; t++) {
      expect(budgeted.budgetStop(t, 0.9, q)).to.equal(null);
      budgeted.charge(0.9, 'coordinator', cohort);
    }
    expect(budgeted.budgetStop(31, 0.9, q)).to.match(/^privacy budget: round 31 would take ε from /);
  });

  it('refuses what it cannot make honest, naming the keys', () => {
    const bad = (overrides: Record<string, unknown>): string => {
      try {
        classicConfig({ overrides });
      } catch (e) {
        expect(e).to.be.instanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('accepted');
    };
    const dp = { enabled: true, sampling: 'poisson', samplingRate: 0.1, minPopulation: 100 };
    expect(bad({ privacy: { ...dp, enabled: false } })).to.contain("privacy.sampling 'poisson' needs privacy.enabled");
    expect(bad({ privacy: dp, secagg: { enabled: true }, rounds: { minUpdates: 3, minClients: 3 } })).to.contain(
      "privacy.sampling 'poisson' cannot run with secagg.enabled",
    );
    expect(bad({ privacy: dp, evaluation: { enabled: true, sites: 'participants' } })).to.contain("evaluation.sites 'participants'");
    expect(bad({ privacy: { ...dp, minPopulation: 10 } })).to.contain(
      'privacy.samplingRate × privacy.minPopulation (0.1 × 10 = 1) must be at least rounds.minUpdates (2)',
    );
    expect(bad({ privacy: { enabled: true, samplingRate: 0.5 } })).to.contain("privacy.samplingRate (0.5) applies only with privacy.sampling 'poisson'");
    expect(bad({ privacy: { ...dp, samplingRate: 0 } })).to.contain('privacy.samplingRate: must be a number in (0, 1]');
    expect(bad({ privacy: { ...dp, samplingRate: 1.5 } })).to.contain('privacy.samplingRate: must be a number in (0, 1]');
    expect(bad({ privacy: { ...dp, samplingRate: Number.NaN } })).to.contain('privacy.samplingRate');
    expect(bad({ privacy: { ...dp, minPopulation: 0 } })).to.contain('privacy.minPopulation');
    expect(bad({ privacy: { ...dp, sampling: 'bernoulli' } })).to.contain('privacy.sampling: must be one of the possible values: ["selection","poisson"]');
    // Accepted: with evaluation by every connected site, and q = 1 (everyone, fixed denominator N).
    expect(classicConfig({ overrides: { privacy: dp, evaluation: { enabled: true, sites: 'connected' } } }).privacy.sampling).to.equal('poisson');
    expect(classicConfig({ overrides: { privacy: { ...dp, samplingRate: 1, minPopulation: 2 } } }).privacy.samplingRate).to.equal(1);
  });
});
