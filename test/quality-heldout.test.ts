// Run 20 scores the quality cells on the whole held-out set (bench/QUALITY.md "Run 20") and reads the same curves
// through runs 1-19's 400-e-mail judge: that needs the whole set to be the same e-mails on every split, and its
// first 400 (a --test-limit above its size keeps the seeded sample's order) to be exactly the 400 the harness
// scored before. Also the run-20 table's arithmetic: a version's accuracy on a prefix of its kept bit set.
import { prepareSpamTask } from '../client-sdk/demo/spam-task';
import { loadEmails, splitSpamAssassin } from '../client-sdk/data/spam-assassin';
import { SPLITS } from '../bench/quality-cell';
import { prefixAccuracy } from '../bench/quality-run20-table';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('quality benchmark: the whole held-out set (run 20)', () => {
  it('is 907 e-mails, the same on every split, and its first 400 in the harness order are the 400-e-mail sample', () => {
    const emails = loadEmails();
    const ids = Object.values(SPLITS).map((s) =>
      splitSpamAssassin(emails, { numClients: 5, seed: 7, alpha: s.alpha, partition: s.partition }).test.map((e) => e.id),
    );
    expect(ids[0]).to.have.length(907);
    expect(ids[1]).to.deep.equal(ids[0]);
    expect(ids[2]).to.deep.equal(ids[0]);
    const task = (testLimit: number) => prepareSpamTask({ numClients: 5, splitSeed: 7, maxSeqLen: 128, testLimit, clientEvalLimit: 0, alpha: 0.1 });
    const whole = task(100_000).test;
    const sample = task(400).test;
    expect(whole).to.have.length(907);
    expect(whole.slice(0, 400)).to.deep.equal(sample);
  });

  it('reads a version’s accuracy on the first k e-mails off its kept bit set', () => {
    // 10 e-mails: version 20 right on e-mails 0, 1, 2 and 9; version 40 on 3-9. Bit i of byte i >> 3.
    const bits = (right: number[]): string => {
      const b = new Uint8Array(2);
      for (const i of right) b[i >> 3] |= 1 << (i & 7);
      return Buffer.from(b).toString('base64');
    };
    const curve = [
      { round: 0, accuracy: 0, loss: 0, extra: {}, correct: bits([]) },
      { round: 20, accuracy: 0.4, loss: 0, extra: {}, correct: bits([0, 1, 2, 9]) },
      { round: 40, accuracy: 0.7, loss: 0, extra: {}, correct: bits([3, 4, 5, 6, 7, 8, 9]) },
    ];
    const on4 = prefixAccuracy({ split: 'groups', seed: 1, curve, release: null, n: 10 }, 4);
    expect([...on4!.entries()]).to.deep.equal([
      [20, 0.75],
      [40, 0.25],
    ]);
    const all = prefixAccuracy({ split: 'groups', seed: 1, curve, release: null, n: 10 }, 400);
    expect([...all!.entries()]).to.deep.equal([
      [20, 0.4],
      [40, 0.7],
    ]);
  });
});
