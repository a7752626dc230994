// SCAFFOLD (Karimireddy et al., ICML 2020, "SCAFFOLD: Stochastic Controlled Averaging for Federated Learning"),
// the server's half. Client drift under label skew is what the control variates correct: the server keeps c
// (one value per trained adapter value), each site keeps its own c_i and adds c − c_i to every local gradient.
// A site's update carries, besides Δy_i = y_i − x, its Δc_i = c_i⁺ − c_i as extra tensors named
// `scaffold.dc/<adapter tensor>` (the same sealed, signed upload). The server, per value, in float64:
//   x ← x + η_g · mean(Δy)          c ← c + (|S|/N) · mean(Δc)
// Both means come from the one fixed-point FedAvg sum (fedavg.ts), example-weighted like FedAvg's (the paper's
// plain mean assumes equal weights; with weights p_i = n_i/n, c stays Σ p_i·c_i over the sites, the control
// variate of the example-weighted objective), so the committed adapter and c are bit-identical whatever order
// the updates arrive in. c is the server state `c/<adapter tensor>` (float32), committed with every version and
// restored from it, so a restarted coordinator continues exactly; sites download it with DownloadRequest's
// control_variate. N is strategy.population (0: every site takes part in every round, |S|/N = 1).
import { sortByName, type NamedTensor, type TensorList } from '../../proto/tensors';
import { FedAvg } from './fedavg';
import { stepAlongMeanDelta } from './mean-delta';
import { OptimizerState } from './optimizer-state';
import type { Aggregation, ClientUpdate, ServerState, UpdateFold, WeightedSum } from './strategy';

import { CONTROL_DELTA_PREFIX } from '../../proto/model/scaffold';
import { baseStrategyName } from './names';

export { CONTROL_DELTA_PREFIX };
/** The server state kind holding c. */
export const CONTROL_STATE_KIND = 'c';

export interface ScaffoldSettings {
  /** η_g; 0: 1 (the paper's global step size for full participation). */
  readonly serverLearningRate: number;
  /** N, the sites in the federation; 0: every site is in every round. */
  readonly population: number;
}

/** A sum that also says how many updates it holds (|S|). */
interface CountedSum extends WeightedSum {
  readonly participants: number;
}

/** The upload layout with one `scaffold.dc/` tensor per trained tensor (idempotent), sorted by name. */
export function withControlDeltas<T extends TensorList[number]>(layout: readonly T[]): NamedTensor[] {
  const plain = layout.filter((t) => !t.name.startsWith(CONTROL_DELTA_PREFIX));
  const dc = plain.map((t) => ({ name: CONTROL_DELTA_PREFIX + t.name, dtype: 'float32' as const, shape: [...t.shape], data: new Float32Array(t.data.length) }));
  return sortByName([...plain, ...dc]);
}

/** The tensors a round's updates carry under `strategy`: SCAFFOLD adds the Δc tensors to the adapter's. */
export function strategyUploadLayout<T extends TensorList[number]>(strategy: { readonly name: string }, layout: T[]): T[] | NamedTensor[] {
  return baseStrategyName(strategy.name) === 'scaffold' ? withControlDeltas(layout) : layout;
}

/** The server control variate c of a version over the trained tensors (zeros where the state has none yet). */
export function controlVariateOf(layout: TensorList, serverState: readonly NamedTensor[] | undefined): NamedTensor[] {
  const byName = new Map((serverState ?? []).map((t) => [t.name, t]));
  return layout.map((g) => {
    const c = byName.get(`${CONTROL_STATE_KIND}/${g.name}`);
    const data = c && c.data.length === g.data.length ? c.data : new Float32Array(g.data.length);
    return { name: g.name, dtype: 'float32', shape: [...g.shape], data };
  });
}

export class Scaffold extends FedAvg {
  override readonly name: string = 'scaffold';
  readonly hyperParameters: Readonly<{ serverLearningRate: number; population: number }>;

  constructor(s: ScaffoldSettings) {
    super();
    const eta = s.serverLearningRate || 1;
    if (!(Number.isFinite(eta) && eta > 0)) throw new RangeError(`SCAFFOLD: serverLearningRate = ${s.serverLearningRate}; must be a finite number ≥ 0`);
    if (!(Number.isSafeInteger(s.population) && s.population >= 0)) throw new RangeError(`SCAFFOLD: population = ${s.population}; must be an integer ≥ 0`);
    this.hyperParameters = { serverLearningRate: eta, population: s.population };
  }

  /** The FedAvg sum over the adapter's tensors and their Δc tensors (admission checks both alike). */
  override begin(global: TensorList): Aggregation {
    return new CountingAggregation(super.begin(withControlDeltas(global)));
  }

  override aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[] {
    const st = new OptimizerState('SCAFFOLD', global, state);
    const { serverLearningRate: eta, population } = this.hyperParameters;
    const participants = (sum as Partial<CountedSum>).participants;
    if (participants === undefined) throw new Error('SCAFFOLD aggregates its own running sum only (secure aggregation cannot carry Δc)');
    if (population > 0 && participants > population) throw new Error(`SCAFFOLD: ${participants} sites in the round exceed strategy.population ${population}`);
    const share = population > 0 ? participants / population : 1;
    const denom = sum.totalWeight * sum.scale;
    const out = stepAlongMeanDelta('SCAFFOLD', global, sum, (name, g, delta, next) => {
      // Stryker disable next-line EqualityOperator: equivalent: `<=` also writes next[next.length], which a typed array ignores.
      for (let j = 0; j < next.length; j++) next[j] = g[j] + eta * delta[j];
      const dc = sum.tensors.get(CONTROL_DELTA_PREFIX + name);
      if (!dc) return; // a tensor no update trains (frozen): no control variate either
      if (dc.length !== g.length) throw new RangeError(`sum of ${CONTROL_DELTA_PREFIX}${name} holds ${dc.length} values; the tensor has ${g.length}`);
      const prev = st.read(CONTROL_STATE_KIND, name, g.length);
      const c = new Float64Array(g.length);
      for (let j = 0; j < g.length; j++) c[j] = (prev ? prev[j] : 0) + share * (dc[j] / denom);
      st.write(CONTROL_STATE_KIND, name, c);
    });
    st.commit(state!, [CONTROL_STATE_KIND]);
    return out;
  }
}

/** FedAvg's running sum, reporting |S| with the sum (SCAFFOLD's |S|/N). */
class CountingAggregation implements Aggregation {
  constructor(private readonly inner: Aggregation) {}
  open(clientId: string, numExamples: number): UpdateFold {
    return this.inner.open(clientId, numExamples);
  }
  admit(u: ClientUpdate): void {
    this.inner.admit(u);
  }
  release(clientId: string): void {
    this.inner.release(clientId);
  }
  add(u: ClientUpdate): void {
    this.inner.add(u);
  }
  get count(): number {
    return this.inner.count;
  }
  sum(): CountedSum {
    return { ...this.inner.sum(), participants: this.inner.count };
  }
  weights(): Record<string, number> {
    return this.inner.weights();
  }
}
