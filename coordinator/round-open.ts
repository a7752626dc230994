// Opening an attempt: wait for enough sites (unless a resumed round needs nobody), select them (seeded; a resumed
// round keeps its selection), record the attempt in the spool, set up secure aggregation when it is on, and issue
// one task per selected site. An update a crashed process had accepted is reopened and carried into the new
// attempt under the task it was signed for, so its site is not asked to train again; a task a site declined before
// the crash is carried the same way, declined (spool-decline.ts).
import { Attempt } from './attempt';
import type { Task } from './task';
import type { Checkpoint } from './checkpoints/types';
import { reopenUpdate, type RoundContext, type RoundResume } from './round-context';
import type { ClientSelected } from './round-events';
import type { RoundPrivacy } from './round-privacy';
import type { SpoolState } from './round-spool';
import { SecAggAttempt } from './secagg-attempt';
import { roundAggregation, uploadLayout } from './lora-aggregation';
import { deriveSeed, selectClients } from './selection';
import { sampledCohort } from './privacy/sampling';
import type { TaskBook } from './task-book';
import { trainTask } from './train-plan';
import { logsRoundSites, siteFields } from './ops/sample-secrecy';
import { reopenDeclines } from './spool-decline';

export interface OpenContext extends RoundContext {
  /** This process's share of every task id: a restarted coordinator never re-issues an id a site completed. */
  readonly epoch: string;
  readonly book: TaskBook;
  readonly privacy: RoundPrivacy;
  /** Waits (with no deadline) until cond() holds; woken by every registry change. */
  waitForClients(cond: () => boolean): Promise<void>;
  /** Records the attempt being started (the spool's state of the round in progress). */
  saveState(state: SpoolState): Promise<void>;
  onAccepted(t: Task, numExamples: number): void;
}

export interface OpenedAttempt {
  readonly cur: Attempt;
  readonly secagg: SecAggAttempt | undefined;
  /** When training ends (under SecAgg the four stages follow, each with its own timeout). */
  readonly trainingDeadline: number;
  readonly ids: string[];
  /** The sites asked to train (not those whose update was carried over a restart). */
  readonly selected: ClientSelected[];
  readonly carried: number;
}

export type Opening = { readonly opened: OpenedAttempt } | { readonly failed: string } | { readonly stopped: true };

export async function openAttempt(ctx: OpenContext, round: number, r: RoundResume, base: Checkpoint): Promise<Opening> {
  const { d } = ctx;
  const cfg = d.config;
  const attempt = r.attempt;
  const spooled = r.spooled && !cfg.secagg.enabled ? r.spooled : null;
  // A sampled run resumes only a spooled Poisson draw (one with its population): a selection spooled before the run
  // switched to privacy.sampling 'poisson' was not secret, and is drawn again.
  const resumeSelection = spooled && (!ctx.privacy.sampled || spooled.state.population !== undefined) ? spooled.state : null;
  // Which spooled updates still verify (opened and dropped again here, one at a time; the restart path only).
  const valid = new Set<string>();
  if (spooled)
    for (const id of spooled.state.selected) if (spooled.updates.has(id) && (await reopenUpdate(ctx, round, spooled.updates.get(id)!, base, id))) valid.add(id);
  // The tasks declined before the crash stay declined in the resumed attempt: the crash changed nothing of why
  // (a failed attempt is another matter: round-spool.ts dropUpdates). Their sites are not waited for or asked again.
  const declines = spooled
    ? reopenDeclines({
        round,
        baseManifestSha256: base.manifestSha256,
        spooled,
        taskTag: (a, id) => ctx.privacy.taskTag(round, a, id),
        log: d.log,
        sampled: ctx.privacy.sampled,
      })
    : new Map<string, never>();
  // A resumed round whose selected clients all uploaded (or declined) before the crash needs nobody: it commits at once.
  const outstanding = resumeSelection ? resumeSelection.selected.filter((id) => !valid.has(id) && !declines.has(id)) : null;
  if (outstanding === null || outstanding.length > 0) {
    ctx.setPhase('WAITING_FOR_CLIENTS');
    await ctx.waitForClients(() => d.registry.connected().length >= ctx.privacy.minConnected());
    if (ctx.stopping()) return { stopped: true };
  }

  ctx.setPhase('SELECTING');
  const selectionSeed = resumeSelection?.selectionSeed ?? deriveSeed(cfg.run.seed, 'select', round, attempt);
  const connected = (): string[] => d.registry.connected().map((s) => s.clientId);
  // privacy.sampling 'poisson': the round's secret Poisson sample (the same for every attempt, and after a restart).
  const drawn = ctx.privacy.sampled && !resumeSelection ? ctx.privacy.draw(round, connected()) : null;
  const ids = resumeSelection
    ? [...resumeSelection.selected]
    : (drawn?.ids ?? selectClients(connected(), cfg.rounds.clientsPerRound, cfg.rounds.minUpdates, selectionSeed));
  const population = drawn?.cohort.population ?? resumeSelection?.population;
  // Recorded before any task goes out: a restarted coordinator resumes this draw and its denominator.
  await ctx.saveState({
    round,
    baseManifestSha256: base.manifestSha256,
    attempt,
    failed: r.failed,
    selected: ids,
    selectionSeed,
    ...(population !== undefined ? { population } : {}),
  });
  const trainingDeadline = Date.now() + cfg.rounds.deadlineMs;
  let secagg: SecAggAttempt | undefined;
  if (cfg.secagg.enabled) {
    try {
      const keys = Object.fromEntries(ids.map((id) => [id, d.registry.byId(id)!.publicKey]));
      // The masked vector covers the tensors an update carries: only lora_B under 'ffa'.
      const layout = uploadLayout(base.adapter, roundAggregation(cfg));
      // A masked upload's sealed chunks wait in the round spool's directory only until it is accepted or taken
      // back out of the sum (never committed there; a temporary a crash leaves is deleted at the next start).
      const scratch = (clientId: string, head: Buffer) => ctx.spool.openUpload(round, clientId, head);
      secagg = new SecAggAttempt(
        cfg,
        `${cfg.run.id}/r${round}/a${attempt}`,
        base.manifestSha256,
        layout,
        ids,
        keys,
        cfg.secagg.stageTimeoutMs,
        scratch,
        base.serverState,
      );
    } catch (e) {
      return { failed: `secure aggregation cannot run: ${(e as Error).message}` };
    }
    if (ctx.privacy.beforeSecAgg(round, secagg.config.threshold, ids.length)) return { stopped: true };
  }
  // Under SecAgg four stages follow training (share keys, masked input, consistency, unmask), each with its own timeout.
  const deadline = secagg ? trainingDeadline + 4 * cfg.secagg.stageTimeoutMs : trainingDeadline;
  const cur = new Attempt(
    round,
    attempt,
    base,
    selectionSeed,
    deadline,
    {
      registry: d.registry,
      strategy: d.strategy,
      aggregation: roundAggregation(cfg),
      floraRank: cfg.lora.r,
      spool: secagg ? undefined : ctx.spool,
      stopping: () => ctx.stopping(),
      reconnectGraceMs: cfg.rounds.reconnectGraceMs,
      onAccepted: (t, numExamples) => ctx.onAccepted(t, numExamples),
      log: d.log,
    },
    secagg,
  );
  if (ctx.privacy.sampled) cur.sampled = sampledCohort(cfg.privacy.samplingRate, population ?? ids.length);
  const selected: ClientSelected[] = [];
  let carried = 0;
  for (const clientId of ids) {
    const prior = spooled && valid.has(clientId) ? await reopenUpdate(ctx, round, spooled.updates.get(clientId)!, base, clientId) : null;
    // A carried update keeps the task it was signed for (a site resuming that upload is answered from it), a carried
    // decline the task declined (a repeated DeclineTask gets its ack, a late upload or report its refusal).
    // A sampled round's task ids do not name the site: they reach the coordinator's info log ('update accepted').
    const declined = prior ? undefined : declines.get(clientId);
    const taskId = prior?.binding.taskId ?? declined?.taskId ?? `r${round}-a${attempt}-${ctx.epoch}-${ctx.privacy.taskTag(round, attempt, clientId)}`;
    const taskAttempt = prior?.binding.attempt ?? declined?.attempt ?? attempt;
    const seed = prior ? prior.seed : deriveSeed(cfg.run.seed, 'train', round, taskAttempt, clientId);
    const t: Task = {
      taskId,
      clientId,
      round,
      attempt: taskAttempt,
      baseVersion: base.manifest.version,
      seed,
      deadline,
      owner: cur,
      state: 'assigned',
      clientName: prior?.clientName,
      wire: trainTask(cfg, d.adapterConfig, { taskId, round, attempt: taskAttempt, base, deadline, seed, secagg }),
    };
    cur.tasks.set(taskId, t);
    ctx.book.issue(t);
    if (prior) {
      try {
        await cur.carry(t, prior); // folded into the running sum from its record, chunk by chunk
        carried++;
        const m = spooled?.metrics.get(clientId);
        if (m) t.metrics = m;
      } catch (e) {
        d.log('warn', 'spooled update not admitted', siteFields(ctx.privacy.sampled, { round, clientId, error: (e as Error).message }));
      }
    }
    if (declined) {
      cur.carryDecline(t, declined.reason);
      if (logsRoundSites(cfg)) d.log('info', 'declined task carried over a restart', { round, clientId, taskId, reason: declined.reason });
    }
    if (t.state === 'assigned') selected.push({ round, attempt, clientId, taskId, seed });
  }
  return { opened: { cur, secagg, trainingDeadline, ids, selected, carried } };
}
