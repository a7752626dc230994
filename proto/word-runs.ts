// Bytes that arrive in any split (a chunk need not end on a 4-byte word) turned into runs of whole 32-bit words,
// staged a run at a time in the caller's buffer and handed on with the index of their first word. Used where an
// upload is summed as it streams: the plain tier's fold (coordinator/strategy/stream-fold.ts) and SecAgg's masked
// sum (proto/secagg/masked-sum.ts). The last 0-3 bytes of a chunk wait in `carry` for the next one.
export class WordRuns {
  private readonly carry = new Uint8Array(4);
  private carried = 0;
  /** Words handed on so far. */
  at = 0;

  /**
   * @param stage the buffer runs are staged in, read on every pass (a WebAssembly memory's view may be replaced)
   * @param total the words the stream must carry; one more is refused with `tooMany()`
   */
  constructor(
    private readonly stage: () => Uint8Array,
    private readonly total: number,
    private readonly tooMany: () => Error,
  ) {}

  /** Calls run(start, n) for each run of whole words in `bytes`, staged at stage()[0, 4n). */
  feed(bytes: Uint8Array, run: (start: number, n: number) => void): void {
    let p = 0;
    while (p < bytes.length) {
      const stage = this.stage();
      stage.set(this.carry.subarray(0, this.carried), 0);
      const take = Math.min(bytes.length - p, stage.length - this.carried);
      stage.set(bytes.subarray(p, p + take), this.carried);
      p += take;
      const len = this.carried + take;
      const n = len >>> 2;
      if (this.at + n > this.total) throw this.tooMany();
      this.carried = len & 3;
      this.carry.set(stage.subarray(4 * n, len));
      if (n > 0) run(this.at, n);
      this.at += n;
    }
  }

  /** Every word arrived and no byte is left over. */
  get complete(): boolean {
    return this.at === this.total && this.carried === 0;
  }
}
