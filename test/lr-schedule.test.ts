// coordinator/lr-schedule.ts: the clients' learning rate per round (linear warm-up, then constant or cosine),
// against values worked out by hand. test/server-state-restart.test.ts checks that the plan carries them.
import { roundLearningRate, type ScheduleSettings } from '../coordinator/lr-schedule';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const s = (over: Partial<ScheduleSettings>): ScheduleSettings => ({ learningRate: 0.01, schedule: 'constant', warmupRounds: 0, minLearningRate: 0, ...over });
const per = (c: ScheduleSettings, total: number): number[] => Array.from({ length: total }, (_, i) => roundLearningRate(c, total, i + 1));

describe('client learning-rate schedule (lr-schedule.ts)', () => {
  it('constant: training.learningRate every round, unchanged from before schedules existed', () => {
    expect(per(s({}), 4)).to.deep.equal([0.01, 0.01, 0.01, 0.01]);
  });

  it('warm-up: round r ≤ k trains at η·r/k, then the schedule', () => {
    expect(per(s({ warmupRounds: 4 }), 6)).to.deep.equal([0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01]);
  });

  it('cosine after a 2-round warm-up over 6 rounds, down towards the floor 0.001', () => {
    const got = per(s({ schedule: 'cosine', warmupRounds: 2, minLearningRate: 0.001 }), 6);
    // r3: progress 0 → η; r4: 1/4 → 0.001 + 0.009·(1 + cos π/4)/2; r5: 1/2 → 0.0055; r6: 3/4 → 0.001 + 0.009·(1 − cos π/4)/2.
    const want = [0.005, 0.01, 0.01, 0.001 + 0.009 * 0.8535533905932737, 0.0055, 0.001 + 0.009 * 0.14644660940672624];
    got.forEach((v, i) => expect(v, `round ${i + 1}`).to.be.closeTo(want[i], 1e-15));
    expect(got[3]).to.be.closeTo(0.00868198, 1e-8);
    // Never below the floor, even past the configured total.
    expect(roundLearningRate(s({ schedule: 'cosine', minLearningRate: 0.001 }), 6, 9)).to.equal(0.001);
  });

  it('refuses a round before 1', () => {
    expect(() => roundLearningRate(s({}), 3, 0)).to.throw(RangeError, 'rounds count from 1');
  });
});
