// Where rounds are scheduled. One round, one or more attempts (attempt.ts), each walking these phases:
//   WAITING_FOR_CLIENTS (rounds.minClients connected) → SELECTING (seeded) → TRAINING (tasks out; until every
//   selected client uploaded and reported, or the deadline) → AGGREGATING (strategy) → COMMITTING (optional
//   evaluator, then the store) → the next round.
// An attempt with fewer than rounds.minUpdates accepted updates fails cleanly: outstanding tasks are
// cancelled, nothing is committed, and the round is retried (attempt + 1) up to rounds.maxAttempts failures.
// Across restarts (round-spool.ts): attempt numbers continue where the last process left them and every task id
// carries this process's epoch, so no task id is ever issued twice; updates accepted before a crash are
// reloaded and count; an attempt cut short by a crash is not a failure.
// The engine holds the run's loop and state; each phase has its own file: round-open.ts (wait, select, issue
// tasks, carry spooled updates), round-collect.ts (uploads or the SecAgg stages, then the strategy),
// round-commit.ts (manifest, store, release pointer, early stopping), round-privacy.ts (DP budget and charge),
// train-plan.ts (the task a site is sent), task-book.ts (issued tasks and the service's lookups).
// No gRPC here: the service (service.ts) validates the wire and calls in; tasks go out through the registry.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { sortByName, type NamedTensor } from '../proto/tensors';
import type { Checkpoint } from './checkpoints/types';
import type { Attempt } from './attempt';
import type { Task } from './task';
import type { Outcome } from './round-outcome';
import { RoundSpool, type SpoolState } from './round-spool';
import type { SealedUpdate, SpoolHeadFields } from './sealed-update';
import type { SpoolUpload } from './spool-upload';
import type { SealedUploadOpener } from '../proto/crypto/sealed-upload';
import type { SecAggAttempt } from './secagg-attempt';
import type { RoundCommitted, RoundEvents, RoundPhase } from './round-events';
import { Evaluations } from './evaluation/evaluations';
import type { RoundEngineDeps, RoundResume } from './round-context';
import { openAttempt, type OpenContext } from './round-open';
import { plainStages, secaggStages } from './round-collect';
import { afterCommit, commitVersion, resumeCommitted, type CommitFields } from './round-commit';
import { RoundPrivacy } from './round-privacy';
import { FinishNotice } from './finish-notice';
import { baseOf, secaggOf, TaskBook, uploadLayoutOf } from './task-book';
import { evaluatedAdapter } from './strategy/ema';
import { logsRoundSites, shownCount } from './ops/sample-secrecy';

export * from './round-events';
export type { Task } from './task';
export type { Evaluator, LogFn, RoundEngineDeps } from './round-context';

export class RoundEngine extends EventEmitter<RoundEvents> {
  private latestCk: Checkpoint | null = null;
  private stopping = false;
  private phaseNow: RoundPhase = 'IDLE';
  private current: Attempt | null = null;
  private clientsChanged: (() => void) | null = null;
  /** Once the run ended, clients that (re)attach later are told at once instead of waiting forever. */
  readonly finishNotice: FinishNotice;
  /** Every task issued and every ciphertext accepted in this process (task-book.ts). */
  private readonly book: TaskBook;
  /** This process's share of every task id: a restarted coordinator never re-issues an id a site completed. */
  readonly epoch = randomBytes(4).toString('hex');
  private readonly spool: RoundSpool;
  /** What the spool says about the round in progress (the attempt last started, failures so far). */
  private roundState: SpoolState | null = null;
  /** Federated evaluation of each candidate version (evaluation.*). */
  readonly evaluations: Evaluations;
  /** Why early stopping ended the run (earlyStopping.*), once it did. */
  private earlyStop: string | null = null;
  /** DP-FedAvg's ledger (privacy.enabled), and why the run ended early when its budget ran out. */
  private readonly privacy: RoundPrivacy;
  /** What the round's phases (round-open.ts, round-collect.ts, round-commit.ts) see of the engine. */
  private readonly ctx: OpenContext;

  constructor(private readonly d: RoundEngineDeps) {
    super();
    this.spool = new RoundSpool(d.config.run.dir);
    this.book = new TaskBook(d.registry);
    this.finishNotice = new FinishNotice(d.registry);
    this.privacy = new RoundPrivacy(d.config);
    this.evaluations = new Evaluations({ config: d.config, registry: d.registry, log: d.log, stopping: () => this.stopping, epoch: this.epoch });
    this.ctx = {
      d,
      spool: this.spool,
      epoch: this.epoch,
      book: this.book,
      privacy: this.privacy,
      stopping: () => this.stopping,
      setPhase: (p) => this.setPhase(p),
      waitForClients: (cond) => this.waitForClients(cond),
      saveState: (state) => {
        this.roundState = state;
        return this.spool.saveState(state);
      },
      onAccepted: (t, numExamples) => {
        this.book.noteAccepted(t);
        this.emit('updateAccepted', { round: t.round, attempt: t.attempt, clientId: t.clientId, numExamples });
      },
    };
    d.registry.on('change', () => this.poke());
    d.registry.on('attached', (s: { clientId: string }) => {
      if (this.finishNotice.finished) this.finishNotice.tell(s.clientId);
      else {
        this.resendTask(s.clientId);
        this.evaluations.resend(s.clientId);
      }
    });
  }

  /** The checkpoint tasks currently start from. */
  get latest(): Checkpoint | null {
    return this.latestCk;
  }

  get phase(): RoundPhase {
    return this.phaseNow;
  }

  /** Runs rounds until rounds.total are committed; resumes from the store's latest version. */
  async run(): Promise<Checkpoint> {
    try {
      return await this.runRounds();
    } catch (e) {
      this.setPhase(this.stopping ? 'STOPPED' : 'FAILED');
      throw e;
    }
  }

  private async runRounds(): Promise<Checkpoint> {
    const cfg = this.d.config;
    const stored = await this.d.store.latest();
    await this.privacy.load(stored?.manifest ?? null);
    if (stored) {
      this.latestCk = { ...stored, adapter: sortByName(stored.adapter) };
      this.d.log('info', 'resuming from the latest version', { version: stored.manifest.version, round: stored.manifest.round });
      this.earlyStop = await resumeCommitted(this.ctx, stored);
    } else {
      this.setPhase('COMMITTING');
      // Sorted: every party sees tensors in name order (the client sorts too; checkLayout compares order).
      const adapter = sortByName(await this.d.initialAdapter());
      this.latestCk = await this.commit({ adapter, round: 0, attempt: 0, participants: [], seeds: {}, privacy: this.privacy.initialRecord() });
      this.d.log('info', 'committed the initial adapter', { version: 0 });
      this.earlyStop = await afterCommit(this.ctx, this.latestCk);
      this.emit('roundCommitted', { version: 0, round: 0, attempt: 0, participants: [], metrics: this.latestCk.manifest.metrics });
    }
    while (!this.stopping && !this.earlyStop && !this.privacy.stop && this.latestCk.manifest.round < cfg.rounds.total) {
      const round = this.latestCk.manifest.round + 1;
      // Before anything of the round happens: even with every site surviving, would it exceed the ε budget?
      if (this.privacy.beforeRound(round)) break;
      const spooled = await this.spool.load(round, this.latestCk.manifestSha256);
      const r: RoundResume = { attempt: (spooled?.state.attempt ?? 0) + 1, failed: spooled?.state.failed ?? 0, spooled };
      if (spooled)
        this.d.log('info', 'resuming an interrupted round', {
          round,
          attempt: r.attempt,
          failedAttempts: r.failed,
          spooledUpdates: shownCount(cfg, spooled.updates.size),
        });
      let committed = false;
      while (!committed && !this.stopping && !this.privacy.stop && r.failed < cfg.rounds.maxAttempts) {
        committed = (await this.runAttempt(round, r)) === 'committed';
        r.attempt++;
        r.spooled = null; // what a crashed process left counts for the first attempt after it only
      }
      if (!committed && !this.stopping && !this.privacy.stop) {
        const reason = `round ${round} failed ${cfg.rounds.maxAttempts} attempts`;
        this.finishNotice.finish(this.latestCk.manifest.version, reason);
        throw new Error(reason);
      }
    }
    if (this.stopping) {
      this.setPhase('STOPPED');
    } else {
      const version = this.latestCk.manifest.version;
      const budgetStop = this.privacy.stop;
      const reason = this.earlyStop ?? budgetStop ?? 'all rounds committed';
      if (budgetStop) this.d.log('warn', 'stopping before the round that would exceed the privacy budget', { reason, version });
      this.finishNotice.finish(version, reason);
      this.setPhase('FINISHED');
      this.emit('runFinished', { version, reason });
    }
    return this.latestCk;
  }

  stop(): void {
    this.stopping = true;
    this.current?.stop();
    this.poke();
  }

  private setPhase(p: RoundPhase): void {
    if (p === this.phaseNow) return;
    this.phaseNow = p;
    this.emit('phase', p);
  }

  /** One attempt: open (round-open.ts), collect and aggregate (round-collect.ts), evaluate, commit (round-commit.ts). */
  private async runAttempt(round: number, r: RoundResume): Promise<'committed' | 'failed' | 'stopped'> {
    const attempt = r.attempt;
    const base = this.latestCk!;
    const opening = await openAttempt(this.ctx, round, r, base);
    if ('stopped' in opening) return 'stopped';
    if ('failed' in opening) return this.failAttempt(r, round, opening.failed);
    const { cur, secagg, trainingDeadline, ids, selected, carried } = opening.opened;
    this.current = cur;

    this.setPhase('TRAINING');
    this.emit('roundStarted', {
      round,
      attempt,
      selected: [...ids],
      baseVersion: base.manifest.version,
      selectionSeed: cur.selectionSeed,
      deadline: cur.deadline,
    });
    for (const s of selected) this.emit('clientSelected', s);
    // Under Poisson sampling neither count leaves the coordinator (ops/sample-secrecy.ts).
    this.d.log('info', 'round started', {
      round,
      attempt,
      selected: shownCount(this.d.config, ids.length),
      carried: shownCount(this.d.config, carried),
      baseVersion: base.manifest.version,
      secureAggregation: secagg !== undefined,
    });
    for (const t of cur.tasks.values()) if (t.state === 'assigned') this.sendTask(t); // not a carried update or decline

    try {
      let outcome: Outcome | string;
      try {
        outcome = secagg ? await secaggStages(this.ctx, cur, secagg, trainingDeadline) : await plainStages(this.ctx, cur);
      } finally {
        await cur.close();
        cur.cancelUnfinished();
      }
      if (this.stopping) return 'stopped';
      if (typeof outcome === 'string') return this.failAttempt(r, round, outcome);
      const { adapter, participants, seeds, secureAggregation, serverState, adaptiveClip } = outcome;
      // Sites evaluate the candidate before it commits, so the figures are signed into its own manifest; under
      // strategy.ema they evaluate its average, the adapter it is released as.
      const evaluation = this.evaluations.due(round)
        ? await this.evaluations.run(sortByName(evaluatedAdapter(adapter, serverState)), round, base.manifest.version + 1, participants)
        : undefined;
      if (this.stopping) return 'stopped';
      this.setPhase('COMMITTING');
      const privacy = this.privacy.charge(secureAggregation, cur.sampled, adaptiveClip);
      this.latestCk = await this.commit({ adapter, round, attempt, participants, seeds, secureAggregation, privacy, evaluation, serverState });
      this.earlyStop = await afterCommit(this.ctx, this.latestCk);
      await this.spool.drop(round);
      const ev: RoundCommitted = { version: this.latestCk.manifest.version, round, attempt, participants, metrics: this.latestCk.manifest.metrics };
      this.d.log('info', 'round committed', { version: ev.version, round, attempt, participants: shownCount(this.d.config, participants.length) });
      this.emit('roundCommitted', ev);
      return 'committed';
    } finally {
      cur.retire();
      this.current = null;
    }
  }

  /** A failed attempt: counted in the spool (its updates do not carry into the next attempt, which trains again). */
  private async failAttempt(r: RoundResume, round: number, why: string): Promise<'failed'> {
    const reason = `round ${round} attempt ${r.attempt}: ${why}`;
    r.failed++;
    const final = r.failed >= this.d.config.rounds.maxAttempts;
    if (this.roundState?.round === round) {
      this.roundState = { ...this.roundState, failed: r.failed };
      await this.spool.saveState(this.roundState);
    }
    await this.spool.dropUpdates(round);
    this.d.log('warn', 'round failed', { round, attempt: r.attempt, reason, final });
    this.emit('roundFailed', { round, attempt: r.attempt, reason, final });
    return 'failed';
  }

  private commit(f: CommitFields): Promise<Checkpoint> {
    return commitVersion(this.ctx, this.latestCk, f);
  }

  private sendTask(t: Task): void {
    this.d.registry.byId(t.clientId)?.sink?.write({ train: t.wire });
  }

  /** A client that reconnects mid-round gets its open task again, and under SecAgg the current stage's message. */
  private resendTask(clientId: string): void {
    const cur = this.current;
    if (!cur?.open) return;
    for (const t of cur.tasks.values()) if (t.clientId === clientId && t.state === 'assigned') this.sendTask(t);
    cur.secagg?.redeliver(clientId, (ev) => {
      this.d.registry.byId(clientId)?.sink?.write(ev);
      // SecAgg never runs Poisson-sampled (privacy/sampling.ts): naming the site tells nothing its manifest will not.
      this.d.log('info', 'secagg stage message sent again', { clientId, round: cur.round, message: Object.keys(ev)[0] });
    });
  }

  private poke(): void {
    this.current?.wake();
    this.evaluations.wake();
    const w = this.clientsChanged;
    this.clientsChanged = null;
    w?.();
  }

  /** Waits (with no deadline) until enough clients are connected; woken by every registry change. */
  private async waitForClients(cond: () => boolean): Promise<void> {
    while (!this.stopping && !cond()) await new Promise<void>((r) => (this.clientsChanged = r));
  }

  // ——— the service's view (task-book.ts): tasks looked up with a precise refusal, and the calls an upload makes ———

  /** The open task `taskId` of `clientId`, or the specific reason it cannot take an upload or a report. */
  task(clientId: string, taskId: string, round: number): Task {
    return this.book.task(clientId, taskId, round, this.current);
  }

  /** Whether the task's attempt is still open (a resumed upload is answered only then; later it is a replay). */
  isOpen(t: Task): boolean {
    return t.owner.holds(t);
  }

  /** The task that already accepted this ciphertext, if any (replays and resumed uploads). */
  acceptedBy(sha256Hex: string): Task | undefined {
    return this.book.acceptedBy(sha256Hex);
  }

  /** The SecAgg session a task belongs to, or undefined for a plain round (refuses closed tasks). */
  secaggOf(t: Task): SecAggAttempt | undefined {
    return secaggOf(t);
  }

  /** The global adapter a task's update must match. */
  baseOf(t: Task): Checkpoint {
    return baseOf(t);
  }

  /** The tensors a task's update must carry (the whole base adapter, or its lora_B tensors under 'ffa'). */
  uploadLayoutOf(t: Task): NamedTensor[] {
    return uploadLayoutOf(t);
  }

  beginUpload(t: Task): void {
    t.owner.beginUpload(t);
  }

  /** Resolves once what the upload folded into the sum is taken back out (see Attempt.abortUpload). */
  abortUpload(t: Task): Promise<void> {
    return t.owner.abortUpload(t);
  }

  /** A plain upload's header checked out: its fold into the running sum opens (see Attempt.openFold). */
  openFold(t: Task, numExamples: number, spool: SpoolUpload, opener: () => SealedUploadOpener): void {
    t.owner.openFold(t, numExamples, spool, opener);
  }

  /** One opened chunk of a plain upload, into the running sum (`owned`: its buffer may move to a fold helper). */
  foldChunk(t: Task, plaintext: Uint8Array, owned = false): void {
    t.owner.foldChunk(t, plaintext, owned);
  }

  /** Every chunk of a plain upload folded (see Attempt.foldSettled). */
  foldSettled(t: Task): Promise<void> | undefined {
    return t.owner.foldSettled(t);
  }

  /** Where a plain upload's sealed chunks go as they arrive (see Attempt.spoolUpload). */
  spoolUpload(t: Task, u: SpoolHeadFields): SpoolUpload | undefined {
    return t.owner.spoolUpload(t, u);
  }

  /** A plain upload whose chunks are all in the sum: spooled, and it counts (see Attempt.accept). */
  acceptUpload(t: Task, u: SealedUpdate): Promise<void> {
    return t.owner.accept(t, u);
  }

  acceptMaskedUpload(t: Task, sha256: Buffer): void {
    t.owner.acceptMasked(t, sha256);
  }

  /** Something a SecAgg stage waits for arrived. */
  secaggProgress(t: Task): void {
    t.owner.wake();
  }

  /** A task's metrics report, `sha256` its digest (report-digest.ts): the first one, recorded once. */
  async recordMetrics(t: Task, values: Record<string, number>, backend: string, loraRank: number, sha256: string): Promise<void> {
    await t.owner.recordMetrics(t, values, backend, loraRank, sha256);
    this.emit('metricsReported', { round: t.round, attempt: t.attempt, clientId: t.clientId });
  }

  /** DeclineTask: the attempt stops waiting for the task once it is spooled (Attempt.decline); false for a repeat. */
  async declineTask(clientId: string, taskId: string, round: number, reason: string): Promise<boolean> {
    const t = this.book.open(clientId, taskId, round, this.current);
    if (!(await t.owner.decline(t, reason))) return false;
    this.emit('taskDeclined', { round: t.round, attempt: t.attempt, clientId, reason });
    if (logsRoundSites(this.d.config)) this.d.log('info', 'task declined', { taskId, clientId, round, reason });
    return true;
  }

  /** A repeat of a metrics report this task already took: resolves once the first is recorded (else undefined). */
  repeatedReport(clientId: string, taskId: string, sha256: string): Promise<void> | undefined {
    return this.book.repeatedReport(clientId, taskId, sha256);
  }
}
