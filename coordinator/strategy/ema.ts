// Polyak/EMA averaging of the global adapter (strategy.ema = β, 0 = off) as a decorator over any Strategy. The
// inner strategy's iterate is what sites keep training from; the average is what is scored, released and exported.
// Why: a noisy server optimiser (FedSGD under FedAdam: one Adam step a round on a pooled batch) wanders around a
// good region and some of its iterates score several points under their neighbours; an average of the recent
// iterates does not (Polyak and Juditsky 1992; the EMA of the weights used by most large-model trainers).
//
// Per value, in float64, from the adapter w_t the inner strategy committed in round t (from 1):
//   ê_t = ê_{t−1} + ((1 − β)/(1 − β^t))·(w_t − ê_{t−1})
// which is the bias-corrected EMA of Adam's moments: with e_0 = 0 and e_t = β·e_{t−1} + (1 − β)·w_t,
// ê_t = e_t/(1 − β^t), the weights (1 − β)·β^(t−i)/(1 − β^t) of w_1…w_t summing to 1 (round 1: ê_1 = w_1 exactly).
// A run without state for the average (EMA turned on mid-run, on resume) starts it at the iterate: ê = w.
// ê is stored, rounded to float32 once, as server-state tensors `ema/<adapter tensor>` (optimizer-state.ts): what
// is saved is what the next round reads, so a restarted coordinator continues bit for bit, and the stored tensors
// are exactly the adapter that was evaluated. LoRA's factors A and B are averaged each on its own; over iterates
// this close together (one optimiser step a round) that is the average of the products to first order.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import type { CoordinatorConfig } from '../config-types';
import type { Aggregation, ServerState, Strategy, WeightedSum } from './strategy';
import { wrappedName } from './names';

/** The server-state kind holding the average. */
export const EMA_KIND = 'ema';
const PREFIX = `${EMA_KIND}/`;

export class EmaStrategy implements Strategy {
  readonly name: string;
  readonly maxAbsDelta: number;
  readonly hyperParameters: Readonly<Record<string, number>>;

  constructor(
    readonly inner: Strategy,
    readonly beta: number,
  ) {
    if (!(beta > 0 && beta < 1)) throw new RangeError(`strategy.ema = ${beta}; must be in (0, 1) (0 turns the average off)`);
    this.name = wrappedName(inner.name, 'ema');
    this.maxAbsDelta = inner.maxAbsDelta;
    this.hyperParameters = { ...(inner.hyperParameters ?? {}), ema: beta };
  }

  begin(global: TensorList, state?: ServerState): Aggregation {
    return this.inner.begin(global, state);
  }

  aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[] {
    if (!state) throw new Error("strategy.ema keeps an average between rounds: aggregate() needs the base version's state");
    const round = state.round;
    if (!(round !== undefined && Number.isSafeInteger(round) && round >= 1))
      throw new Error(`strategy.ema needs the round being aggregated (from 1); got ${round}`);
    const prior = new Map<string, NamedTensor>();
    const rest: NamedTensor[] = [];
    for (const t of state.tensors) {
      if (t.name.startsWith(PREFIX)) prior.set(t.name.slice(PREFIX.length), t);
      else rest.push(t);
    }
    // The inner strategy sees only its own state (a stateless one sees none and hands none back).
    const innerState: ServerState = { tensors: rest, round };
    const next = this.inner.aggregate(global, sum, innerState);
    const weight = (1 - this.beta) / (1 - this.beta ** round);
    const averaged = next.map((w): NamedTensor => {
      const e = prior.get(w.name);
      if (e && e.data.length !== w.data.length)
        throw new RangeError(`strategy.ema: state ema/${w.name} holds ${e.data.length} values; the tensor has ${w.data.length}`);
      const out = new Float32Array(w.data.length);
      if (!e) out.set(w.data);
      else for (let j = 0; j < out.length; j++) out[j] = e.data[j] + weight * (w.data[j] - e.data[j]);
      return { name: `${PREFIX}${w.name}`, dtype: 'float32', shape: [...w.shape], data: out };
    });
    if (innerState.adaptiveClip) state.adaptiveClip = innerState.adaptiveClip;
    state.tensors = [...innerState.tensors, ...averaged].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return next;
  }
}

/** Wraps `strategy` in the average when strategy.ema > 0 (outermost: it averages what DP and the optimiser commit). */
export function withEma(cfg: Pick<CoordinatorConfig, 'strategy'>, strategy: Strategy): Strategy {
  const beta = cfg.strategy.ema;
  if (!beta || strategy instanceof EmaStrategy) return strategy;
  return new EmaStrategy(strategy, beta);
}

/**
 * The adapter a version is scored, released and exported as: its average when the server state holds one for every
 * tensor of `adapter` (names and shapes as the adapter's), else the adapter itself.
 */
export function evaluatedAdapter(adapter: readonly NamedTensor[], serverState: readonly NamedTensor[] | undefined): NamedTensor[] {
  if (!serverState?.length) return [...adapter];
  const byName = new Map(serverState.filter((t) => t.name.startsWith(PREFIX)).map((t) => [t.name.slice(PREFIX.length), t]));
  if (byName.size === 0) return [...adapter];
  return adapter.map((w) => {
    const e = byName.get(w.name);
    if (!e || e.data.length !== w.data.length) throw new Error(`server state has no average for ${w.name} of ${w.data.length} values`);
    return { name: w.name, dtype: 'float32', shape: [...w.shape], data: e.data };
  });
}

/** strategy.ema is a decay in [0, 1): 1 would freeze the average at round 1. */
export function emaProblems(cfg: Pick<CoordinatorConfig, 'strategy'>): string[] {
  const b = cfg.strategy.ema;
  return b >= 0 && b < 1 ? [] : [`strategy.ema = ${b}; must be in [0, 1) (0: off)`];
}
