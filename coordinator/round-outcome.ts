// What an attempt hands the store: the next adapter, its participants, its seeds and, under secure aggregation,
// the public record of the sum. Both workflows end in the same place: a weighted sum handed to the strategy
// (plain rounds: the running sum the Attempt folded each update into; SecAgg rounds: the unmasked sum, the
// coordinator never having seen an individual update).
import type { NamedTensor } from '../proto/tensors';
import { unmaskedSum } from '../proto/secagg/encoding';
import type { Participant, SecureAggregationRecord } from './checkpoints/types';
import type { ClientRegistry } from './registry';
import type { Attempt } from './attempt';
import type { Task } from './task';
import type { SecAggOutcome } from './secagg-attempt';
import type { ServerState, Strategy, WeightedSum } from './strategy/strategy';
import type { AdaptiveClipRound } from './privacy/adaptive-clip';

export interface Outcome {
  readonly adapter: NamedTensor[];
  readonly participants: Participant[];
  readonly seeds: Record<string, number | Record<string, number>>;
  readonly secureAggregation?: SecureAggregationRecord;
  /** The server optimiser's state after this round's step, committed with the adapter. */
  readonly serverState: readonly NamedTensor[];
  /** DP-FedAvg's adaptive clipping: the round's C and what it measured (the manifest's privacy.adaptiveClipping). */
  readonly adaptiveClip?: AdaptiveClipRound;
}

const byClientId = (a: Task, b: Task): number => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0);

/** The strategy's next adapter: off the event loop where the strategy offers it (Strategy.aggregateOffThread). */
function closeSum(a: Attempt, strategy: Strategy, sum: WeightedSum, state: ServerState): Promise<NamedTensor[]> | NamedTensor[] {
  const global = a.base.adapter;
  return strategy.aggregateOffThread ? strategy.aggregateOffThread(global, sum, state, a.stopSignal) : strategy.aggregate(global, sum, state);
}

/** The strategy over the attempt's running sum; a string says why it failed. */
export async function plainOutcome(registry: ClientRegistry, strategy: Strategy, a: Attempt): Promise<Outcome | string> {
  const accepted = [...a.tasks.values()].filter((t) => t.state === 'uploaded').sort(byClientId);
  let adapter: NamedTensor[];
  let weights: Record<string, number>;
  // The base version's optimiser state in, this round's out (a fresh holder: the base checkpoint is not touched).
  const state: ServerState = { tensors: a.base.serverState ?? [], round: a.round };
  try {
    const sum = a.aggregation!.sum();
    // A Poisson-sampled round divides by its expected cohort q·N, whoever was sampled (privacy/sampling.ts).
    adapter = await closeSum(a, strategy, a.sampled ? { ...sum, totalWeight: a.sampled.denominator } : sum, state);
    weights = a.aggregation!.weights();
  } catch (e) {
    return `aggregation failed: ${(e as Error).message}`;
  }
  // Nor does its manifest name who took part: no participants, per-site seeds or per-site metrics.
  const clip = state.adaptiveClip ? { adaptiveClip: state.adaptiveClip } : {};
  if (a.sampled) return { adapter, participants: [], seeds: {}, serverState: state.tensors, ...clip };
  const participants = accepted.map((t) => participantOf(registry, t, t.numExamples ?? null, weights[t.clientId] ?? null));
  const seeds = { selection: a.selectionSeed, clients: Object.fromEntries(accepted.map((t) => [t.clientId, t.seed])) };
  return { adapter, participants, seeds, serverState: state.tensors, ...clip };
}

/** The survivors' weighted mean from the unmasked SecAgg sum, through the same strategy; marks their tasks. */
export async function secaggOutcome(registry: ClientRegistry, strategy: Strategy, a: Attempt, out: SecAggOutcome): Promise<Outcome | string> {
  const sa = a.secagg!;
  const byClient = new Map([...a.tasks.values()].map((t) => [t.clientId, t]));
  let adapter: NamedTensor[];
  let totalWeight: number;
  const state: ServerState = { tensors: a.base.serverState ?? [], round: a.round };
  try {
    // The weight and norm gate: what the coordinator can check of inputs it never sees (proto/secagg/gate.ts).
    const sum = unmaskedSum(out.sum, sa.config, a.base.adapter, out.survivors.length);
    totalWeight = sum.totalWeight;
    // Sites that added DP noise shares before masking: the sum arrives noised, and says so to the strategy.
    adapter = await closeSum(a, strategy, (sa.config.noiseMultiplier ?? 0) > 0 ? { ...sum, noised: true } : sum, state);
  } catch (e) {
    return `aggregation failed: ${(e as Error).message}`;
  }
  const clip = state.adaptiveClip ? { adaptiveClip: state.adaptiveClip } : {};
  const survivors = out.survivors.map((id) => byClient.get(id)!);
  for (const t of survivors) t.inSum = true;
  // Individual weights stay hidden under SecAgg: participants carry none; only their sum is known.
  const participants = survivors.map((t) => participantOf(registry, t, null, null));
  const seeds = { selection: a.selectionSeed, clients: Object.fromEntries(survivors.map((t) => [t.clientId, t.seed])) };
  const secureAggregation: SecureAggregationRecord = {
    sessionId: out.sessionId,
    graph: sa.config.graph.kind === 'full' ? 'full' : `harary(k=${sa.config.graph.k})`,
    threshold: sa.config.threshold,
    selected: [...sa.config.selected],
    survivors: [...out.survivors],
    dropped: [...out.dropped],
    totalWeight,
    clipNorm: sa.config.clipNorm,
    weightCap: sa.config.weightCap,
    maxClients: sa.config.maxClients,
  };
  return { adapter, participants, seeds, secureAggregation, serverState: state.tensors, ...clip };
}

function participantOf(registry: ClientRegistry, t: Task, numExamples: number | null, weight: number | null): Participant {
  return {
    clientId: t.clientId,
    clientName: registry.byId(t.clientId)?.name ?? t.clientName ?? t.clientId,
    numExamples,
    weight,
    seed: t.seed,
    backend: t.metrics?.backend ?? registry.byId(t.clientId)?.backend ?? '',
    metrics: t.metrics?.values ?? {},
    ...(t.metrics?.loraRank ? { loraRank: t.metrics.loraRank } : {}),
  };
}

/** Example-weighted mean (plain mean under SecAgg, where weights are hidden) of every metric the participants reported, as clients.<name>. */
export function clientMetricMeans(ps: readonly Participant[]): Record<string, number> {
  const sums = new Map<string, { s: number; w: number }>();
  for (const p of ps) {
    for (const [k, v] of Object.entries(p.metrics)) {
      if (!Number.isFinite(v)) continue;
      const e = sums.get(k) ?? { s: 0, w: 0 };
      const w = p.numExamples ?? 1;
      e.s += v * w;
      e.w += w;
      sums.set(k, e);
    }
  }
  const out: Record<string, number> = {};
  for (const [k, { s, w }] of [...sums.entries()].sort()) out[`clients.${k}`] = s / w;
  return out;
}
