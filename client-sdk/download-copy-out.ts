// When a parallel download's tensors are copied out of its shared landing buffer (download-ranges.ts). A tensor can
// be copied once every range that holds some of its bytes has been received and checked, and once the memory made
// for it on the main thread is ready; it then goes to a worker whose range is done, which copies it while the
// other workers still receive. Copying everything after the last range left every worker's copy on the download's
// tail; now only the tensors of the last ranges to finish are.
import type { PieceRange } from '../proto/pieces';

/** Where a tensor's bytes lie in the stream. */
export interface Part {
  readonly offset: number;
  readonly bytes: number;
}

/** Hands tensors `parts` (their memory `into`, moved) to range `worker`'s thread; resolves with that memory, filled. */
export type SendCopy = (worker: number, parts: readonly number[], into: ArrayBuffer[]) => Promise<ArrayBuffer[]>;

export class CopyOut {
  /** Per tensor: ranges holding some of its bytes that are not yet done. */
  private readonly waitingOn: number[];
  private readonly ready: (ArrayBuffer | undefined)[];
  private readonly sent: boolean[];
  private readonly out: (ArrayBuffer | undefined)[];
  private readonly copies: Promise<void>[] = [];
  /** Ranges done, whose workers take copies in turn. */
  private readonly idle: number[] = [];
  private turn = 0;
  private stopped = false;

  constructor(
    private readonly parts: readonly Part[],
    private readonly ranges: readonly PieceRange[],
    private readonly send: SendCopy,
  ) {
    this.waitingOn = parts.map((p) => ranges.filter((r) => overlaps(p, r)).length);
    this.ready = parts.map(() => undefined);
    this.sent = parts.map(() => false);
    this.out = parts.map(() => undefined);
  }

  /** Range `r` was received and checked: the tensors it completed go to its (now idle) worker. */
  rangeDone(r: number): void {
    this.parts.forEach((p, i) => {
      if (overlaps(p, this.ranges[r])) this.waitingOn[i]--;
    });
    this.idle.push(r);
    this.flush(r);
  }

  /** Tensor `i`'s memory is ready (made and mapped on the main thread). */
  bufferReady(i: number, b: ArrayBuffer): void {
    this.ready[i] = b;
  }

  /** Sends every tensor that can be copied now, to `worker` or else to the idle workers in turn. */
  flush(worker?: number): void {
    const go: number[] = [];
    this.parts.forEach((_, i) => {
      if (!this.sent[i] && this.waitingOn[i] === 0 && this.ready[i]) go.push(i);
    });
    if (this.stopped || go.length === 0 || this.idle.length === 0) return;
    const w = worker ?? this.idle[this.turn++ % this.idle.length];
    for (const i of go) this.sent[i] = true;
    const into = go.map((i) => this.ready[i]!);
    this.copies.push(
      this.send(w, go, into).then((bufs) => {
        go.forEach((i, k) => (this.out[i] = bufs[k]));
      }),
    );
  }

  /** Every tensor's memory, filled, once every range is done and every buffer ready. */
  async finish(): Promise<ArrayBuffer[]> {
    this.flush();
    await Promise.all(this.copies);
    // Tensors no range holds (empty ones, or every tensor of an empty stream) need no copy.
    return this.out.map((b, i) => b ?? this.ready[i]!);
  }

  /** After a failed download: sends nothing more, and waits for the copies in flight (no worker then reads the landing buffer, which the next download reuses). */
  stop(): Promise<unknown> {
    this.stopped = true;
    return Promise.allSettled(this.copies);
  }
}

function overlaps(p: Part, r: PieceRange): boolean {
  return p.bytes > 0 && p.offset < r.offset + r.length && r.offset < p.offset + p.bytes;
}
