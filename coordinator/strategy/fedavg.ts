// FedAvg (McMahan et al. 2017) weighted by example counts, on the fixed-point grid so that the committed
// adapter is bit-identical whatever order the updates arrive in: integer sums are associative. Updates are
// folded into the sum as they arrive (FedAvgSum.add), so a round holds one float64 accumulator per parameter
// and no update beyond the one being added.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { assertSameLayout } from '../../proto/tensors';
import { AdmissionError, type Aggregation, type ClientUpdate, type ServerState, type Strategy, type WeightedSum } from './strategy';
import { stepAlongMeanDelta } from './mean-delta';
import { FixedPointRangeError, LIMIT, MAX_TOTAL_WEIGHT, SCALE, accumulateUnchecked } from './fixed-point';

export class FedAvg implements Strategy {
  readonly name: string = 'fedavg';
  readonly maxAbsDelta = LIMIT;

  begin(global: TensorList): Aggregation {
    return new FedAvgSum(global);
  }

  /** global + Σ/(W·scale), one correctly rounded division per value, then one float32 rounding. */
  aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[] {
    const out = stepAlongMeanDelta('FedAvg', global, sum, (_name, g, delta, next) => {
      // Stryker disable next-line EqualityOperator: equivalent: `<=` also writes next[next.length], which a typed array ignores.
      for (let j = 0; j < next.length; j++) next[j] = g[j] + delta[j];
    });
    // Stateless: whatever state an earlier strategy of this run left ends here.
    if (state) state.tensors = [];
    return out;
  }
}

/** A round's running Σ n_k·q_k per tensor (float64, exact below 2^53: MAX_TOTAL_WEIGHT keeps it there). */
class FedAvgSum implements Aggregation {
  private readonly acc: Map<string, Float64Array>;
  /** Admitted (reserved) weight per client; `added` marks those already in the sum. */
  private readonly reserved = new Map<string, number>();
  private readonly added = new Set<string>();
  private reservedTotal = 0;

  constructor(private readonly global: TensorList) {
    this.acc = new Map(global.map((g) => [g.name, new Float64Array(g.data.length)]));
  }

  get count(): number {
    return this.added.size;
  }

  admit(u: ClientUpdate): void {
    if (this.reserved.has(u.clientId)) throw new AdmissionError(`FedAvg: two updates from ${u.clientId}`);
    if (!(Number.isSafeInteger(u.numExamples) && u.numExamples >= 1)) {
      throw new AdmissionError(`FedAvg: ${u.clientId} reports ${u.numExamples} examples; need a positive integer`);
    }
    if (this.reservedTotal + u.numExamples > MAX_TOTAL_WEIGHT) {
      throw new AdmissionError(`FedAvg: ${this.reservedTotal + u.numExamples} examples in one round exceed the exact-sum bound ${MAX_TOTAL_WEIGHT}`);
    }
    assertSameLayout(this.global, u.delta);
    for (let k = 0; k < this.global.length; k++) {
      const x = u.delta[k].data;
      const name = `${u.clientId}:${this.global[k].name}`;
      if (x.length !== this.global[k].data.length) throw new RangeError(`${name}: ${x.length} values, accumulator has ${this.global[k].data.length}`);
      // One comparison per value catches NaN, ±Inf and |x| ≥ 128; the rare failure names the value.
      for (let i = 0; i < x.length; i++) if (!(Math.abs(x[i]) < LIMIT)) throw new FixedPointRangeError(name, i, x[i]);
    }
    this.reserved.set(u.clientId, u.numExamples);
    this.reservedTotal += u.numExamples;
  }

  release(clientId: string): void {
    const w = this.reserved.get(clientId);
    if (w === undefined || this.added.has(clientId)) return;
    this.reserved.delete(clientId);
    this.reservedTotal -= w;
  }

  add(u: ClientUpdate): void {
    if (this.reserved.get(u.clientId) !== u.numExamples || this.added.has(u.clientId)) throw new Error(`FedAvg: update of ${u.clientId} was not admitted`);
    for (let k = 0; k < this.global.length; k++) accumulateUnchecked(this.acc.get(this.global[k].name)!, u.delta[k].data, u.numExamples);
    this.added.add(u.clientId);
  }

  sum(): WeightedSum {
    let total = 0;
    for (const id of this.added) total += this.reserved.get(id)!;
    return { tensors: this.acc, totalWeight: total, scale: SCALE };
  }

  weights(): Record<string, number> {
    const total = this.sum().totalWeight;
    const out: Record<string, number> = {};
    for (const id of [...this.added].sort()) out[id] = this.reserved.get(id)! / total;
    return out;
  }
}

/** Admits and adds every update, then aggregates: the batch form (tests, benches, offline use). */
export function aggregateUpdates(
  strategy: Strategy,
  global: TensorList,
  updates: readonly ClientUpdate[],
  state?: ServerState,
): { adapter: NamedTensor[]; weights: Record<string, number> } {
  // Stryker disable next-line ConditionalExpression: equivalent for FedAvg, whose aggregate() refuses a zero total weight with this message; kept for other strategies.
  if (updates.length === 0) throw new Error('FedAvg: no updates to aggregate');
  const agg = strategy.begin(global);
  for (const u of updates) agg.admit(u);
  for (const u of updates) agg.add(u);
  return { adapter: strategy.aggregate(global, agg.sum(), state), weights: agg.weights() };
}
