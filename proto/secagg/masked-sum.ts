// The coordinator's running Σ y_u mod 2^32 of SecAgg masked inputs (SecAggServer's masked-input stage), fed
// chunk by chunk as each masked upload's chunks are opened: the coordinator holds the sum (4 bytes per value) and
// the chunk being added, never a whole masked vector. The bytes arrive in any split (a chunk need not end on a
// word). An upload that is not accepted after all is taken back exactly: the same bytes again, from the start,
// subtracted; integer arithmetic mod 2^32, so what remains is bit for bit the sum without it. Per upload
// (MaskedFeed): push… accept, or abandon then undo… until it returns true.

import { WordRuns } from '../word-runs';

/** Bytes staged per add: words are added from an aligned copy (a chunk's bytes may start anywhere). */
const STAGE_BYTES = 1 << 16;

export class MaskedSum {
  private sum: Uint32Array | undefined;
  private readonly stage = new Uint8Array(STAGE_BYTES);
  private readonly words = new Int32Array(this.stage.buffer);
  /** Feeds with words in the sum that are neither accepted nor taken back. */
  private readonly partial = new Set<MaskedFeed>();
  /** Taken or dropped: later adds (a take-back finishing after the round moved on) change nothing. */
  private done = false;

  constructor(readonly length: number) {}

  /** Uploads partly or wholly in the sum that count for nothing yet: the sum is not Σ over accepted inputs until 0. */
  get unsettled(): number {
    return this.partial.size;
  }

  /** A new upload's feed into the sum. */
  feed(): MaskedFeed {
    return new MaskedFeed(this);
  }

  /** The sum over every accepted input; the caller owns it from here (the stage that reads it is the last). */
  take(): Uint32Array {
    if (this.partial.size > 0) throw new Error(`masked sum: ${this.partial.size} inputs not accepted are still partly in it`);
    const s = this.sum ?? new Uint32Array(this.length);
    this.sum = undefined;
    this.done = true;
    return s;
  }

  /** Forgets the sum (the round aborted). */
  drop(): void {
    this.sum = undefined;
    this.partial.clear();
    this.done = true;
  }

  /** @internal sum[at + i] ±= the staged words [0, n). */
  addStaged(at: number, n: number, sign: 1 | -1): void {
    if (this.done) return;
    this.sum ??= new Uint32Array(this.length);
    const acc = new Int32Array(this.sum.buffer, this.sum.byteOffset + 4 * at, n);
    const w = this.words;
    if (sign === 1) for (let i = 0; i < n; i++) acc[i] = (acc[i] + w[i]) | 0;
    else for (let i = 0; i < n; i++) acc[i] = (acc[i] - w[i]) | 0;
  }

  /** @internal */
  get stageBytes(): Uint8Array {
    return this.stage;
  }

  /** @internal */
  mark(f: MaskedFeed, partial: boolean): void {
    if (this.done) return;
    if (partial) this.partial.add(f);
    else this.partial.delete(f);
  }
}

/** Bytes in any split as runs of whole words staged in the sum's stage. */
const wordRuns = (s: MaskedSum): WordRuns =>
  new WordRuns(
    () => s.stageBytes,
    s.length,
    () => new RangeError(`masked input carries more than the round's ${s.length} values`),
  );

export class MaskedFeed {
  private readonly first: WordRuns;
  private back: WordRuns | undefined;
  private state: 'open' | 'accepted' | 'abandoned' | 'undone' = 'open';
  /** Words of this upload in the sum now (what undo must take back). */
  added = 0;

  constructor(private readonly s: MaskedSum) {
    this.first = wordRuns(s);
  }

  private expect(st: MaskedFeed['state'], what: string): void {
    if (this.state !== st) throw new Error(`masked feed: ${what} in state ${this.state}`);
  }

  push(bytes: Uint8Array): void {
    this.expect('open', 'push');
    this.first.feed(bytes, (start, n) => {
      this.s.mark(this, true);
      this.s.addStaged(start, n, 1);
      this.added += n;
    });
  }

  /** Whether every value arrived (and no byte more). */
  get complete(): boolean {
    return this.first.complete;
  }

  /** The input counts: the caller checked it is complete. */
  accept(): void {
    this.expect('open', 'accept');
    if (!this.first.complete) throw new Error(`masked feed: accepted after ${this.first.at} of ${this.s.length} values`);
    this.state = 'accepted';
    this.s.mark(this, false);
  }

  /** The input will not count; what it added must come out (undo) unless nothing did. */
  abandon(): void {
    if (this.state === 'abandoned' || this.state === 'undone') return;
    this.expect('open', 'abandon');
    this.state = this.added > 0 ? 'abandoned' : 'undone';
  }

  /** Takes back added words from the same bytes again (from the start, any split); true once all are. */
  undo(bytes: Uint8Array): boolean {
    if (this.state === 'undone') return true;
    this.expect('abandoned', 'undo');
    this.back ??= wordRuns(this.s);
    const limit = this.added;
    // Words go in in order, so the first `added` words of the input are exactly what is in the sum.
    if (this.back.at < limit)
      this.back.feed(bytes, (start, n) => {
        const m = Math.min(n, limit - start);
        if (m > 0) this.s.addStaged(start, m, -1);
      });
    if (this.back.at < limit) return false;
    this.state = 'undone';
    this.s.mark(this, false);
    return true;
  }

  get settled(): boolean {
    return this.state === 'accepted' || this.state === 'undone';
  }
}
