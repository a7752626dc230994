// Run 28's table (bench/quality-run28-table.ts, bench/QUALITY.md "Run 28"): simulate's lines read back exactly,
// a cell cut short of the common round left out, and the row's figures computed from the rounds it keeps.
import { run28Cell, run28Rows, run28Table } from '../bench/quality-run28-table';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** simulate's output for a cell with these accuracies (%) from round 1, each round taking `s` seconds. */
const lines = (acc: number[], s = 20): string =>
  [
    'fedtune simulation: 5 sites, 9 rounds, strategy fedavg, …',
    'round 0 (initial adapter = base model): held-out loss 8.2731, accuracy 66.5%',
    ...acc.map((a, i) => `round ${i + 1}/9: 5 updates, train loss 0.5, held-out loss 0.4000, accuracy ${a.toFixed(1)}% → v${i + 1} (${s}.0 s)`),
  ].join('\n');

describe('bench: run 28 table (mixed LoRA ranks)', () => {
  it('reads a cell to the common round; its arm names the ranks, the default ones when the file name has none', () => {
    const c = run28Cell('q28/flora-43.txt', lines([67.5, 70, 80, 85, 86, 88, 84, 89, 90]), 8)!;
    expect(c).to.deep.equal({ arm: 'flora, ranks 4,16,16,16,16', seed: 43, accuracy: [67.5, 70, 80, 85, 86, 88, 84, 89], seconds: Array(8).fill(20) });
    expect(run28Cell('fedit-42-16_16_16_16_16.txt', lines([1, 2]), 2, '8,8')!.arm).to.equal('fedit, ranks 16,16,16,16,16');
    expect(run28Cell('fedit-42.txt', lines([1, 2]), 2, '2,8')!.arm).to.equal('fedit, ranks 2,8');
    expect(run28Cell('fedit-42.txt', lines([1, 2]), 3)).to.equal(undefined);
    expect(() => run28Cell('notes.txt', '', 1)).to.throw('notes.txt is not <arm>-<seed>[-<ranks>].txt');
  });

  it('a row: best and its round per seed, mean ± sd, the last round, the worst drop after round 6, the median round time', () => {
    const rows = run28Rows([
      run28Cell('ffa-42.txt', lines([60, 70, 80, 85, 86, 88, 84, 89], 10), 8)!,
      run28Cell('ffa-43.txt', lines([60, 70, 80, 85, 86, 90, 89, 87], 30), 8)!,
    ]);
    expect(rows).to.have.length(1);
    const r = rows[0];
    expect(r.best.perSeed).to.deep.equal([
      { seed: 42, best: 89, round: 8 },
      { seed: 43, best: 90, round: 6 },
    ]);
    expect(r.best.mean).to.equal(89.5);
    expect(r.best.sd).to.be.closeTo(Math.SQRT1_2, 1e-12);
    expect(r.atLast.mean).to.equal(88);
    // Drops counted from round 6 to 7 onwards: 88 → 84 (4) in seed 42; 90 → 89 → 87 (1, 2) in seed 43.
    expect(r.worstDropAfter6).to.equal(4);
    expect(r.medianSeconds).to.equal(30);
    expect(run28Table(rows, 8).split('\n')[2]).to.equal('| ffa, ranks 4,16,16,16,16 | 42, 43 | 89.5 ± 0.7 | 89.0 (8), 90.0 (6) | 88.0 ± 1.4 | 4.0 | 30.0 |');
  });
});
