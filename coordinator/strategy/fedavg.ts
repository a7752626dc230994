// FedAvg (McMahan et al. 2017) weighted by example counts, on the fixed-point grid so that the committed
// adapter is bit-identical whatever order the updates arrive in: integer sums are associative.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { assertSameLayout } from '../../proto/tensors';
import type { AggregationResult, ClientUpdate, Strategy } from './strategy';
import { LIMIT, MAX_TOTAL_WEIGHT, accumulate, weightedMean } from './fixed-point';

export class FedAvg implements Strategy {
  readonly name = 'fedavg';
  readonly maxAbsDelta = LIMIT;

  aggregate(global: TensorList, updates: readonly ClientUpdate[]): AggregationResult {
    if (updates.length === 0) throw new Error('FedAvg: no updates to aggregate');
    const ids = new Set<string>();
    let total = 0;
    for (const u of updates) {
      if (ids.has(u.clientId)) throw new Error(`FedAvg: two updates from ${u.clientId}`);
      ids.add(u.clientId);
      if (!(Number.isSafeInteger(u.numExamples) && u.numExamples >= 1)) {
        throw new Error(`FedAvg: ${u.clientId} reports ${u.numExamples} examples; need a positive integer`);
      }
      assertSameLayout(global, u.delta);
      total += u.numExamples;
    }
    if (total > MAX_TOTAL_WEIGHT) {
      throw new Error(`FedAvg: ${total} examples in one round exceed the exact-sum bound ${MAX_TOTAL_WEIGHT}`);
    }
    const adapter: NamedTensor[] = global.map((g, i) => {
      const acc = new Float64Array(g.data.length);
      for (const u of updates) accumulate(acc, u.delta[i].data, u.numExamples, `${u.clientId}:${g.name}`);
      const mean = weightedMean(acc, total);
      const out = new Float32Array(g.data.length);
      for (let j = 0; j < out.length; j++) out[j] = g.data[j] + mean[j];
      return { name: g.name, dtype: g.dtype, shape: g.shape, data: out };
    });
    const weights: Record<string, number> = {};
    for (const u of [...updates].sort((a, b) => (a.clientId < b.clientId ? -1 : 1))) weights[u.clientId] = u.numExamples / total;
    return { adapter, weights };
  }
}
