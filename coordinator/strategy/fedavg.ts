// FedAvg (McMahan et al. 2017) weighted by example counts, on the fixed-point grid so that the committed
// adapter is bit-identical whatever order the updates arrive in: integer sums are associative. Updates are
// folded into the sum chunk by chunk as they are opened (FedAvgSum.open), so a round holds one float64 accumulator
// per parameter and no update at all.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { assertSameLayout } from '../../proto/tensors';
import { AdmissionError, type Aggregation, type ClientUpdate, type ServerState, type Strategy, type UpdateFold, type WeightedSum } from './strategy';
import { stepAlongMeanDelta } from './mean-delta';
import { closeFedAvg } from './close-kernel';
import { FixedPointRangeError, LIMIT, MAX_TOTAL_WEIGHT, SCALE } from './fixed-point';
import type { FoldKernel } from './fold-kernel';
import { roundFoldKernel } from './fold-threads';
import { closeSpans } from './fold-close';
import { LayoutIndex, StreamedFold, ValueRuns } from './stream-fold';

export class FedAvg implements Strategy {
  readonly name: string = 'fedavg';
  readonly maxAbsDelta = LIMIT;

  begin(global: TensorList): Aggregation {
    // The global is placed in the sum's memory, and the next adapter's buffers made, only where FedAvg's own close
    // will run (not a subclass's step).
    return new FedAvgSum(global, this.aggregate === FedAvg.prototype.aggregate);
  }

  /** global + Σ/(W·scale), one correctly rounded division per value, then one float32 rounding. */
  aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[] {
    const out =
      closeOnHelpers(global, sum) ??
      stepAlongMeanDelta(
        'FedAvg',
        global,
        sum,
        (_name, g, delta, next) => {
          // Stryker disable next-line EqualityOperator: equivalent: `<=` also writes next[next.length], which a typed array ignores.
          for (let j = 0; j < next.length; j++) next[j] = g[j] + delta[j];
        },
        closeFedAvg, // the same bits in WebAssembly (close-kernel.ts)
      );
    // Stateless: whatever state an earlier strategy of this run left ends here.
    if (state) state.tensors = [];
    return out;
  }
}

/** The kernels of threaded sums by their views (FedAvgSum.sum()'s tensors), whose close runs on their helpers. */
const threadedSums = new WeakMap<object, FoldKernel>();

/**
 * The next adapter closed on the sum's helper threads (fold-close.ts: the same bits as stepAlongMeanDelta with
 * closeFedAvg, for any cut), where the sum is a threaded FedAvgSum of exactly this layout; else undefined. The
 * first close of the global the sum was made with returns tensors over shared buffers of their own (SharedArrayBuffer,
 * 4 bytes per value, as any adapter), written by no one after it returns.
 */
function closeOnHelpers(global: TensorList, sum: WeightedSum): NamedTensor[] | undefined {
  const start = performance.now();
  const k = threadedSums.get(sum.tensors);
  if (!k?.close || !(sum.totalWeight > 0) || global.length !== sum.tensors.size) return undefined;
  let j = 0;
  for (const [name, v] of sum.tensors) {
    const g = global[j++];
    if (g.name !== name || g.data.length !== v.length) return undefined;
  }
  const next = k.close(
    global.map((g) => g.data),
    sum.totalWeight * sum.scale,
  );
  const out = next && global.map((g, i) => ({ name: g.name, dtype: g.dtype, shape: g.shape, data: next[i] }));
  closeSpans.fedavg += performance.now() - start;
  return out;
}

/**
 * A round's running Σ n_k·q_k, one float64 per parameter in the layout's order (exact below 2^53: MAX_TOTAL_WEIGHT
 * keeps it there, counting every weight reserved, so a partly folded update never takes a sum past it), folded by
 * the SIMD kernel (fold-kernel.ts; on several threads where the host has the cores, fold-threads.ts) as each update's
 * chunks are opened (open) or a whole update at a time (add).
 */
class FedAvgSum implements Aggregation {
  private readonly k: FoldKernel;
  private readonly index: LayoutIndex;
  private readonly views: Map<string, Float64Array>;
  /** Admitted (reserved) weight per client; `added` marks those already in the sum. */
  private readonly reserved = new Map<string, number>();
  private readonly added = new Set<string>();
  /** Weight reserved by every update admitted or streaming, and by abandoned ones until they are taken back. */
  private reservedTotal = 0;

  constructor(
    private readonly global: TensorList,
    closesHere = true,
  ) {
    this.index = new LayoutIndex(global);
    // Where the close runs here: the global's values placed in the sum's memory now, while the sites train (the
    // round's base version does not change; fold-close.ts).
    this.k = roundFoldKernel(this.index.total, closesHere ? global.map((g) => g.data) : undefined);
    this.views = new Map();
    let off = 0;
    for (const g of global) {
      this.views.set(g.name, this.k.acc.subarray(off, off + g.data.length));
      off += g.data.length;
    }
    if (this.k.close && closesHere) threadedSums.set(this.views, this.k);
  }

  get count(): number {
    return this.added.size;
  }

  private reserve(clientId: string, numExamples: number): void {
    if (this.reserved.has(clientId)) throw new AdmissionError(`FedAvg: two updates from ${clientId}`);
    if (!(Number.isSafeInteger(numExamples) && numExamples >= 1)) {
      throw new AdmissionError(`FedAvg: ${clientId} reports ${numExamples} examples; need a positive integer`);
    }
    if (this.reservedTotal + numExamples > MAX_TOTAL_WEIGHT) {
      throw new AdmissionError(`FedAvg: ${this.reservedTotal + numExamples} examples in one round exceed the exact-sum bound ${MAX_TOTAL_WEIGHT}`);
    }
    this.reserved.set(clientId, numExamples);
    this.reservedTotal += numExamples;
  }

  admit(u: ClientUpdate): void {
    if (this.reserved.has(u.clientId)) throw new AdmissionError(`FedAvg: two updates from ${u.clientId}`);
    assertSameLayout(this.global, u.delta);
    for (let k = 0; k < this.global.length; k++) {
      const x = u.delta[k].data;
      const name = `${u.clientId}:${this.global[k].name}`;
      if (x.length !== this.global[k].data.length) throw new RangeError(`${name}: ${x.length} values, accumulator has ${this.global[k].data.length}`);
      // One comparison per value catches NaN, ±Inf and |x| ≥ 128; the rare failure names the value.
      for (let i = 0; i < x.length; i++) if (!(Math.abs(x[i]) < LIMIT)) throw new FixedPointRangeError(name, i, x[i]);
    }
    this.reserve(u.clientId, u.numExamples);
  }

  release(clientId: string): void {
    const w = this.reserved.get(clientId);
    if (w === undefined || this.added.has(clientId)) return;
    this.reserved.delete(clientId);
    this.reservedTotal -= w;
  }

  add(u: ClientUpdate): void {
    if (this.reserved.get(u.clientId) !== u.numExamples || this.added.has(u.clientId)) throw new Error(`FedAvg: update of ${u.clientId} was not admitted`);
    // The same kernel as the streaming path, fed the update's tensors in layout order (admit checked every value).
    const runs = new ValueRuns(this.k, this.index.total);
    for (const t of u.delta) runs.feed(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), (start, n) => this.k.fold(start, n, u.numExamples));
    this.added.add(u.clientId);
  }

  open(clientId: string, numExamples: number): UpdateFold {
    this.reserve(clientId, numExamples);
    const { k, index } = this;
    const h = k.handoff;
    return new StreamedFold(k, index.total, {
      foldsOnPush: true,
      push: (start, n) => k.fold(start, n, numExamples),
      // Chunks that start on a value go to a kernel that stages them itself (threaded: copy and fold overlap).
      pushWhole: k.foldBytes ? (start, words) => k.foldBytes!(start, words, numExamples) : undefined,
      // Chunks the caller owns go to a helper whole, their buffers moved: the copy and the fold off this thread.
      handoff: h && { hand: (start, words) => h.hand(start, words, numExamples), wait: (t) => h.wait(t), done: (t) => h.done(t) },
      refuse: (i, value) => index.rangeError(clientId, i, value),
      takeBack: (start, n) => void k.fold(start, n, -numExamples),
      finish: () => false,
      commit: () => void this.added.add(clientId),
      abandon: () => void this.reserved.delete(clientId),
      undone: () => void (this.reservedTotal -= numExamples),
    });
  }

  sum(): WeightedSum {
    this.k.handoff?.wait(); // no chunk of an update still being folded elsewhere when the sum is read
    let total = 0;
    for (const id of this.added) total += this.reserved.get(id)!;
    return { tensors: this.views, totalWeight: total, scale: SCALE };
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
