// A plain attempt's running sum and the uploads streaming into it: each opened chunk folded in as it arrives, an
// accepted update spooled before it counts, a refused one taken back out (the same chunks again, opposite sign),
// an update reopened from an earlier process's spool carried in, and the sum rebuilt from the spool without the
// updates of sites revoked before the close. The Attempt (attempt.ts) owns the tasks, the deadline and the wait,
// and hands its plain uploads to this; a SecAgg attempt's masked sum is secagg-attempt.ts's instead.
import { ProtocolError, status } from '../proto/errors';
import type { RoundSpool } from './round-spool';
import type { SealedUpdate } from './sealed-update';
import type { SpoolUpload } from './spool-upload';
import { rebuildSum, type ReopenedUpdate } from './spool-reopen';
import type { Aggregation, ServerState, Strategy, UpdateFold } from './strategy/strategy';
import type { SealedUploadOpener } from '../proto/crypto/sealed-upload';
import { replayFromSpool, strategyRefusal, undoFromSpool, type LiveUpload } from './live-upload';
import type { NamedTensor } from '../proto/tensors';
import type { Task } from './task';
import { siteFields } from './ops/sample-secrecy';

export interface RunningSumDeps {
  readonly round: number;
  readonly strategy: Strategy;
  /** The base version's server state, which a strategy's round may depend on (Strategy.begin). */
  readonly baseState?: ServerState;
  /** Where accepted updates are kept, sealed, until the round commits. */
  readonly spool?: RoundSpool;
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** The update is in the sum for good: its task is done. */
  readonly counted: (t: Task, numExamples: number, sha256: string, u: SealedUpdate) => void;
}

/** What a site hears when its upload arrives after the round (or its attempt) closed. */
export function roundClosed(t: Task): ProtocolError {
  return new ProtocolError(status.DEADLINE_EXCEEDED, `task ${t.taskId}: the round closed before the upload completed`);
}

export class RunningSum {
  /** Plain uploads past their header and not yet in the sum for good, or being taken back out of it. */
  private readonly live = new Map<Task, LiveUpload>();
  /** A refused update could not be taken back (its spool file unreadable): the sum is rebuilt from the spool at close. */
  private tainted = false;
  private agg: Aggregation | undefined;
  /** Accepts between admission and the spool write: closing waits for them, so none is half counted. */
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    layout: NamedTensor[],
    private readonly d: RunningSumDeps,
  ) {
    this.agg = d.strategy.begin(layout, d.baseState);
  }

  /** The strategy's running sum (undefined once retired). */
  get aggregation(): Aggregation | undefined {
    return this.agg;
  }

  /** The attempt is over: let go of the sum. */
  retire(): void {
    this.agg = undefined;
  }

  /** Whether `t`'s upload is past its header and still streaming into the sum. */
  isStreaming(t: Task): boolean {
    const l = this.live.get(t);
    return l !== undefined && l.state === 'streaming';
  }

  /** An upload that was refused or broke off: what it folded into the sum is taken back (resolves when it is). */
  abort(t: Task): Promise<void> {
    const l = this.live.get(t);
    return l && l.state !== 'done' ? this.takeBack(t, l) : Promise.resolve();
  }

  /**
   * At an upload's header: the strategy reserves its client id and weight and opens its fold; from here each
   * opened chunk goes into the running sum as it arrives (foldChunk), and a refusal takes it back out.
   */
  openFold(t: Task, numExamples: number, spool: SpoolUpload, opener: () => SealedUploadOpener): void {
    let fold: UpdateFold;
    try {
      fold = this.agg!.open(t.clientId, numExamples);
    } catch (e) {
      throw this.refused(e);
    }
    this.live.set(t, { fold, spool, opener, state: 'streaming' });
  }

  /**
   * One opened chunk: checked and folded into the running sum, in place (then dropped). `owned`: the caller gives
   * the chunk up (its buffer holds only it), so a threaded sum folds it on a helper thread, its buffer moved there
   * (fold-handoff.ts); a refusal of its values then comes from a later chunk or settleFold.
   */
  foldChunk(t: Task, plaintext: Uint8Array, owned: boolean): void {
    const l = this.live.get(t);
    if (!l || l.state !== 'streaming') throw roundClosed(t);
    try {
      l.fold.push(plaintext, owned);
    } catch (e) {
      throw this.refused(e);
    }
  }

  /**
   * Every chunk still on a fold helper folded (undefined: none is; the thread stays free while they are); rejects
   * with the strategy's refusal when one held a bad value, before the trailer is looked at.
   */
  foldSettled(t: Task): Promise<void> | undefined {
    const l = this.live.get(t);
    if (!l || l.state !== 'streaming') return undefined;
    return l.fold.settled?.()?.catch((e: unknown) => {
      throw this.refused(e);
    });
  }

  /**
   * Accepts an upload whose every chunk is in the sum (the caller checked it isStreaming): the sealed bytes go to
   * the spool (durably, before the site hears back), a strategy that folds on a second pass (DP) reads them back,
   * and the update counts. Anything that fails takes the update back out of the sum before the error reaches the
   * site.
   */
  async accept(t: Task, u: SealedUpdate): Promise<void> {
    const l = this.live.get(t)!;
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
        if (spooled) await this.d.spool?.dropUpdate(this.d.round, t.clientId);
        throw e;
      }
      l.fold.commit();
      l.state = 'done';
      if (this.live.get(t) === l) this.live.delete(t);
      this.d.counted(t, u.binding.numExamples, u.sha256, u);
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
    const f = this.agg!.open(t.clientId, u.binding.numExamples);
    try {
      await u.foldInto(f);
    } catch (e) {
      f.abandon();
      await u.undoInto(f).catch(() => (this.tainted = true));
      throw e;
    }
    f.commit();
    this.d.counted(t, u.binding.numExamples, u.sha256, u);
    t.carried = true;
  }

  /**
   * No more uploads: every upload still streaming is taken back out of the sum, and accepts already past their
   * last chunk finish, so each update is either wholly in the sum or not at all.
   */
  async close(): Promise<void> {
    for (const [t, l] of this.live) if (l.state === 'streaming') void this.takeBack(t, l);
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /**
   * After close(): drops the accepted updates whose site's key is no longer enrolled. When there is any (or a
   * refused update could not be taken back out of the sum), the running sum is rebuilt from the spool (`reopen`,
   * one update at a time) over the others — integer sums, so the result is the very sum of a round the revoked
   * sites never uploaded to. A record that no longer reopens is dropped the same way. Returns the client ids
   * dropped. `layout`: the round's upload layout (only lora_B under 'ffa'), as the sum it replaces. `sampled`: a
   * Poisson-sampled round, whose warnings name no site (ops/sample-secrecy.ts).
   */
  async dropRevoked(
    tasks: Iterable<Task>,
    layout: () => NamedTensor[],
    enrolled: (name: string, publicKey: Uint8Array) => boolean,
    reopen: (clientId: string) => Promise<ReopenedUpdate | null>,
    sampled: boolean,
  ): Promise<string[]> {
    const accepted = [...tasks].filter((t) => t.state === 'uploaded').sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
    const revoked = accepted.filter((t) => t.uploader && !enrolled(t.uploader.name, t.uploader.publicKey));
    if ((revoked.length === 0 && !this.tainted) || !this.agg) return [];
    this.tainted = false;
    const dropped = new Set(revoked.map((t) => t.clientId));
    const folded = (): Promise<Aggregation | string> =>
      rebuildSum(
        this.d.strategy,
        layout(),
        accepted,
        dropped,
        reopen,
        (clientId, e) =>
          this.d.log('warn', 'a spooled update failed while it was folded again', siteFields(sampled, { round: this.d.round, clientId, error: e.message })),
        this.d.baseState,
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
      await this.d.spool?.dropUpdate(this.d.round, t.clientId);
      const why = t.revoked ? 'its site was revoked before the round closed' : 'its spool record no longer reopens';
      this.d.log('warn', `accepted update dropped: ${why}`, siteFields(sampled, { round: this.d.round, clientId: t.clientId }));
    }
    this.agg = agg;
    return [...dropped].sort();
  }
}
