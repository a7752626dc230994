// Planning a private run (coordinator/privacy/plan.ts, `fedtune privacy plan`): the smallest z on a 0.001 grid for a
// target ε (exact on the grid: ε(z) ≤ target < ε(z − 0.001)), the rounds a budget allows (exact: ε after k ≤ budget
// < ε after k + 1), both from the accountant the ledger charges rounds with; the benchmark's regimes' z reproduce;
// the command prints them for a configuration loaded as `fedtune coordinator` loads it, and refuses what it cannot plan.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { epsilonAfter, isSmallestNoise, noiseForEpsilon, roundsWithin } from '../coordinator/privacy/plan';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const RECIPE = path.resolve(__dirname, '..', '..', 'docs', 'recipes', 'dp8-cross-device.json5');
const fedtune = (...args: string[]): Promise<{ code: number; out: string; err: string }> =>
  promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 30_000 }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );
/** The benchmark's cross-device regime (bench/QUALITY.md runs 21-26): a Poisson cohort of 50 expected of 1,156 sites. */
const E4M50 = { samplingRate: 50 / 1156, delta: 1e-5 };

describe('privacy planning (fedtune privacy plan)', function () {
  this.timeout(60_000);

  it("reproduces the benchmark's noise multipliers, each exact on the 0.001 grid", () => {
    const cases: [number, number, number][] = [
      [50 / 1156, 150, 0.749],
      [50 / 1156, 300, 0.845],
      [100 / 1156, 150, 1.016],
      [100 / 4624, 150, 0.609],
    ];
    for (const [q, rounds, z] of cases) {
      const r = { samplingRate: q, delta: 1e-5 };
      expect(noiseForEpsilon(r, rounds, 8), `q ${q}, ${rounds} rounds`).to.equal(z);
      expect(epsilonAfter(r, z, rounds)).to.be.at.most(8);
      expect(epsilonAfter(r, Math.round((z - 0.001) * 1000) / 1000, rounds)).to.be.above(8);
      // The check without a search agrees: this z and no neighbour, on or off the grid.
      expect([z, z - 0.001, z + 0.001, z + 0.0005].map((x) => isSmallestNoise(r, rounds, 8, Math.round(x * 10000) / 10000))).to.deep.equal([
        true,
        false,
        false,
        false,
      ]);
    }
    // Without sampling (q = 1) the same ε over the same rounds needs ten times the noise.
    expect(noiseForEpsilon({ samplingRate: 1, delta: 1e-5 }, 150, 8)).to.equal(7.81);
  });

  it('the rounds a budget allows: ε after them within it, after one more past it', () => {
    const k = roundsWithin(E4M50, 0.749, 8);
    expect(k).to.equal(150);
    expect(epsilonAfter(E4M50, 0.749, k)).to.be.at.most(8);
    expect(epsilonAfter(E4M50, 0.749, k + 1)).to.be.above(8);
    expect(roundsWithin({ samplingRate: 1, delta: 1e-5 }, 0.749, 8)).to.equal(1);
    expect(roundsWithin({ samplingRate: 1, delta: 1e-5 }, 0.3, 8)).to.equal(0);
  });

  it('refuses a sampling rate, δ, round count, noise or target it cannot plan', () => {
    expect(() => epsilonAfter({ samplingRate: 0, delta: 1e-5 }, 1, 10)).to.throw(/sampling rate 0 must lie in \(0, 1\]/);
    expect(() => epsilonAfter({ samplingRate: 1.5, delta: 1e-5 }, 1, 10)).to.throw(/sampling rate 1.5/);
    expect(() => epsilonAfter({ samplingRate: 0.1, delta: 1 }, 1, 10)).to.throw(/delta 1 must lie in \(0, 1\)/);
    expect(() => epsilonAfter(E4M50, 1, 1.5)).to.throw(/rounds 1.5 must be an integer/);
    expect(() => epsilonAfter(E4M50, 0, 10)).to.throw(/noise multiplier 0 must be positive/);
    expect(() => noiseForEpsilon(E4M50, 10, 0)).to.throw(/target ε 0 must be positive/);
    expect(() => noiseForEpsilon({ samplingRate: 1, delta: 1e-5 }, 10, 1e-9)).to.throw(/no noise multiplier up to 10000 keeps ε ≤ 1e-9/);
    expect(() => roundsWithin(E4M50, 1, -1)).to.throw(/ε budget -1 must be positive/);
  });

  it('the command: the dp8 recipe with the product sampling its cohort, as text and as JSON', async () => {
    const sampled = ['--config', RECIPE, '--privacy.sampling', 'poisson', '--privacy.samplingRate', '0.0432526', '--privacy.minPopulation', '1156'];
    const text = await fedtune('privacy', 'plan', ...sampled, '--epsilon', '8');
    expect(text.code, text.err).to.equal(0);
    expect(text.out).to.equal(
      [
        'q 0.0432526 (privacy.sampling poisson: each round is charged at privacy.samplingRate), z 0.749, δ 0.00001',
        'ε after rounds.total (150): 7.98',
        'ε ≤ 8 by round 150 needs z ≥ 0.749 (privacy.noiseMultiplier)',
        '',
      ].join('\n'),
    );
    const json = await fedtune('privacy', 'plan', ...sampled, '--privacy.epsilonBudget', '8', '--json');
    expect(json.code, json.err).to.equal(0);
    const r = { samplingRate: 0.0432526, delta: 1e-5 };
    expect(JSON.parse(json.out)).to.deep.equal({
      samplingRate: 0.0432526,
      sampling: 'poisson',
      noiseMultiplier: 0.749,
      delta: 1e-5,
      rounds: 150,
      epsilon: epsilonAfter(r, 0.749, 150),
      epsilonBudget: 8,
      roundsWithinBudget: roundsWithin(r, 0.749, 8),
      target: { epsilon: 8, noiseMultiplier: 0.749 },
      secureAggregation: false,
    });
  });

  it('the command: q = 1 without Poisson sampling, and the refusals', async () => {
    const plain = await fedtune('privacy', 'plan', '--config', RECIPE, '--privacy.epsilonBudget', '8');
    expect(plain.code, plain.err).to.equal(0);
    expect(plain.out).to.contain('q 1 (privacy.sampling selection: the manifest names who took part, so each round is charged at q = 1)');
    expect(plain.out).to.contain('the budget ε 8 allows 1 round at z 0.749');
    expect(plain.out).to.contain('ε ≤ 8 by round 150 needs z ≥ 7.81');
    const secagg = ['--privacy.enabled', 'true', '--privacy.noiseMultiplier', '1', '--secagg.enabled', 'true', '--rounds.minUpdates', '5'];
    const sa = await fedtune('privacy', 'plan', ...secagg, '--rounds.minClients', '5', '--rounds.total', '20', '--privacy.epsilonBudget', '50');
    expect(sa.code, sa.err).to.equal(0);
    expect(sa.out).to.contain('the budget ε 50 allows 41 rounds at z 1\n');
    expect(sa.out).to.contain('secagg.enabled: a round that ends with t of its n sites is charged z·√(t/n)');
    const off = await fedtune('privacy', 'plan');
    expect(off.code).to.equal(1);
    expect(off.err).to.equal('fedtune: privacy.enabled is off: the run adds no noise and spends no ε to plan\n');
    const bad = await fedtune('privacy', 'plan', '--config', RECIPE, '--epsilon', 'eight');
    expect(bad.code).to.equal(1);
    expect(bad.err).to.equal('fedtune: --epsilon eight: must be a positive number\n');
    const typo = await fedtune('privacy', 'plan', '--config', RECIPE, '--privacy.noiseMultiplyer', '1');
    expect(typo.code).to.equal(1);
    expect(typo.err).to.match(/^fedtune: invalid configuration: .*privacy\.noiseMultiplyer/);
  });
});
