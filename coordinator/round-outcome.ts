// What an attempt hands the store: the next adapter, its participants, its seeds and, under secure aggregation,
// the public record of the sum. Plain rounds open the sealed updates and run the strategy; SecAgg rounds decode
// the unmasked sum (the coordinator never saw an individual update).
import type { NamedTensor, TensorList } from '../proto/tensors';
import type { SealedBlob } from '../proto/crypto/sealed-upload';
import { decodeSum } from '../proto/secagg/encoding';
import type { Checkpoint, Participant, SecureAggregationRecord } from './checkpoints/types';
import type { ClientRegistry } from './registry';
import type { Task } from './rounds';
import type { SecAggAttempt, SecAggOutcome } from './secagg-attempt';
import type { Strategy } from './strategy/strategy';

export interface Outcome {
  readonly adapter: NamedTensor[];
  readonly participants: Participant[];
  readonly seeds: Record<string, number | Record<string, number>>;
  readonly secureAggregation?: SecureAggregationRecord;
}

export interface OutcomeContext {
  readonly registry: ClientRegistry;
  readonly strategy: Strategy;
  readonly unseal: (blob: SealedBlob, like: TensorList) => NamedTensor[];
  readonly base: Checkpoint;
  readonly selectionSeed: number;
  readonly tasks: ReadonlyMap<string, Task>;
}

/** FedAvg (or another strategy) over the accepted updates, sorted by client id; a string says why it failed. */
export function aggregatePlain(c: OutcomeContext, accepted: readonly Task[]): Outcome | string {
  let result;
  try {
    result = c.strategy.aggregate(
      c.base.adapter,
      accepted.map((t) => ({ clientId: t.clientId, numExamples: t.upload!.numExamples, delta: c.unseal(t.upload!.sealed, c.base.adapter) })),
    );
  } catch (e) {
    return `aggregation failed: ${(e as Error).message}`;
  }
  const participants = accepted.map((t) => participantOf(c.registry, t, t.upload!.numExamples, result.weights[t.clientId]));
  const seeds = { selection: c.selectionSeed, clients: Object.fromEntries(accepted.map((t) => [t.clientId, t.seed])) };
  return { adapter: result.adapter, participants, seeds };
}

/** The survivors' weighted mean from the SecAgg sum; marks their tasks as part of it. */
export function aggregateSecAgg(c: OutcomeContext, sa: SecAggAttempt, out: SecAggOutcome): Outcome {
  const byClient = new Map([...c.tasks.values()].map((t) => [t.clientId, t]));
  const { adapter, totalWeight } = decodeSum(out.sum, sa.config, c.base.adapter);
  const survivors = out.survivors.map((id) => byClient.get(id)!);
  for (const t of survivors) t.inSum = true;
  // Individual weights stay hidden under SecAgg: participants carry none; only their sum is known.
  const participants = survivors.map((t) => participantOf(c.registry, t, null, null));
  const seeds = { selection: c.selectionSeed, clients: Object.fromEntries(survivors.map((t) => [t.clientId, t.seed])) };
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
  return { adapter, participants, seeds, secureAggregation };
}

function participantOf(registry: ClientRegistry, t: Task, numExamples: number | null, weight: number | null): Participant {
  return {
    clientId: t.clientId,
    clientName: registry.byId(t.clientId)?.name ?? t.clientId,
    numExamples,
    weight,
    seed: t.seed,
    backend: t.metrics?.backend ?? registry.byId(t.clientId)?.backend ?? '',
    metrics: t.metrics?.values ?? {},
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
