// Runs of whole values folded off the calling thread: the coordinator's plaintext chunk owns its buffer (node:crypto
// gives each opened chunk one of its own), so that buffer moves to a helper thread uncopied (postMessage's transfer
// list), and the helper copies it into its own stage and folds it (fold-thread.ts) while the calling thread goes on
// receiving and opening. Why: staged on the calling thread, each chunk's copy into the shared stage cost what the
// memcpy baseline costs on its own, so no number of helpers could take the fold under it; handed over, the copy
// and the fold are both the helpers', and the calling thread's part is one message per chunk.
// Several runs are in flight at once, of one update or of several, on several helpers: runs of one update cover
// different values of the sum, but runs of two updates may cover the same ones. The sum is cut into regions of
// REGION values, each with a lock word; a helper folds a region of its run only while it holds that region's lock,
// and skips to its run's next region while another helper holds one. The sums are exact integers in float64, so the
// order in which two updates' values land in one value of the sum changes no bit: only mutual exclusion matters.
// Each run's answer (done; or the index and value of its first value outside ±LIMIT, with none of the run left in
// the sum) is written into its job slot in the sum's memory. The calling thread reads the answers when it needs
// them (stream-fold.ts keeps them in update order, so a refusal names the same value as folding in order did), and
// every other use of the sum (a staged fold, a take-back, reading the sum) first waits until no run is in flight
// (wait(), blocking: a fraction of a millisecond). An upload's trailer waits with done() instead, which leaves the
// thread free to take the next upload's chunks meanwhile.
// Memory: at most RUNS_PER_HELPER runs per helper in flight per sum (each one chunk's bytes); a hand() beyond that
// waits for one to finish.
import type { FoldTicket, HandOff } from './fold-kernel';
import { postRun, type Helper, type SumLayout, type SumMessage } from './fold-pool';

/** Values of the sum per lock (128 KiB of opened bytes, 256 KiB of the sum). */
export const REGION = 1 << 15;
/** Runs in flight per helper per sum before hand() waits for one. */
export const RUNS_PER_HELPER = 4;
/** Job words per slot: state, index of the first bad value (-1: none), its float32 bits. */
export const JOB_WORDS = 4;
export const JOB = { FREE: 0, POSTED: 1, DONE: 2, FAILED: 3 } as const;
/** Far above any run's work: only a helper that died waits this long. */
const WAIT_MS = 60_000;
/** A helper's own bytes in a sum's memory: 16 of scratch (its weight's splat), then a stage of REGION values. */
const BLOCK = 16 + 4 * REGION;

/** Region locks (futex style): 0 free, 1 held, 2 held with a thread waiting for it. */
export function lockTry(l: Int32Array, i: number): boolean {
  return Atomics.compareExchange(l, i, 0, 1) === 0;
}
/** Waits until region i's lock is released (or 1 ms passed), without taking it. */
export function lockWait(l: Int32Array, i: number): void {
  if (Atomics.compareExchange(l, i, 1, 2) !== 0) Atomics.wait(l, i, 2, 1);
}
export function lockTake(l: Int32Array, i: number): void {
  while (!lockTry(l, i)) lockWait(l, i);
}
export function unlock(l: Int32Array, i: number): void {
  if (Atomics.exchange(l, i, 0) === 2) Atomics.notify(l, i);
}

const align16 = (x: number): number => Math.ceil(x / 16) * 16;

/** Where the locks, job slots and helpers' blocks go after a sum of `params` values at byte `sum`; `end`: the bytes needed. */
export function handoffLayout(sum: number, params: number, helpers: number): { layout: SumLayout; blocks: number[]; end: number } {
  const locks = align16(sum + 8 * params);
  const jobs = align16(locks + 4 * Math.ceil(params / REGION));
  const first = align16(jobs + 4 * JOB_WORDS * RUNS_PER_HELPER * helpers);
  const blocks = Array.from({ length: helpers }, (_, j) => first + j * BLOCK);
  return { layout: { sum, params, locks, region: REGION, jobs }, blocks, end: first + helpers * BLOCK };
}

/** Runs handed over, over every sum of the process (for the bench). */
export const handed = { runs: 0 };

interface Ticket extends FoldTicket {
  readonly slot: number;
  readonly helper: number;
}

const bitsF32 = new Float32Array(1);
const bitsI32 = new Int32Array(bitsF32.buffer);

/** One threaded sum's runs in flight (FoldKernel.handoff). */
export class HandOffQueue implements HandOff {
  private readonly jobs: Int32Array;
  private readonly tickets: (Ticket | undefined)[];
  private readonly free: number[] = [];
  private readonly load: number[];
  private n = 0;
  private broken = false;

  constructor(
    buf: SharedArrayBuffer,
    private readonly team: readonly Helper[],
    private readonly sum: SumMessage,
    private readonly blocks: readonly number[],
  ) {
    const slots = RUNS_PER_HELPER * team.length;
    this.jobs = new Int32Array(buf, sum.layout!.jobs, JOB_WORDS * slots);
    this.tickets = new Array<Ticket | undefined>(slots);
    for (let s = slots - 1; s >= 0; s--) this.free.push(s);
    this.load = team.map(() => 0);
  }

  get inFlight(): number {
    return this.n;
  }

  hand(start: number, bytes: Uint8Array, w: number): FoldTicket {
    this.check();
    let slot = this.free.pop();
    while (slot === undefined) {
      this.wait(this.tickets.find((t) => t !== undefined));
      slot = this.free.pop();
    }
    // The helper with the fewest runs in flight, the first among equals: a helper that just finished is still
    // spinning (fold-pool.ts SPIN_MS), while one left idle longer sleeps and takes a wake-up to start.
    let j = 0;
    for (let k = 1; k < this.team.length; k++) if (this.load[k] < this.load[j]) j = k;
    const t: Ticket = { done: false, bad: -1, value: 0, slot, helper: j };
    Atomics.store(this.jobs, JOB_WORDS * slot, JOB.POSTED);
    this.tickets[slot] = t;
    this.load[j]++;
    this.n++;
    handed.runs++;
    const buf = bytes.buffer as ArrayBuffer;
    postRun(this.team[j], this.sum, { op: 'run', id: this.sum.id, slot, buf, off: bytes.byteOffset, len: bytes.length, start, w, block: this.blocks[j] });
    return t;
  }

  /** Reads the answers of runs that finished into their tickets. */
  private poll(): void {
    if (this.n === 0) return;
    for (let s = 0; s < this.tickets.length; s++) {
      const t = this.tickets[s];
      if (!t) continue;
      const state = Atomics.load(this.jobs, JOB_WORDS * s);
      if (state === JOB.POSTED) continue;
      if (state !== JOB.DONE) this.broken = true;
      t.bad = this.jobs[JOB_WORDS * s + 1];
      bitsI32[0] = this.jobs[JOB_WORDS * s + 2];
      t.value = bitsF32[0];
      t.done = true;
      this.tickets[s] = undefined;
      this.free.push(s);
      this.load[t.helper]--;
      this.n--;
    }
    this.check();
  }

  private check(): void {
    if (this.broken) throw new Error('fold: a helper thread did not fold a handed run; this sum is unusable');
  }

  async done(t: FoldTicket): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    const x = t as Ticket;
    for (;;) {
      this.poll();
      if (x.done) return;
      const left = deadline - Date.now();
      if (left <= 0) {
        this.broken = true;
        this.check();
      }
      const r = (Atomics as unknown as AtomicsWaitAsync).waitAsync(this.jobs, JOB_WORDS * x.slot, JOB.POSTED, Math.min(left, 1000));
      if (!r.async) continue;
      // A pending waitAsync does not keep the process alive (the helpers are unref'd): a timer does, meanwhile.
      const alive = setTimeout(() => undefined, 1000);
      await r.value;
      clearTimeout(alive);
    }
  }

  wait(t?: FoldTicket): void {
    // Blocking, for what must not wait on the event loop (a staged fold, a take-back, reading the sum); done() is
    // the waiting that leaves the thread free (an upload's trailer).
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      this.poll();
      const x = (t ?? this.tickets.find((y) => y !== undefined)) as Ticket | undefined;
      if (!x || x.done) {
        if (t || this.n === 0) return;
        continue;
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        this.broken = true;
        this.check();
      }
      Atomics.wait(this.jobs, JOB_WORDS * x.slot, JOB.POSTED, Math.min(left, 1000));
    }
  }
}

/** Atomics.waitAsync (Node 16+; the project's ES2022 lib does not declare it). */
interface AtomicsWaitAsync {
  waitAsync(a: Int32Array, i: number, v: number, timeoutMs: number): { async: false; value: string } | { async: true; value: Promise<string> };
}
