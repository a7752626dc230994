// strategy.anchorDecay (coordinator/strategy/anchor.ts): after the inner strategy's step the adapter moves λ·f_t of
// the way back to the anchor, the global of the first round under the pull, which is checkpointed as `anchor/<tensor>`
// server state. Two rounds against hand values over FedAvg (every value an exact binary fraction), the cosine's
// factor, a stateful inner strategy's state passing through, and the refusals.
import { loadConfig } from '../coordinator/config';
import { AnchorStrategy, withAnchor } from '../coordinator/strategy/anchor';
import { FedAdam } from '../coordinator/strategy/fedopt';
import { FedAvg } from '../coordinator/strategy/fedavg';
import type { ServerState, Strategy } from '../coordinator/strategy/strategy';
import { GLOBAL, ROUND1, ROUND2, values } from './server-rounds-fixture';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

function round(s: Strategy, global: typeof GLOBAL, updates: typeof ROUND1, state: ServerState) {
  const agg = s.begin(global, state);
  for (const u of updates) {
    agg.admit(u);
    agg.add(u);
  }
  return s.aggregate(global, agg.sum(), state);
}

describe('the pull towards the starting adapter (strategy.anchorDecay)', () => {
  it('two rounds over FedAvg against hand values, the anchor stored unchanged', () => {
    const s = new AnchorStrategy(new FedAvg(), 0.5);
    // Round 1: FedAvg gives [0.5, −1, 0.125] + Δ1 [0.3125, 0.5, 0] = [0.8125, −0.5, 0.125]; half way back to the
    // anchor (round 1's base, GLOBAL): [0.65625, −0.75, 0.125].
    const st1: ServerState = { tensors: [], round: 1 };
    const w1 = round(s, GLOBAL, ROUND1, st1);
    expect(values(w1, 'w')).to.deep.equal([0.65625, -0.75, 0.125]);
    expect(st1.tensors.map((t) => t.name)).to.deep.equal(['anchor/w']);
    expect(values(st1.tensors, 'anchor/w')).to.deep.equal([0.5, -1, 0.125]);
    // Round 2: w1 + Δ2 [−0.25, 0.25, 0.125] = [0.40625, −0.5, 0.25]; half way back: [0.453125, −0.75, 0.1875].
    const st2: ServerState = { tensors: st1.tensors, round: 2 };
    const w2 = round(s, w1, ROUND2, st2);
    expect(values(w2, 'w')).to.deep.equal([0.453125, -0.75, 0.1875]);
    expect(values(st2.tensors, 'anchor/w')).to.deep.equal([0.5, -1, 0.125]);
    expect(s.name).to.equal('fedavg+anchor');
    expect(s.hyperParameters).to.deep.equal({ anchorDecay: 0.5 });
  });

  it("anneals with the server schedule: under 'cosine' over 2 rounds the pull in round 2 is λ·0.5", () => {
    const s = new AnchorStrategy(new FedAvg(), 0.5, { serverSchedule: 'cosine', roundsTotal: 2 });
    const st1: ServerState = { tensors: [], round: 1 };
    const w1 = round(s, GLOBAL, ROUND1, st1);
    expect(values(w1, 'w')).to.deep.equal([0.65625, -0.75, 0.125]); // f_1 = 1
    // Round 2: keep 1 − 0.5·0.5 = 0.75 of [0.40625, −0.5, 0.25] − anchor: [0.4296875, −0.625, 0.21875] (cos(π/2) is
    // 6e-17 in float64, under float32's resolution here).
    const w2 = round(s, w1, ROUND2, { tensors: st1.tensors, round: 2 });
    expect(values(w2, 'w')).to.deep.equal([0.4296875, -0.625, 0.21875]);
  });

  it("a server optimiser's own state passes through beside the anchor, and it steps as without the pull before it", () => {
    const settings = { serverLearningRate: 0.1, beta1: 0.5, beta2: 0.5, tau: 1e-3, biasCorrection: true };
    const plain: ServerState = { tensors: [], round: 1 };
    const pulled: ServerState = { tensors: [], round: 1 };
    const wp = round(new FedAdam(settings), GLOBAL, ROUND1, plain);
    const wa = round(new AnchorStrategy(new FedAdam(settings), 0.25), GLOBAL, ROUND1, pulled);
    expect(pulled.tensors.map((t) => t.name)).to.deep.equal(['anchor/w', 'm/w', 'v/w']);
    expect(values(pulled.tensors, 'm/w')).to.deep.equal(values(plain.tensors, 'm/w'));
    const a = values(GLOBAL, 'w');
    values(wa, 'w').forEach((x, i) => expect(x).to.equal(Math.fround(a[i] + 0.75 * (values(wp, 'w')[i] - a[i]))));
  });

  it('the configuration: off by default, wrapped once, refused outside [0, 1)', () => {
    const cfg = loadConfig({ overrides: { strategy: { anchorDecay: 0.1 } } });
    const s = withAnchor(cfg, new FedAvg());
    expect(s).to.be.instanceOf(AnchorStrategy);
    expect(withAnchor(cfg, s)).to.equal(s);
    expect(withAnchor(loadConfig({}), new FedAvg())).to.be.instanceOf(FedAvg);
    expect(() => loadConfig({ overrides: { strategy: { anchorDecay: 1 } } })).to.throw(/strategy.anchorDecay = 1; must be in \[0, 1\)/);
    expect(() => loadConfig({ overrides: { strategy: { anchorDecay: -0.1 } } })).to.throw(/strategy.anchorDecay = -0.1/);
    expect(() => new AnchorStrategy(new FedAvg(), 0)).to.throw(/must be in \(0, 1\)/);
  });
});
