// A pull of the global adapter back towards where the run started (strategy.anchorDecay = λ, 0 = off), as a
// decorator over any Strategy. After the inner strategy's step, per value, in float64:
//   w_t = a + (1 − λ·f_t)·(w'_t − a)
// where w'_t is the inner strategy's next adapter, a the anchor and f_t the server schedule's factor in round t
// (1 under 'constant', the cosine's (1 + cos(π·(t − 1)/R))/2 under 'cosine'), so the pull anneals with the steps it
// pulls against, as AdamW's decoupled weight decay is multiplied by its learning rate.
// The anchor is the global the first round under this decorator starts from: for a run that had it on from the
// start, the seeded initial adapter (A at its init, B at 0: the base model itself). It is stored, unchanged, as
// server-state tensors `anchor/<adapter tensor>`, so a restarted coordinator continues bit for bit.
// Why: under DP-FedAvg the noise on the mean update makes every value of the iterate random-walk (by ~η per round
// under an adaptive optimiser, the noise's slow part passing its momentum whole), and on some seeds the walk carries
// the adapter away from a fit it had: the held-out loss climbs for a hundred rounds while accuracy sits at the prior
// (bench/QUALITY.md runs 24-25). A pull towards the start turns the walk into a mean-reverting one whose spread is
// bounded (~step·√(1/(2λ)) per value), at the price of shrinking the signal's displacement to its equilibrium
// (~signal step/λ). It is L2-SP's penalty towards the starting point (Li et al. 2018) taken as a decoupled decay.
// Post-processing of the noised aggregate: it costs no ε.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import type { CoordinatorConfig } from '../config-types';
import { wrappedName } from './names';
import { serverRateAt, type ServerScheduleSettings } from './server-schedule';
import type { Aggregation, ServerState, Strategy, WeightedSum } from './strategy';

/** The server-state kind holding the anchor. */
export const ANCHOR_KIND = 'anchor';
const PREFIX = `${ANCHOR_KIND}/`;

export class AnchorStrategy implements Strategy {
  readonly name: string;
  readonly maxAbsDelta: number;
  readonly hyperParameters: Readonly<Record<string, number>>;

  constructor(
    readonly inner: Strategy,
    readonly decay: number,
    private readonly schedule: ServerScheduleSettings = {},
  ) {
    if (!(decay > 0 && decay < 1)) throw new RangeError(`strategy.anchorDecay = ${decay}; must be in (0, 1) (0 turns the pull off)`);
    this.name = wrappedName(inner.name, 'anchor');
    this.maxAbsDelta = inner.maxAbsDelta;
    this.hyperParameters = { ...(inner.hyperParameters ?? {}), anchorDecay: decay };
  }

  begin(global: TensorList, state?: ServerState): Aggregation {
    return this.inner.begin(global, state);
  }

  aggregate(global: TensorList, sum: WeightedSum, state?: ServerState): NamedTensor[] {
    if (!state) throw new Error("strategy.anchorDecay keeps its anchor between rounds: aggregate() needs the base version's state");
    const round = state.round;
    if (!(round !== undefined && Number.isSafeInteger(round) && round >= 1))
      throw new Error(`strategy.anchorDecay needs the round being aggregated (from 1); got ${round}`);
    const stored = new Map<string, NamedTensor>();
    const rest: NamedTensor[] = [];
    for (const t of state.tensors) {
      if (t.name.startsWith(PREFIX)) stored.set(t.name.slice(PREFIX.length), t);
      else rest.push(t);
    }
    // The inner strategy sees only its own state (a stateless one sees none and hands none back).
    const innerState: ServerState = { tensors: rest, round };
    const next = this.inner.aggregate(global, sum, innerState);
    // The schedule's factor: η_t/η, computed as the rate of a unit η (the one formula of server-schedule.ts).
    const keep = 1 - this.decay * serverRateAt('strategy.anchorDecay', 1, this.schedule, round);
    const byName = new Map(global.map((g) => [g.name, g]));
    const anchors: NamedTensor[] = [];
    const out = next.map((w): NamedTensor => {
      let a = stored.get(w.name);
      if (!a) {
        // The first round under the pull: its base version is the anchor, kept as it is (a copy, never a view).
        const g = byName.get(w.name);
        if (!g) throw new Error(`strategy.anchorDecay: the base version has no ${w.name} to anchor to`);
        a = { name: w.name, dtype: 'float32', shape: [...g.shape], data: Float32Array.from(g.data) };
      }
      if (a.data.length !== w.data.length)
        throw new RangeError(`strategy.anchorDecay: state ${PREFIX}${w.name} holds ${a.data.length} values; the tensor has ${w.data.length}`);
      anchors.push({ name: `${PREFIX}${w.name}`, dtype: 'float32', shape: [...w.shape], data: a.data });
      const data = new Float32Array(w.data.length);
      for (let j = 0; j < data.length; j++) data[j] = a.data[j] + keep * (w.data[j] - a.data[j]);
      return { name: w.name, dtype: w.dtype, shape: [...w.shape], data };
    });
    if (innerState.adaptiveClip) state.adaptiveClip = innerState.adaptiveClip;
    state.tensors = [...innerState.tensors, ...anchors].sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
    return out;
  }
}

/**
 * Wraps `strategy` in the pull when strategy.anchorDecay > 0: innermost of the wrappers, round the server optimiser
 * alone, so that DP-FedAvg's noise reaches the optimiser first and the EMA averages the pulled iterates.
 */
export function withAnchor(cfg: Pick<CoordinatorConfig, 'strategy' | 'rounds'>, strategy: Strategy): Strategy {
  const decay = cfg.strategy.anchorDecay;
  if (!decay || pulls(strategy)) return strategy;
  return new AnchorStrategy(strategy, decay, { serverSchedule: cfg.strategy.serverSchedule, roundsTotal: cfg.rounds.total });
}

/** Whether `strategy` or one it wraps (a composed strategy handed to the coordinator, as tests do) already pulls. */
function pulls(strategy: Strategy): boolean {
  for (let s: Strategy | undefined = strategy; s; s = (s as { inner?: Strategy }).inner) if (s instanceof AnchorStrategy) return true;
  return false;
}

/** strategy.anchorDecay is a fraction in [0, 1): 1 would hold the adapter at its anchor. */
export function anchorProblems(cfg: Pick<CoordinatorConfig, 'strategy'>): string[] {
  const d = cfg.strategy.anchorDecay;
  return d >= 0 && d < 1 ? [] : [`strategy.anchorDecay = ${d}; must be in [0, 1) (0: off)`];
}
