// Collecting an attempt's updates until they can be aggregated: a plain round waits for its uploads (each folded
// into the running sum chunk by chunk as it arrived, by the Attempt) and drops sites revoked meanwhile; a SecAgg round drives its four
// stages over the task streams. Both end in the strategy (round-outcome.ts), or in a string saying why the
// attempt failed.
import type { Attempt } from './attempt';
import { reopenUpdate, type RoundContext } from './round-context';
import { plainOutcome, secaggOutcome, type Outcome } from './round-outcome';
import type { SecAggAttempt } from './secagg-attempt';
import { redeclareFloraRanks } from './flora-stack';

/** Plain rounds: wait for uploads (each already in the running sum), then hand the sum to the strategy. */
export async function plainStages(ctx: RoundContext, cur: Attempt): Promise<Outcome | string> {
  const { d } = ctx;
  await cur.waitFor(() => cur.allDone(), cur.deadline);
  await cur.close();
  if (ctx.stopping()) return 'coordinator stopping';
  // A site revoked before the round closed does not count, though its update was accepted: the sum is rebuilt
  // from the spool without it (exact integer sums: the same bytes as a round it never uploaded to). So is a sum a
  // refused upload could not be taken back out of (RunningSum.takeBack, running-sum.ts).
  const enrolled = d.enrolled ?? (() => true);
  await cur.dropRevoked(enrolled, (id) => reopenUpdate(ctx, cur.round, ctx.spool.updateFile(cur.round, id), cur.base, id));
  // Under 'flora', the ranks of updates carried over a restart or folded again just now (flora-stack.ts).
  for (const clientId of redeclareFloraRanks(cur.aggregation, cur.tasks.values()))
    d.log('warn', 'a spooled lora_rank leaves non-zero components out; the update is stacked whole', { round: cur.round, clientId });
  const n = cur.aggregation!.count;
  // A Poisson-sampled round releases whatever arrived, even nothing (noise only), as DP-FedAvg does: failing and
  // redrawing a small sample would condition the sample on its size, which the accountant does not model.
  if (!cur.sampled && n < d.config.rounds.minUpdates) return `${n} of ${cur.tasks.size} updates arrived; ${d.config.rounds.minUpdates} needed`;
  ctx.setPhase('AGGREGATING');
  return plainOutcome(d.registry, d.strategy, cur);
}

/** Secure aggregation: the four stages over the task streams, then the unmasked sum to the strategy. */
export async function secaggStages(ctx: RoundContext, cur: Attempt, sa: SecAggAttempt, trainingDeadline: number): Promise<Outcome | string> {
  const { d } = ctx;
  const byClient = new Map([...cur.tasks.values()].map((t) => [t.clientId, t]));
  let out;
  try {
    out = await sa.drive(
      {
        awaited: (ids) => cur.awaited(ids),
        send: (id, ev) => d.registry.byId(id)?.sink?.write(ev),
        taskIdOf: (id) => byClient.get(id)!.taskId,
        waitFor: (cond, until) => cur.waitFor(cond, until),
        stopping: () => ctx.stopping(),
      },
      trainingDeadline,
    );
  } catch (e) {
    return `secure aggregation aborted: ${(e as Error).message}`;
  }
  ctx.setPhase('AGGREGATING');
  return secaggOutcome(d.registry, d.strategy, cur, out);
}
