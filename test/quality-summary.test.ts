// The learning-quality benchmark's arithmetic (bench/quality.ts): best accuracy, its round, the final figure and
// the largest round-to-round drop after round 6, as bench/QUALITY.md reports them.
import { summariseCurve, summarise } from '../bench/quality';
import type { CellResult, QualityCell } from '../bench/quality-cell';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const curve = (accs: number[]) => accs.map((accuracy, round) => ({ round, accuracy, loss: 0, extra: {} }));

describe('quality benchmark summary', () => {
  it('ignores round 0, finds the first best round, and measures drops only after round 6', () => {
    //            r0    r1    r2    r3    r4    r5    r6    r7    r8    r9
    const c = curve([0.9, 0.5, 0.7, 0.6, 0.8, 0.8, 0.75, 0.85, 0.83, 0.85]);
    const s = summariseCurve(c);
    expect(s.best).to.equal(0.85);
    expect(s.bestRound).to.equal(7);
    expect(s.final).to.equal(0.85);
    // r2→r3 drops 0.1 and r5→r6 0.05 (both at or before round 6); after it only r7→r8: 0.02.
    expect(s.maxDrop).to.be.closeTo(0.02, 1e-12);
  });

  it('averages a local-only cell over its sites and reports each site', () => {
    const cell: QualityCell = {
      split: 'groups',
      seed: 1,
      splitSeed: 7,
      config: 'local',
      rounds: 2,
      clients: 2,
      localSteps: 1,
      batchSize: 1,
      learningRate: 1,
      testLimit: 1,
    };
    const r = (seed: number, a: number[], b: number[]): CellResult => ({
      cell: { ...cell, seed },
      ok: true,
      curves: [curve(a), curve(b)],
      backend: 'cpu',
      seconds: 0,
    });
    const [s] = summarise([r(1, [0, 0.6, 0.7], [0, 0.8, 0.7]), r(2, [0, 0.5, 0.5], [0, 0.9, 0.9])]);
    expect(s.seeds).to.equal(2);
    expect(s.perSiteBest).to.have.length(2);
    expect(s.perSiteBest![0]).to.be.closeTo(0.6, 1e-12);
    expect(s.perSiteBest![1]).to.be.closeTo(0.85, 1e-12);
    // Seed 1: sites' bests 0.7 and 0.8 → 0.75; seed 2: 0.5 and 0.9 → 0.7.
    expect(s.best.mean).to.be.closeTo(0.725, 1e-12);
    expect(s.best.min).to.be.closeTo(0.7, 1e-12);
    expect(s.best.max).to.be.closeTo(0.75, 1e-12);
  });
});
