// One attempt of a round: the object that owns its tasks, its deadline, the uploads it accepted (folded into
// the strategy's running sum as they arrive) or its SecAgg session, and the one wait its phases use.
// The round engine (rounds.ts) creates an Attempt, sends its tasks, waits on it and turns its result into a
// version (round-outcome.ts); the service reaches an Attempt through the task a message names.
import { ProtocolError, status } from '../proto/errors';
import type { Checkpoint } from './checkpoints/types';
import type { ClientRegistry } from './registry';
import type { RoundSpool } from './round-spool';
import type { SecAggAttempt } from './secagg-attempt';
import { encodeSpoolHead, type SealedUpdate, type SpoolHeadFields } from './sealed-update';
import type { SpoolUpload } from './spool-upload';
import { rebuildSum, type ReopenedUpdate } from './spool-reopen';
import type { Aggregation, Strategy, UpdateFold } from './strategy/strategy';
import type { SealedUploadOpener } from '../proto/crypto/sealed-upload';
import { replayFromSpool, strategyRefusal, undoFromSpool, type LiveUpload } from './live-upload';
import type { RoundLoraAggregation } from '../proto/model/lora-aggregation';
import type { NamedTensor } from '../proto/tensors';
import { uploadLayout } from './lora-aggregation';
import { strategyUploadLayout } from './strategy/scaffold';
import type { Task } from './task';
import type { SampledCohort } from './privacy/sampling';
import { siteFields } from './ops/sample-secrecy';

export interface AttemptDeps {
  readonly registry: ClientRegistry;
  readonly strategy: Strategy;
  /** lora.aggregation: under 'ffa' updates (and the sum) cover only the lora_B tensors. */
  readonly aggregation: RoundLoraAggregation;
  /** Plain rounds: where accepted updates are kept, sealed, until the round commits. */
  readonly spool?: RoundSpool;
  readonly stopping: () => boolean;
  readonly onAccepted: (t: Task, numExamples: number) => void;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

export class Attempt {
  readonly tasks = new Map<string, Task>();
  /** Plain uploads past their header and not yet in the sum for good, or being taken back out of it. */
  private readonly live = new Map<Task, LiveUpload>();
  /** A refused update could not be taken back (its spool file unreadable): the sum is rebuilt from the spool at close. */
  private tainted = false;
  private agg: Aggregation | undefined;
  private sa: SecAggAttempt | undefined;
  private baseCk: Checkpoint | undefined;
  private layout: NamedTensor[] | undefined;
  private isOpen = true;
  private wakeUp: () => void = () => undefined;
  private woken: Promise<void>;
  /** Accepts between admission and the spool write: closing waits for them, so none is half counted. */
  private readonly inFlight = new Set<Promise<void>>();

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
    this.layout = strategyUploadLayout(d.strategy, uploadLayout(base.adapter, d.aggregation));
    this.sa = secagg;
    this.agg = secagg ? undefined : d.strategy.begin(this.layout);
    this.woken = new Promise<void>((r) => (this.wakeUp = r));
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
    return this.agg;
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
    this.agg = undefined;
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

  /** Every selected client uploaded and reported, or is gone (a client that disconnected is not waited for). */
  allDone(): boolean {
    for (const t of this.tasks.values()) {
      if (t.carried) continue;
      const done = t.state === 'uploaded' && t.metrics !== undefined;
      if (!done && !(this.d.registry.isLive(t.clientId) === false && t.state !== 'receiving')) return false;
    }
    return true;
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
    const l = this.live.get(t);
    return l && l.state !== 'done' ? this.takeBack(t, l) : Promise.resolve();
  }

  /**
   * Plain rounds, at an upload's header: the strategy reserves its client id and weight and opens its fold; from
   * here each opened chunk goes into the running sum as it arrives (foldChunk), and a refusal takes it back out.
   */
  openFold(t: Task, numExamples: number, spool: SpoolUpload, opener: () => SealedUploadOpener): void {
    if (!this.holds(t)) throw new ProtocolError(status.DEADLINE_EXCEEDED, `task ${t.taskId}: the round closed before the upload completed`);
    let fold: UpdateFold;
    try {
      fold = this.aggregation!.open(t.clientId, numExamples);
    } catch (e) {
      throw this.refused(e);
    }
    this.live.set(t, { fold, spool, opener, state: 'streaming' });
  }

  /**
   * One opened chunk of a plain upload: checked and folded into the running sum, in place (then dropped). `owned`:
   * the caller gives the chunk up (its buffer holds only it), so a threaded sum folds it on a helper thread, its
   * buffer moved there (fold-handoff.ts); a refusal of its values then comes from a later chunk or settleFold.
   */
  foldChunk(t: Task, plaintext: Uint8Array, owned = false): void {
    const l = this.live.get(t);
    if (!l || l.state !== 'streaming' || !this.isOpen)
      throw new ProtocolError(status.DEADLINE_EXCEEDED, `task ${t.taskId}: the round closed before the upload completed`);
    try {
      l.fold.push(plaintext, owned);
    } catch (e) {
      throw this.refused(e);
    }
  }

  /**
   * Every chunk of a plain upload still on a fold helper folded (undefined: none is; the thread stays free while
   * they are); rejects with the strategy's refusal when one held a bad value, before the trailer is looked at.
   */
  foldSettled(t: Task): Promise<void> | undefined {
    const l = this.live.get(t);
    if (!l || l.state !== 'streaming') return undefined;
    return l.fold.settled?.()?.catch((e: unknown) => {
      throw this.refused(e);
    });
  }

  /**
   * Accepts an upload whose every chunk is in the sum: the sealed bytes go to the spool (durably, before the site
   * hears back), a strategy that folds on a second pass (DP) reads them back, and the update counts. Anything that
   * fails takes the update back out of the sum before the error reaches the site.
   */
  async accept(t: Task, u: SealedUpdate): Promise<void> {
    const l = this.live.get(t);
    if (!this.holds(t) || Date.now() > this.deadline || !l || l.state !== 'streaming') {
      throw new ProtocolError(status.DEADLINE_EXCEEDED, `task ${t.taskId}: the round closed before the upload completed`);
    }
    l.state = 'accepting';
    const work = (async () => {
      let spooled = false;
      try {
        try {
          l.fold.finish();
        } catch (e) {
          throw this.refused(e);
        }
        try {
          await l.spool.commit(); // fsync, rename into the spool, fsync the directory
          spooled = true;
        } catch (e) {
          this.d.log('error', 'could not spool an accepted update', { taskId: t.taskId, error: (e as Error).message });
          throw new ProtocolError(status.UNAVAILABLE, `task ${t.taskId}: the coordinator could not store the update; send it again`);
        }
        if (l.fold.needsReplay) {
          try {
            await replayFromSpool(l);
          } catch (e) {
            this.d.log('error', 'could not read back a spooled update', { taskId: t.taskId, error: (e as Error).message });
            throw new ProtocolError(status.UNAVAILABLE, `task ${t.taskId}: the coordinator could not store the update; send it again`);
          }
        }
      } catch (e) {
        await this.takeBack(t, l); // reads the record back: before it is deleted
        // Spooled but not in the sum: it must not count after a restart either.
        if (spooled) await this.d.spool?.dropUpdate(this.round, t.clientId);
        throw e;
      }
      l.fold.commit();
      l.state = 'done';
      if (this.live.get(t) === l) this.live.delete(t);
      this.settle(t, u.binding.numExamples, u.sha256, u);
    })();
    this.inFlight.add(work);
    try {
      await work;
    } finally {
      this.inFlight.delete(work);
    }
  }

  /**
   * Takes an upload that will not count back out of the sum: the same chunks again from its spool file, with the
   * opposite sign (exact integers: the sum is bit for bit what it would be without it). Idempotent; the attempt's
   * close waits for it. If the file cannot be read, the round's sum is rebuilt from the spool at close instead.
   */
  private takeBack(t: Task, l: LiveUpload): Promise<void> {
    if (l.undo) return l.undo;
    l.state = 'aborted';
    l.fold.abandon();
    const work = (async () => {
      try {
        await undoFromSpool(l);
      } catch (e) {
        this.tainted = true;
        this.d.log('error', 'could not take a refused update back out of the running sum; the sum is rebuilt from the spool at close', {
          taskId: t.taskId,
          error: (e as Error).message,
        });
      } finally {
        if (this.live.get(t) === l) this.live.delete(t);
      }
    })();
    l.undo = work;
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
    return work;
  }

  private refused(e: unknown): unknown {
    return strategyRefusal(this.d.strategy.name, e);
  }

  /**
   * An update accepted by an earlier process of this coordinator (reopened from the spool): it counts as is, its
   * values folded into the running sum chunk by chunk from its record. One that fails part way (a value the
   * strategy refuses) is taken back out the same way; if even that fails, the sum is rebuilt from the spool at
   * close (dropRevoked).
   */
  async carry(t: Task, u: ReopenedUpdate): Promise<void> {
    const f = this.aggregation!.open(t.clientId, u.binding.numExamples);
    try {
      await u.foldInto(f);
    } catch (e) {
      f.abandon();
      await u.undoInto(f).catch(() => (this.tainted = true));
      throw e;
    }
    f.commit();
    this.settle(t, u.binding.numExamples, u.sha256, u);
    t.carried = true;
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

  /** Records a site's metrics (spooled first, when its update is: a restarted coordinator still has them). */
  async recordMetrics(t: Task, values: Record<string, number>, backend: string, loraRank = 0): Promise<void> {
    const metrics = { values, backend, ...(loraRank > 0 ? { loraRank } : {}) };
    if (this.d.spool && t.state === 'uploaded') {
      await this.d.spool
        .putMetrics(this.round, t.clientId, metrics)
        .catch((e: Error) => this.d.log('warn', 'could not spool metrics', { taskId: t.taskId, error: e.message }));
    }
    t.metrics = metrics;
    this.wake();
  }

  /**
   * No more uploads: every upload still streaming is taken back out of the sum, and accepts already past their
   * last chunk finish, so each update is either wholly in the sum or not at all.
   */
  async close(): Promise<void> {
    this.isOpen = false;
    for (const [t, l] of this.live) if (l.state === 'streaming') void this.takeBack(t, l);
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /**
   * After close(): drops the accepted updates whose site's key is no longer enrolled. When there is any (or a
   * refused update could not be taken back out of the sum), the running sum is rebuilt from the spool (`reopen`, one update at a time) over the others — integer sums, so
   * the result is the very sum of a round the revoked sites never uploaded to. A record that no longer reopens
   * is dropped the same way. Returns the client ids dropped.
   */
  async dropRevoked(
    enrolled: (name: string, publicKey: Uint8Array) => boolean,
    reopen: (clientId: string) => Promise<ReopenedUpdate | null>,
  ): Promise<string[]> {
    const accepted = [...this.tasks.values()].filter((t) => t.state === 'uploaded').sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
    const revoked = accepted.filter((t) => t.uploader && !enrolled(t.uploader.name, t.uploader.publicKey));
    if ((revoked.length === 0 && !this.tainted) || !this.agg) return [];
    this.tainted = false;
    const dropped = new Set(revoked.map((t) => t.clientId));
    // The round's upload layout (only lora_B under 'ffa'), as the sum it replaces.
    const folded = (): Promise<Aggregation | string> =>
      rebuildSum(this.d.strategy, this.uploadLayout, accepted, dropped, reopen, (clientId, e) =>
        this.d.log('warn', 'a spooled update failed while it was folded again', siteFields(!!this.sampled, { round: this.round, clientId, error: e.message })),
      );
    // The old sum is not read again: let it go before the new one is made (one running sum at a time).
    this.agg = undefined;
    let agg = await folded();
    // A record that verified but failed part way through its fold: the sum is made again without it.
    while (typeof agg === 'string') {
      dropped.add(agg);
      agg = await folded();
    }
    for (const t of accepted) {
      if (!dropped.has(t.clientId)) continue;
      t.state = 'assigned';
      t.numExamples = undefined;
      t.revoked = revoked.includes(t);
      await this.d.spool?.dropUpdate(this.round, t.clientId);
      const why = t.revoked ? 'its site was revoked before the round closed' : 'its spool record no longer reopens';
      this.d.log('warn', `accepted update dropped: ${why}`, siteFields(!!this.sampled, { round: this.round, clientId: t.clientId }));
    }
    this.agg = agg;
    return [...dropped].sort();
  }

  /** Tells every selected client whose update is not part of the result that the round closed without it. */
  cancelUnfinished(): void {
    for (const t of this.tasks.values()) {
      const finished = t.state === 'uploaded' && (this.secagg === undefined || t.inSum === true);
      if (!finished && !t.carried) this.d.registry.byId(t.clientId)?.sink?.write({ cancel: { task_id: t.taskId, reason: 'round closed without this update' } });
    }
  }
}
