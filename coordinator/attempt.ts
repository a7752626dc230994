// One attempt of a round: the object that owns its tasks, its deadline, the uploads it accepted (folded into
// the strategy's running sum as they arrive: running-sum.ts) or its SecAgg session, and the one wait its phases use.
// The round engine (rounds.ts) creates an Attempt, sends its tasks, waits on it and turns its result into a
// version (round-outcome.ts); the service reaches an Attempt through the task a message names.
import { ProtocolError, status } from '../proto/errors';
import type { Checkpoint } from './checkpoints/types';
import type { ClientRegistry } from './registry';
import type { RoundSpool } from './round-spool';
import type { SecAggAttempt } from './secagg-attempt';
import { encodeSpoolHead, type SealedUpdate, type SpoolHeadFields } from './sealed-update';
import type { SpoolUpload } from './spool-upload';
import type { ReopenedUpdate } from './spool-reopen';
import type { Aggregation, Strategy } from './strategy/strategy';
import type { SealedUploadOpener } from '../proto/crypto/sealed-upload';
import { RunningSum, roundClosed } from './running-sum';
import type { RoundLoraAggregation } from '../proto/model/lora-aggregation';
import type { NamedTensor } from '../proto/tensors';
import { uploadLayout } from './lora-aggregation';
import { strategyUploadLayout } from './strategy/scaffold';
import type { Task } from './task';
import type { SampledCohort } from './privacy/sampling';
import { ReconnectGrace } from './reconnect-grace';

export interface AttemptDeps {
  readonly registry: ClientRegistry;
  readonly strategy: Strategy;
  /** lora.aggregation: under 'ffa' updates (and the sum) cover only the lora_B tensors. */
  readonly aggregation: RoundLoraAggregation;
  /** lora.r: under 'flora' an update is a site's fresh factors at this rank (zero-padded), not the base's layout. */
  readonly floraRank?: number;
  /** Plain rounds: where accepted updates are kept, sealed, until the round commits. */
  readonly spool?: RoundSpool;
  readonly stopping: () => boolean;
  /**
   * rounds.reconnectGraceMs: how long a selected site that lost its task stream is still waited for (0: not at
   * all). A stream can drop for a moment under load while the site keeps its task; its update and report count.
   */
  readonly reconnectGraceMs: number;
  readonly onAccepted: (t: Task, numExamples: number) => void;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export class Attempt {
  readonly tasks = new Map<string, Task>();
  /** Plain rounds: the running sum and the uploads streaming into it. */
  private readonly plain: RunningSum | undefined;
  private sa: SecAggAttempt | undefined;
  private baseCk: Checkpoint | undefined;
  private layout: NamedTensor[] | undefined;
  private isOpen = true;
  private wakeUp: () => void = () => undefined;
  private woken: Promise<void>;
  /** The reconnect grace of the sites allDone still waits for; it wakes the wait when one ends. */
  private readonly grace: ReconnectGrace;
  /** Client ids whose task was declined (decline): no stage waits for them. */
  private readonly declinedIds = new Set<string>();

  /** A Poisson-sampled round's public description (privacy/sampling.ts): its mean's fixed denominator; no names. */
  sampled?: SampledCohort;

  constructor(
    readonly round: number,
    readonly attempt: number,
    base: Checkpoint,
    readonly selectionSeed: number,
    /** Uploads are refused after this (unix ms). */
    readonly deadline: number,
    private readonly d: AttemptDeps,
    secagg?: SecAggAttempt,
  ) {
    this.baseCk = base;
    // SCAFFOLD: the Δc tensors travel after the adapter's (strategy/scaffold.ts).
    this.layout = strategyUploadLayout(d.strategy, uploadLayout(base.adapter, d.aggregation, d.floraRank));
    this.sa = secagg;
    this.plain = secagg
      ? undefined
      : new RunningSum(this.layout, {
          round,
          strategy: d.strategy,
          baseState: { tensors: base.serverState ?? [], round },
          spool: d.spool,
          log: d.log,
          counted: (t, numExamples, sha256, u) => this.settle(t, numExamples, sha256, u),
        });
    this.woken = new Promise<void>((r) => (this.wakeUp = r));
    this.grace = new ReconnectGrace(d.registry, d.reconnectGraceMs, () => this.wake());
  }

  get open(): boolean {
    return this.isOpen;
  }

  /** The checkpoint this attempt trains from. */
  get base(): Checkpoint {
    if (!this.baseCk) throw new Error(`round ${this.round} attempt ${this.attempt} is retired`);
    return this.baseCk;
  }

  /** The base tensors an update carries: all of them, or only lora_B under 'ffa' (the rest keep their values). */
  get uploadLayout(): NamedTensor[] {
    if (!this.layout) throw new Error(`round ${this.round} attempt ${this.attempt} is retired`);
    return this.layout;
  }

  /** Plain rounds: the strategy's running sum. */
  get aggregation(): Aggregation | undefined {
    return this.plain?.aggregation;
  }

  /** Present when this attempt runs under secure aggregation. */
  get secagg(): SecAggAttempt | undefined {
    return this.sa;
  }

  /**
   * The attempt is over: let go of its sum, its SecAgg session and its base checkpoint. Its tasks stay (the
   * engine keeps them to explain late messages), so nothing large may stay reachable from them.
   */
  retire(): void {
    this.isOpen = false;
    this.grace.clear();
    this.plain?.retire();
    this.sa = undefined;
    this.baseCk = undefined;
    this.layout = undefined;
  }

  /** Whether `t` is a task of this attempt that can still take an upload or a report. */
  holds(t: Task): boolean {
    return this.isOpen && this.tasks.get(t.taskId) === t;
  }

  /** Something an attempt waits for may have changed. */
  wake(): void {
    this.wakeUp();
  }

  /** Aborted when the engine stops: work that would outlast the attempt for nothing (a FLoRA close) ends at once. */
  private readonly stopCtl = new AbortController();
  get stopSignal(): AbortSignal {
    return this.stopCtl.signal;
  }

  /** The engine is stopping: wakes every wait and aborts stopSignal. */
  stop(): void {
    this.stopCtl.abort();
    this.wake();
  }

  /**
   * Resolves when cond() holds, at `until`, or when the engine stops. The timer, not Date.now(), ends the
   * wait: a timer may fire a millisecond before Date.now() reaches `until`, and a loop that re-checked the
   * clock would then sleep with nobody left to wake it.
   */
  async waitFor(cond: () => boolean, until: number): Promise<void> {
    let expired = false;
    const timer = setTimeout(
      () => {
        expired = true;
        this.wake();
      },
      Math.max(0, until - Date.now()),
    );
    try {
      while (!this.d.stopping() && !expired && !cond()) {
        await this.woken;
        this.woken = new Promise<void>((r) => (this.wakeUp = r));
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Every selected client uploaded and reported, or is gone: not uploading, and without its task stream for
   * longer than the reconnect grace (left or revoked: at once). A site inside its grace is waited for, and the
   * wait is woken when that grace ends.
   */
  allDone(): boolean {
    const waiting: string[] = [];
    for (const t of this.tasks.values()) {
      if (t.carried || t.state === 'declined' || (t.state === 'uploaded' && t.metrics !== undefined)) continue;
      if (t.state === 'receiving' || t.state === 'declining') return false;
      waiting.push(t.clientId);
    }
    return !this.grace.anyAwaited(waiting);
  }

  /** Under SecAgg, a stage's wait: whether any of its clients that have not spoken is still waited for (the grace). */
  awaited(clientIds: readonly string[]): boolean {
    return this.grace.anyAwaited(this.declinedIds.size === 0 ? clientIds : clientIds.filter((id) => !this.declinedIds.has(id)));
  }

  /**
   * The site cannot finish task `t` (DeclineTask): the attempt stops waiting for it (allDone, and SecAgg's stage 1).
   * Resolves true once the decline holds, false for a repeat (once the first holds: the same ack). Refused once its
   * update began, or under SecAgg once it advertised its keys: from then on a site that goes quiet is a dropout,
   * which the protocol recovers from. In a plain round the decline is spooled first (spool-decline.ts): it holds,
   * and the site hears back, only once its record is on disk, so an acknowledged decline survives a kill -9 and the
   * resumed attempt does not wait for the site again. Meanwhile the task is 'declining' (it takes nothing and is
   * still waited for, for the milliseconds of a write). A record that cannot be written refuses the decline with
   * UNAVAILABLE (the site sends it again, as a report) and leaves the task as it was. Under SecAgg nothing is
   * spooled, as nothing of a SecAgg attempt is: a restarted coordinator starts a new session with fresh tasks.
   */
  decline(t: Task, reason: string): Promise<boolean> {
    if (t.decline) return t.decline.recorded.then(() => false);
    if (t.state !== 'assigned' || t.report) {
      const what = t.state === 'receiving' ? 'an upload in progress' : t.state === 'uploaded' ? 'an accepted update' : 'a metrics report';
      throw new ProtocolError(status.FAILED_PRECONDITION, `task ${t.taskId} has ${what}: it cannot be declined`);
    }
    if (this.sa?.hasAdvertised(t.clientId)) {
      throw new ProtocolError(status.FAILED_PRECONDITION, `task ${t.taskId} is past SecAgg stage 1 (its keys are in the roster): it cannot be declined`);
    }
    t.state = 'declining';
    const record = { round: this.round, baseManifestSha256: this.base.manifestSha256, clientId: t.clientId, taskId: t.taskId, attempt: t.attempt, reason };
    const recorded = (async () => {
      try {
        await this.d.spool?.putDecline(this.round, t.clientId, record);
      } catch (e) {
        t.state = 'assigned';
        t.decline = undefined;
        this.wake();
        // The errno only: the error's own text names the run directory.
        this.d.log('error', 'could not spool a decline', { taskId: t.taskId, errno: (e as NodeJS.ErrnoException).code ?? 'unknown' });
        throw new ProtocolError(status.UNAVAILABLE, `task ${t.taskId}: the coordinator could not record the decline; send it again`);
      }
      this.declined(t, reason);
    })();
    t.decline = { reason, recorded };
    return recorded.then(() => true);
  }

  /** A decline an earlier process of this coordinator spooled (round-open.ts): the task is declined as it was then. */
  carryDecline(t: Task, reason: string): void {
    this.declined(t, reason);
  }

  private declined(t: Task, reason: string): void {
    t.state = 'declined';
    t.decline ??= { reason, recorded: Promise.resolve() };
    this.declinedIds.add(t.clientId);
    this.wake();
  }

  beginUpload(t: Task): void {
    if (t.state === 'uploaded') throw new ProtocolError(status.ALREADY_EXISTS, `task ${t.taskId} already has an accepted update`);
    if (t.state === 'receiving') throw new ProtocolError(status.ALREADY_EXISTS, `an upload for task ${t.taskId} is already in progress`);
    t.state = 'receiving';
  }

  /**
   * The spool file an upload's chunks stream into once its header checked out. Under SecAgg a scratch file of
   * the attempt's, deleted once the masked input is accepted or taken back out of the sum (never kept).
   */
  spoolUpload(t: Task, u: SpoolHeadFields): SpoolUpload | undefined {
    const head = encodeSpoolHead(u, { seed: t.seed });
    return this.sa ? this.sa.openScratch(t.clientId, head) : this.d.spool?.openUpload(this.round, t.clientId, head);
  }

  /**
   * An upload that was refused or broke off: the task can take another one at once; what it folded into the sum
   * is taken back (resolves when it is, before the caller deletes its spool file).
   */
  abortUpload(t: Task): Promise<void> {
    if (t.state === 'receiving') t.state = 'assigned';
    this.wake();
    if (this.sa) return this.sa.abortMasked(t.clientId);
    return this.plain ? this.plain.abort(t) : Promise.resolve();
  }

  /** Plain rounds, at an upload's header: its fold into the running sum opens (RunningSum.openFold). */
  openFold(t: Task, numExamples: number, spool: SpoolUpload, opener: () => SealedUploadOpener): void {
    if (!this.holds(t)) throw roundClosed(t);
    this.plain!.openFold(t, numExamples, spool, opener);
  }

  /** One opened chunk of a plain upload, folded into the running sum (RunningSum.foldChunk). */
  foldChunk(t: Task, plaintext: Uint8Array, owned = false): void {
    if (!this.plain || !this.isOpen) throw roundClosed(t);
    this.plain.foldChunk(t, plaintext, owned);
  }

  /** Every chunk of a plain upload still on a fold helper folded (RunningSum.foldSettled). */
  foldSettled(t: Task): Promise<void> | undefined {
    return this.plain?.foldSettled(t);
  }

  /** Accepts a plain upload whose every chunk is in the sum, spooled before it counts (RunningSum.accept). */
  async accept(t: Task, u: SealedUpdate): Promise<void> {
    if (!this.holds(t) || Date.now() > this.deadline || !this.plain?.isStreaming(t)) throw roundClosed(t);
    await this.plain.accept(t, u);
    // A report taken before the upload was accepted was not spooled then (recordMetrics spools beside an update):
    // it is now, before the site hears back, so a restarted coordinator still has it (under 'flora', the rank).
    if (t.metrics && this.d.spool) {
      await this.d.spool
        .putMetrics(this.round, t.clientId, t.metrics)
        .catch((e: Error) => this.d.log('warn', 'could not spool metrics', { taskId: t.taskId, error: e.message }));
    }
  }

  /** An update accepted by an earlier process of this coordinator, reopened from the spool (RunningSum.carry). */
  carry(t: Task, u: ReopenedUpdate): Promise<void> {
    return this.plain!.carry(t, u);
  }

  /** The update is in the sum: its task is done. */
  private settle(t: Task, numExamples: number, sha256: string, u: SealedUpdate): void {
    t.uploader = { name: u.clientName, publicKey: u.clientPublicKey };
    t.numExamples = numExamples;
    t.state = 'uploaded';
    t.acceptedSha256 = sha256;
    this.d.onAccepted(t, numExamples);
    this.wake();
  }

  /** A masked input went into the SecAgg sum: the task is done (nothing of it is kept but the hash). */
  acceptMasked(t: Task, sha256: Buffer): void {
    t.state = 'uploaded';
    t.acceptedSha256 = sha256.toString('hex');
    this.d.onAccepted(t, 0);
    this.wake();
  }

  /**
   * Records a site's metrics report, `sha256` its digest (report-digest.ts); spooled first, when its update is: a
   * restarted coordinator still has them. One report per task: a repeat of this one is the service's to acknowledge
   * (RoundEngine.repeatedReport), any other is refused.
   */
  recordMetrics(t: Task, values: Record<string, number>, backend: string, loraRank: number, sha256: string): Promise<void> {
    if (t.report || t.metrics) {
      throw new ProtocolError(
        status.ALREADY_EXISTS,
        `task ${t.taskId} already has a metrics report, with other content (the same report again is acknowledged)`,
      );
    }
    const metrics = { values, backend, ...(loraRank > 0 ? { loraRank } : {}) };
    // Taken at once (before the spool write), so a repeat sent meanwhile waits for this one, not a second write.
    const recorded = (async () => {
      if (this.d.spool && t.state === 'uploaded') {
        await this.d.spool
          .putMetrics(this.round, t.clientId, metrics)
          .catch((e: Error) => this.d.log('warn', 'could not spool metrics', { taskId: t.taskId, error: e.message }));
      }
      t.metrics = metrics;
      this.wake();
    })();
    t.report = { sha256, recorded };
    return recorded;
  }

  /**
   * No more uploads: every upload still streaming is taken back out of the sum, and accepts already past their
   * last chunk finish, so each update is either wholly in the sum or not at all.
   */
  async close(): Promise<void> {
    this.isOpen = false;
    this.grace.clear();
    await this.plain?.close();
  }

  /**
   * After close(): drops the accepted updates whose site's key is no longer enrolled, the running sum rebuilt from
   * the spool over the others (RunningSum.dropRevoked). Returns the client ids dropped.
   */
  async dropRevoked(
    enrolled: (name: string, publicKey: Uint8Array) => boolean,
    reopen: (clientId: string) => Promise<ReopenedUpdate | null>,
  ): Promise<string[]> {
    if (!this.plain) return [];
    return this.plain.dropRevoked(this.tasks.values(), () => this.uploadLayout, enrolled, reopen, !!this.sampled);
  }

  /** Tells every selected client whose update is not part of the result that the round closed without it. */
  cancelUnfinished(): void {
    for (const t of this.tasks.values()) {
      const finished = t.state === 'uploaded' && (this.secagg === undefined || t.inSum === true);
      if (!finished && !t.carried) this.d.registry.byId(t.clientId)?.sink?.write({ cancel: { task_id: t.taskId, reason: 'round closed without this update' } });
    }
  }
}
