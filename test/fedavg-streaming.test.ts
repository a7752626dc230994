// FedAvg's streaming form: admit an update, add it to the running sum as it arrives, aggregate the sum once; the
// same bytes for every arrival order, and secure aggregation's unmasked sum through the same strategy.
import { FedAvg, aggregateUpdates } from '../coordinator/strategy/fedavg';
import { FixedPointRangeError, MAX_TOTAL_WEIGHT, SCALE } from '../coordinator/strategy/fixed-point';
import { AdmissionError, type ClientUpdate } from '../coordinator/strategy/strategy';
import { strategyNamed } from '../coordinator/strategy';
import { decodeSum, encodeUpdate, sumVectors, unmaskedSum, vectorLayout, type SecAggRoundConfig } from '../proto/secagg';
import type { NamedTensor } from '../proto/tensors';
import { Prng } from '../proto/prng';
import { hex, permutations, randomUpdate, referenceFedAvg, t, upd } from './fedavg-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('FedAvg streaming (admit, add as updates arrive, aggregate the running sum)', () => {
  const fedavg = new FedAvg();
  const sizes = [129, 3, 40];
  // Built inside the tests that use it, not when the file loads: code run at load time is a "static" mutant for
  // mutation testing (bench/MUTATION.md), which then reloads the whole file for every such mutant.
  const fixture = (): { global: NamedTensor[]; updates: ClientUpdate[]; reference: ReturnType<typeof aggregateUpdates> } => {
    const rng = new Prng(77, 5);
    const global = sizes.map((n, k) =>
      t(
        `w${k}`,
        Array.from({ length: n }, () => (rng.nextFloat() - 0.5) * 2),
      ),
    );
    const updates = [0, 1, 2, 3, 4].map((k) => randomUpdate(rng, `site-${k}`, sizes, [2, 1e-4, 0.3, 60, 0.01][k], 1 + Math.floor(rng.nextFloat() * 9000)));
    return { global, updates, reference: aggregateUpdates(fedavg, global, updates) };
  };

  it('commits the same bytes for every arrival order, with admission and addition interleaved, equal to the exact reference', () => {
    const { global, updates, reference } = fixture();
    const exact = referenceFedAvg(global, updates);
    reference.adapter.forEach((x, k) => expect(Buffer.from(x.data.buffer).equals(Buffer.from(exact[k].buffer)), x.name).to.equal(true));
    for (const p of permutations(updates)) {
      const agg = fedavg.begin(global);
      // Each update is admitted on arrival and added one arrival later (as a spool write would delay it).
      let pending: ClientUpdate | undefined;
      for (const u of p) {
        agg.admit(u);
        if (pending) agg.add(pending);
        pending = u;
      }
      agg.add(pending!);
      expect(agg.count).to.equal(5);
      expect(hex(fedavg.aggregate(global, agg.sum()))).to.equal(hex(reference.adapter));
      expect(agg.weights()).to.deep.equal(reference.weights);
    }
  });

  it('keeps no update: the running sum is one float64 per parameter, and adding does not touch the update', () => {
    const { global, updates } = fixture();
    const agg = fedavg.begin(global);
    const before = hex(updates[0].delta);
    agg.admit(updates[0]);
    agg.add(updates[0]);
    expect(hex(updates[0].delta)).to.equal(before);
    const sum = agg.sum();
    expect([...sum.tensors.keys()]).to.deep.equal(['w0', 'w1', 'w2']);
    expect([...sum.tensors.values()].map((a) => [a.constructor.name, a.length])).to.deep.equal(sizes.map((n) => ['Float64Array', n]));
    expect(sum.totalWeight).to.equal(updates[0].numExamples);
  });

  it('admission refuses before anything is added, and release gives an admitted weight back', () => {
    const agg = fedavg.begin([t('a', [0])]);
    const big = upd('big', MAX_TOTAL_WEIGHT - 1, [t('a', [0.5])]);
    agg.admit(big);
    expect(() => agg.admit(upd('x', 2, [t('a', [0.5])]))).to.throw(
      AdmissionError,
      `FedAvg: ${MAX_TOTAL_WEIGHT + 1} examples in one round exceed the exact-sum bound`,
    );
    expect(() => agg.admit(upd('big', 1, [t('a', [0.5])]))).to.throw(AdmissionError, 'FedAvg: two updates from big');
    expect(() => agg.admit(upd('nan', 1, [t('a', [NaN])]))).to.throw(FixedPointRangeError, 'nan:a[0] = NaN is outside the fixed-point range');
    expect(() => agg.add(upd('x', 2, [t('a', [0.5])]))).to.throw(Error, 'FedAvg: update of x was not admitted');
    agg.release('big');
    agg.admit(upd('x', 2, [t('a', [0.5])]));
    agg.add(upd('x', 2, [t('a', [0.5])]));
    expect(agg.count).to.equal(1);
    expect(Array.from(fedavg.aggregate([t('a', [0])], agg.sum())[0].data)).to.deep.equal([0.5]);
    expect(() => fedavg.aggregate([t('a', [0])], fedavg.begin([t('a', [0])]).sum())).to.throw(Error, 'FedAvg: no updates to aggregate');
  });

  it("turns secure aggregation's unmasked sum into the same bytes decodeSum gives (one strategy for both workflows)", () => {
    const { global, updates } = fixture();
    const include = global.map((g) => g.name).sort();
    const cfg: SecAggRoundConfig = {
      roundTag: 'x',
      baseManifestSha256: '0'.repeat(64),
      selected: ['a', 'b', 'c', 'd', 'e'],
      threshold: 3,
      graph: { kind: 'full' },
      clipNorm: 10,
      weightCap: 10000,
      maxClients: 1024,
      include,
      vectorLength: vectorLayout(global, include).length,
    };
    const vs = updates.map((u, k) => encodeUpdate(u.delta, u.numExamples, cfg, new Uint8Array(32).fill(k + 1)));
    const sum = sumVectors(vs);
    expect(hex(fedavg.aggregate(global, unmaskedSum(sum, cfg, global)))).to.equal(hex(decodeSum(sum, cfg, global).adapter));
  });

  it('release gives back the client id as well as the weight: the same client may then be admitted again', () => {
    const agg = fedavg.begin([t('a', [0])]);
    agg.admit(upd('x', 3, [t('a', [0.5])]));
    agg.release('x');
    agg.admit(upd('x', 5, [t('a', [0.25])]));
    agg.add(upd('x', 5, [t('a', [0.25])]));
    expect(agg.sum().totalWeight).to.equal(5);
    // Releasing an update already added changes nothing.
    agg.release('x');
    expect(agg.sum().totalWeight).to.equal(5);
    expect(() => agg.admit(upd('x', 1, [t('a', [0])]))).to.throw(AdmissionError, 'FedAvg: two updates from x');
  });

  it('records the weights keyed in client-id order, whatever the arrival order', () => {
    const agg = fedavg.begin([t('a', [0])]);
    for (const [id, n] of [
      ['zed', 1],
      ['amy', 2],
      ['kim', 1],
    ] as const) {
      agg.admit(upd(id, n, [t('a', [0])]));
      agg.add(upd(id, n, [t('a', [0])]));
    }
    expect(Object.entries(agg.weights())).to.deep.equal([
      ['amy', 0.5],
      ['kim', 0.25],
      ['zed', 0.25],
    ]);
  });

  it('aggregate: a tensor missing from the sum keeps its global value; a sum of another length is refused', () => {
    const g = [t('a', [1, 2]), t('b', [3])];
    const out = fedavg.aggregate(g, { tensors: new Map([['b', Float64Array.from([SCALE])]]), totalWeight: 2, scale: SCALE });
    expect(out.map((x) => [x.name, Array.from(x.data)])).to.deep.equal([
      ['a', [1, 2]],
      ['b', [3.5]],
    ]);
    expect(out[0].data).to.not.equal(g[0].data);
    expect(() => fedavg.aggregate(g, { tensors: new Map([['a', new Float64Array(3)]]), totalWeight: 1, scale: SCALE })).to.throw(
      RangeError,
      /^sum of a holds 3 values; the tensor has 2$/,
    );
  });

  it('is picked by its configured name', () => {
    expect(strategyNamed('fedavg')).to.be.instanceOf(FedAvg);
    expect(() => strategyNamed('fedprox')).to.throw(Error, 'unknown strategy "fedprox"; known: fedavg');
  });
});
