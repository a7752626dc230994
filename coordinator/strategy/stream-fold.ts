// An update streaming into a round's running sum, chunk by chunk as the coordinator opens it (strategy.ts
// UpdateFold): the bytes arrive in any split (a chunk need not end on a value), are staged a run at a time in the sum's
// kernel (fold-kernel.ts) and handed to the strategy's pass as runs of whole float32 values with their index in the
// update. The state machine is the same for every strategy: push… finish [replay…] commit, or at any point abandon,
// undo… undone. Taking an update back feeds the same bytes again with the opposite sign; the sums are exact integers,
// so what remains is bit for bit the sum without it.
import type { TensorList } from '../../proto/tensors';
import { AdmissionError, type UpdateFold } from './strategy';
import { FixedPointRangeError } from './fixed-point';
import type { FoldKernel, FoldTicket } from './fold-kernel';
import { WordRuns } from '../../proto/word-runs';

/** Turns an update's plaintext bytes (any split) into runs of whole values staged at kernel.staged[0, n). */
export class ValueRuns extends WordRuns {
  /** Bytes fed so far: a chunk starts on a value's first byte when this is a multiple of 4. */
  private fed = 0;

  constructor(
    k: FoldKernel,
    private readonly values: number,
  ) {
    super(
      () => k.stage,
      values,
      () => ValueRuns.tooMany(values),
    );
  }

  private static tooMany(total: number): AdmissionError {
    return new AdmissionError(`the update carries more than the ${total} values of the round's layout`);
  }

  override feed(bytes: Uint8Array, run: (start: number, n: number) => void): void {
    super.feed(bytes, run);
    this.fed += bytes.length;
  }

  /** Whether a chunk of `length` bytes arriving now is whole values from a value's first byte (and fits the update). */
  takesWhole(length: number): boolean {
    return this.fed % 4 === 0 && length % 4 === 0 && this.at + (length >>> 2) <= this.values;
  }

  /** Takes `n` whole values (takesWhole said so) and returns the index of the first. */
  take(n: number): number {
    const start = this.at;
    this.at += n;
    this.fed += 4 * n;
    return start;
  }

  /**
   * As feed, but a chunk that starts on a value goes to `whole` unstaged, as the bytes of its whole values (the
   * kernel stages them itself: FoldKernel.foldBytes); its last 0-3 bytes are carried as feed carries them.
   */
  feedWhole(bytes: Uint8Array, whole: (start: number, words: Uint8Array) => void, run: (start: number, n: number) => void): void {
    const n = bytes.length >>> 2;
    if (this.fed % 4 !== 0 || n === 0) return this.feed(bytes, run);
    if (this.at + n > this.values) throw ValueRuns.tooMany(this.values);
    whole(this.at, bytes.subarray(0, 4 * n));
    this.at += n;
    this.fed += 4 * n;
    if (bytes.length > 4 * n) this.feed(bytes.subarray(4 * n), run);
  }
}

/** Tensor names and where each starts in the update's value order (the layout's order). */
export class LayoutIndex {
  readonly total: number;
  private readonly starts: number[] = [];
  private readonly names: string[] = [];

  constructor(global: TensorList) {
    let off = 0;
    for (const g of global) {
      this.starts.push(off);
      this.names.push(g.name);
      off += g.data.length;
    }
    this.total = off;
  }

  /** The tensor holding value `i` of the update, and i's index in it. */
  locate(i: number): { name: string; index: number } {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.starts[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    return { name: this.names[lo], index: i - this.starts[lo] };
  }

  /** The refusal for value i of client `id`, as the batch admission words it. */
  rangeError(id: string, i: number, value: number): FixedPointRangeError {
    const at = this.locate(i);
    return new FixedPointRangeError(`${id}:${at.name}`, at.index, value);
  }
}

/** What a strategy's fold does with each run of values (values at kernel.staged[0, n), the first at `start`). */
export interface FoldPasses {
  /** Whether the first pass folds the values (true) or only checks them, leaving the fold to the replay. */
  readonly foldsOnPush: boolean;
  /** First pass, as the chunks arrive: checks (and folds, if foldsOnPush) the run; returns how many values passed, in order (n: all). */
  push(start: number, n: number): number;
  /** Where given, push for a chunk's whole values not staged yet (their bytes; FoldKernel.foldBytes). */
  pushWhole?(start: number, words: Uint8Array): number;
  /** The refusal of value `i` of the update (`value`), the first that did not pass (thrown by the fold). */
  refuse(i: number, value: number): Error;
  /** Second pass, after finish(), when needsReplay: fold the run; returns how many it folded. */
  replay?(start: number, n: number): number;
  /**
   * Where given (FedAvg on a threaded sum: fold-handoff.ts): a chunk of whole values whose buffer the caller owns is
   * handed to a helper thread (moved, not copied) and folded there while the caller goes on; the ticket says later
   * how it went. wait() blocks until a ticket (or every one) is done; done() resolves once one is.
   */
  readonly handoff?: {
    hand(start: number, words: Uint8Array): FoldTicket;
    wait(t?: FoldTicket): void;
    done(t: FoldTicket): Promise<void>;
  };
  /** Takes back n folded values starting at `start`. */
  takeBack(start: number, n: number): void;
  /** After the first pass: whether the values must come again (needsReplay). */
  finish(): boolean;
  /** The update counts (its reservation becomes part of the sum). */
  commit(): void;
  /** The update will not count: its client id is free for another upload at once. */
  abandon(): void;
  /** Taken back: its reserved weight is free too. */
  undone(): void;
}

/** A chunk handed to a helper (FoldPasses.handoff), in update order, until its answer is read. */
interface Handed {
  readonly t: FoldTicket;
  readonly start: number;
  readonly n: number;
}

export class StreamedFold implements UpdateFold {
  private readonly first: ValueRuns;
  private second: ValueRuns | undefined;
  private back: ValueRuns | undefined;
  private state: 'open' | 'finished' | 'committed' | 'abandoned' | 'undone' = 'open';
  /** Handed chunks whose answer is not read yet, in update order. */
  private readonly handed: Handed[] = [];
  /**
   * Once any chunk was handed: the values in the sum as [start, end) pairs, in order (handed chunks land whole or
   * not at all, so what is in the sum need not be a prefix of the update); undefined: the first `folded` values.
   */
  private ranges: number[] | undefined;
  /** The refusal of the first handed chunk (in update order) holding a bad value. */
  private refusal: Error | undefined;
  folded = 0;
  needsReplay = false;

  constructor(
    private readonly k: FoldKernel,
    private readonly total: number,
    private readonly p: FoldPasses,
  ) {
    this.first = new ValueRuns(k, total);
  }

  private expect(s: StreamedFold['state'], what: string): void {
    if (this.state !== s) throw new Error(`update fold: ${what} in state ${this.state}`);
  }

  /** Values [start, start + n) are in the sum. */
  private note(start: number, n: number): void {
    if (n <= 0) return;
    this.folded += n;
    const r = this.ranges;
    if (!r) return;
    if (r.length > 0 && r[r.length - 1] === start) r[r.length - 1] = start + n;
    else r.push(start, start + n);
  }

  /** Reads the answers of handed chunks, in update order, as far as they are done; a bad value becomes the refusal. */
  private account(): void {
    while (this.handed.length > 0 && this.handed[0].t.done) {
      const h = this.handed.shift()!;
      if (h.t.bad < 0) this.note(h.start, h.n);
      else this.refusal ??= this.p.refuse(h.start + h.t.bad, h.t.value);
    }
  }

  /** Blocks until every handed chunk is done and read. */
  private settleAll(): void {
    if (this.handed.length === 0) return;
    for (const h of this.handed) this.p.handoff!.wait(h.t);
    this.account();
  }

  /**
   * `owned`: the caller gives up `bytes` (its ArrayBuffer holds only them, or more that nobody reads again): where the
   * strategy can, the chunk is folded on a helper thread, its buffer moved there, and a refusal of its values is
   * thrown by a later push, settle() or finish(), always the first bad value of the update in order.
   */
  push(bytes: Uint8Array, owned = false): void {
    this.expect('open', 'push');
    if (owned && this.p.handoff && bytes.length > 0 && bytes.buffer instanceof ArrayBuffer && this.first.takesWhole(bytes.length)) {
      this.account();
      if (this.refusal) throw this.refusal;
      const n = bytes.length >>> 2;
      this.ranges ??= this.folded > 0 ? [0, this.folded] : [];
      const start = this.first.take(n);
      this.handed.push({ t: this.p.handoff.hand(start, bytes), start, n });
      return;
    }
    // Folded here: every handed chunk's answer first, so a refusal is still the update's first bad value.
    this.settleAll();
    if (this.refusal) throw this.refusal;
    const staged = (start: number, n: number): void => {
      const passed = this.p.push(start, n);
      if (this.p.foldsOnPush) this.note(start, passed);
      if (passed < n) throw this.p.refuse(start + passed, this.k.staged[passed]);
    };
    if (!this.p.pushWhole) return this.first.feed(bytes, staged);
    this.first.feedWhole(
      bytes,
      (start, words) => {
        const n = words.length >>> 2;
        const passed = this.p.pushWhole!(start, words);
        if (this.p.foldsOnPush) this.note(start, passed);
        if (passed < n) throw this.p.refuse(start + passed, new DataView(words.buffer, words.byteOffset + 4 * passed, 4).getFloat32(0, true));
      },
      staged,
    );
  }

  /** Blocks until every handed chunk is folded; throws the update's refusal if one holds a bad value. */
  settle(): void {
    this.settleAll();
    if (this.refusal) throw this.refusal;
  }

  /**
   * As settle(), leaving the thread free meanwhile: undefined when no handed chunk is unanswered (and none was
   * refused), else a promise of every one folded, rejected with the update's refusal.
   */
  settled(): Promise<void> | undefined {
    this.account();
    if (this.handed.length === 0) return this.refusal ? Promise.reject(this.refusal) : undefined;
    // The last handed first: it is usually the last to finish, so the others need no wait of their own.
    const tickets = this.handed.map((h) => h.t).reverse();
    return (async () => {
      for (const t of tickets) await this.p.handoff!.done(t);
      this.settle();
    })();
  }

  finish(): void {
    this.expect('open', 'finish');
    this.settle();
    if (!this.first.complete) throw new AdmissionError(`the update ends after ${this.first.at} of its ${this.total} values`);
    this.needsReplay = this.p.finish();
    this.state = 'finished';
  }

  replay(bytes: Uint8Array): void {
    this.expect('finished', 'replay');
    if (!this.needsReplay || !this.p.replay) throw new Error('update fold: this strategy needs no second pass');
    this.second ??= new ValueRuns(this.k, this.total);
    this.second.feed(bytes, (start, n) => {
      this.folded += this.p.replay!(start, n);
    });
  }

  commit(): void {
    this.expect('finished', 'commit');
    if (this.needsReplay && !(this.second?.complete ?? false)) throw new Error('update fold: committed before its second pass was complete');
    this.p.commit();
    this.state = 'committed';
  }

  abandon(): void {
    if (this.state === 'abandoned' || this.state === 'undone') return;
    if (this.state === 'committed') throw new Error('update fold: a committed update cannot be abandoned');
    this.p.abandon();
    this.state = 'abandoned';
  }

  /** Whether the same bytes again (from the start) are needed to take back what was folded. */
  get needsUndo(): boolean {
    this.settleAll();
    return this.folded > 0 && this.state === 'abandoned';
  }

  /** Where undo is complete: past the last value in the sum. */
  private get undoEnd(): number {
    return this.ranges ? (this.ranges.length > 0 ? this.ranges[this.ranges.length - 1] : 0) : this.folded;
  }

  undo(bytes: Uint8Array): boolean {
    this.expect('abandoned', 'undo');
    this.settleAll();
    this.back ??= new ValueRuns(this.k, this.total);
    const end = this.undoEnd;
    const r = this.ranges;
    // Values fold in update order, in one pass only (the first, or the replay), so without handed chunks the first
    // `folded` values of the update are exactly what is in the sum; with them, the ranges say. Anything else is
    // read and left alone.
    if (this.back.at < end)
      this.back.feed(bytes, (start, n) => {
        if (!r) {
          const m = Math.min(n, end - start);
          if (m > 0) this.p.takeBack(start, m);
          return;
        }
        for (let j = 0; j < r.length; j += 2) {
          const lo = Math.max(r[j], start);
          const hi = Math.min(r[j + 1], start + n);
          if (lo >= hi) continue;
          // takeBack reads its values from the stage's start: move this range's there (the later ranges of this
          // run lie beyond what the move overwrites).
          if (lo > start) this.k.stage.copyWithin(0, 4 * (lo - start), 4 * (hi - start));
          this.p.takeBack(lo, hi - lo);
        }
      });
    return this.back.at >= end;
  }

  undone(): void {
    if (this.state === 'undone') return;
    this.expect('abandoned', 'undone');
    this.settleAll();
    if (this.folded > 0 && (this.back?.at ?? 0) < this.undoEnd) throw new Error('update fold: released before what it folded was taken back');
    this.p.undone();
    this.state = 'undone';
  }
}
