// strategy.ema (coordinator/strategy/ema.ts): the bias-corrected Polyak/EMA average of the global adapter over two
// rounds of FedAvgM, against values computed here by hand; the inner optimiser's own state passes through untouched;
// and the adapter a version is scored as (evaluatedAdapter) is the average.
import { aggregateUpdates } from '../coordinator/strategy/fedavg';
import { FedAvgM } from '../coordinator/strategy/fedavgm';
import { EmaStrategy, evaluatedAdapter, withEma } from '../coordinator/strategy/ema';
import type { ServerState } from '../coordinator/strategy/strategy';
import { DpStrategy } from '../coordinator/strategy/dp';
import { Scaffold, strategyUploadLayout } from '../coordinator/strategy/scaffold';
import { GLOBAL, ROUND1, ROUND2, f, values } from './server-rounds-fixture';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('strategy.ema: the average of the global adapter (strategy/ema.ts)', () => {
  it('two rounds over FedAvgM: ê_1 = w_1, ê_2 = (1/3)·w_1 + (2/3)·w_2 at β = 0.5; the iterate and the momentum are FedAvgM’s', () => {
    const s = new EmaStrategy(new FedAvgM({ serverLearningRate: 0.5, momentum: 0.5 }), 0.5);
    expect(s.name).to.equal('fedavgm+ema'); // the name a version records: what ran
    expect(s.hyperParameters).to.deep.equal({ serverLearningRate: 0.5, momentum: 0.5, ema: 0.5 });
    const state: ServerState = { tensors: [], round: 1 };
    const w1 = aggregateUpdates(s, GLOBAL, ROUND1, state).adapter;
    // FedAvgM's round 1 (server-optimisers.test.ts): unchanged by the wrapper; the average starts at the iterate.
    expect(values(w1, 'w')).to.deep.equal([0.65625, -0.75, 0.125]);
    expect(state.tensors.map((x) => x.name)).to.deep.equal(['ema/w', 'momentum/w']);
    expect(values(state.tensors, 'ema/w')).to.deep.equal([0.65625, -0.75, 0.125]);
    expect(values(state.tensors, 'momentum/w')).to.deep.equal([0.3125, 0.5, 0]);

    const state2: ServerState = { tensors: state.tensors, round: 2 };
    const w2 = aggregateUpdates(s, w1, ROUND2, state2).adapter;
    expect(values(w2, 'w')).to.deep.equal([0.609375, -0.5, 0.1875]);
    expect(values(state2.tensors, 'momentum/w')).to.deep.equal([-0.09375, 0.5, 0.125]);
    // e_1 = 0.5·w_1, e_2 = 0.25·w_1 + 0.5·w_2, ê_2 = e_2 / (1 − 0.25): (0.65625 + 2·0.609375)/3 = 0.625 exactly;
    // the others rounded to float32 once.
    expect(values(state2.tensors, 'ema/w')).to.deep.equal([0.625, f((-0.75 + 2 * -0.5) / 3), f((0.125 + 2 * 0.1875) / 3)]);
    // What the evaluator, the sites' evaluation and the export see: the average, under the adapter's names.
    const scored = evaluatedAdapter(w2, state2.tensors);
    expect(scored.map((x) => x.name)).to.deep.equal(['w']);
    expect(values(scored, 'w')).to.deep.equal(values(state2.tensors, 'ema/w'));
  });

  it('off (β 0) wraps nothing; a version without an average is scored as itself; β outside (0, 1) and a missing round are refused', () => {
    const inner = new FedAvgM({ serverLearningRate: 1, momentum: 0 });
    expect(withEma({ strategy: { ema: 0 } } as never, inner)).to.equal(inner);
    expect(withEma({ strategy: { ema: 0.9 } } as never, inner)).to.be.instanceOf(EmaStrategy);
    expect(evaluatedAdapter(GLOBAL, [])).to.deep.equal(GLOBAL);
    expect(evaluatedAdapter(GLOBAL, [{ ...GLOBAL[0], name: 'momentum/w' }])).to.deep.equal(GLOBAL);
    expect(() => new EmaStrategy(inner, 1)).to.throw(RangeError, 'strategy.ema = 1; must be in (0, 1)');
    expect(() => aggregateUpdates(new EmaStrategy(inner, 0.9), GLOBAL, ROUND1, { tensors: [] })).to.throw('strategy.ema needs the round being aggregated');
  });

  it('the recorded name says what ran, and the average over SCAFFOLD still takes its Δc tensors', () => {
    const scaffold = new EmaStrategy(new Scaffold({ serverLearningRate: 1, population: 2 }), 0.5);
    expect(scaffold.name).to.equal('scaffold+ema');
    expect(strategyUploadLayout(scaffold, GLOBAL).map((t) => t.name)).to.deep.equal(
      strategyUploadLayout(new Scaffold({ serverLearningRate: 1, population: 2 }), GLOBAL).map((t) => t.name),
    );
    expect(strategyUploadLayout(scaffold, GLOBAL)).to.have.length(2);
    expect(new EmaStrategy(new DpStrategy(new FedAvgM({ serverLearningRate: 1, momentum: 0 }), { clipNorm: 1, noiseMultiplier: 1 }), 0.9).name).to.equal(
      'fedavgm+dp+ema',
    );
  });
});
