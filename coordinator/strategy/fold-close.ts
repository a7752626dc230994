// FedAvg's close (next = f32(g + s / d), close-kernel.ts) of a threaded sum, split by region across the sum's helper
// threads. Why: on one thread the close of 1M values took 7-8 ms on the idle 16-core host, longer than the fold of
// the whole round's 10 updates on its helpers, so counted with the close the round's aggregation stayed at a third of
// memcpy's bandwidth. The close is elementwise and the sum already lives in a shared memory the helpers hold: the
// global's values sit in that memory after the sum (4 bytes per value), the values are cut into parts, each helper
// closes its part with its own instance of the same WebAssembly function on that memory (the shared text of
// close-kernel.ts), the calling thread the last part, and the next values are copied out per tensor.
// Two copies stayed on the calling thread, ~1.6 of the close's ~3 ms on the idle 16-core host (global in, next out),
// so both left the close. In: the round's global is the base version, committed and never changed, and FedAvg's sum
// is made when the round opens (while its sites train) with that global: its values are copied into the stage then
// (parallelFoldKernel's `place`), and a close of those same tensors finds them there. Out: the sum's first close
// writes into shared next buffers made with the sum (SumMessage.next, one SharedArrayBuffer per tensor, touched in
// advance), each part's closer, helper or caller, copying its own part out, so the copy out is split as the close is.
// Those buffers are handed out once (the adapter FedAvg.aggregate returns): a later close of the same sum, or one of
// another global, copies in on the calling thread and out into new buffers, so an adapter once returned never
// changes, and a failed close hands nothing out (a helper still busy with a part writes buffers nobody holds).
// Every value goes through the same float64 division, addition and float32 rounding whichever thread runs it, so the
// bits are those of the one-thread close for any cut (test/fold-close.test.ts). A part no helper has claimed by the
// time the caller's own is done is closed by the caller (fold-pool.ts takeOrWait), so a busy host costs at most the
// one-thread time and the two copies, never a wait for a thread that does not run. The sum itself is only read.
import { CLOSE_SHARED_WASM, type CloseFn } from './close-kernel';
import { wasmApi, type WasmMemory } from './fold-kernel';
import { OP, post, takeOrWait, type Helper, type SumMessage } from './fold-pool';

/** Each part has at least this many values (~50 µs of work): a shorter close is cut into fewer parts. */
export const MIN_CLOSE_PART = 1 << 15;

let sharedClose: object | undefined;
/** Parts of closes done by the helpers and by the calling thread (taken back unclaimed), over the process (bench). */
export const closeParts = { helpers: 0, caller: 0 };
/** Closes over the process that found the global placed in the stage, and that copied it in (tests, bench). */
export const closeGlobals = { placed: 0, copiedIn: 0 };
/**
 * The calling thread's milliseconds in each step of its closes, over the process (bench): copying the global in
 * (posting the parts as it goes), its own part with its copy out, waiting for (or doing) the helpers' parts, and
 * copying their next values out.
 */
export const closeTimes = { copyIn: 0, own: 0, wait: 0, copyOut: 0 };
/**
 * Milliseconds over the process (bench): FedAvg's threaded closes whole (fedavg.ts, from its layout check to the
 * tensors built), and closeOnThreads whole; what either holds beyond the steps above is the call around them.
 */
export const closeSpans = { fedavg: 0, threads: 0 };

/** Where a threaded sum's close works: its helpers, the sum's memory and addresses. */
export interface CloseSite {
  readonly team: readonly Helper[];
  readonly sum: SumMessage;
  readonly memory: WasmMemory;
  /** Byte address of the sum's first value (float64) and of the close's stage (float32, one per value). */
  readonly sumAt: number;
  readonly gAt: number;
  readonly params: number;
  /** The stage as float32 values (made with the sum, not in the close's time). */
  readonly stage?: Float32Array;
}

/** The calling thread's close on `site`'s memory (one instance per sum). */
export function callerClose(memory: WasmMemory): CloseFn {
  // One compiled module per process, as the fold's (fold-threads.ts says why).
  sharedClose ??= new wasmApi!.Module(CLOSE_SHARED_WASM);
  return (new wasmApi!.Instance(sharedClose, { env: { mem: memory } }).exports as unknown as { close: CloseFn }).close;
}

/** How a close runs: `cut` parts (default: one per helper and one for the caller, each of at least MIN_CLOSE_PART values). */
export interface CloseHow {
  readonly cut?: number;
  /** The stage already holds the global's values (placed when the sum was made): nothing to copy in. */
  readonly inStage?: boolean;
  /** The sum's shared next buffers (views over SumMessage.next's, whole): each part's closer copies its part out. */
  readonly next?: readonly Float32Array[];
}

/**
 * The next values of the global tensors `globals` (in the layout's order, together exactly the sum's values) with
 * denominator `d`: in `how.next` where given, else in new buffers of their own (unshared) that this thread copies
 * into.
 */
export function closeOnThreads(site: CloseSite, close: CloseFn, globals: readonly Float32Array[], d: number, how: CloseHow = {}): Float32Array[] {
  const start = performance.now();
  const { team, sum, sumAt, gAt, params } = site;
  const total = globals.reduce((n, t) => n + t.length, 0);
  if (total !== params) throw new RangeError(`close: the global holds ${total} values; the sum has ${params}`);
  const g = site.stage ?? new Float32Array(site.memory.buffer, gAt, params);
  const next = how.next ? [...how.next] : globals.map((t) => new Float32Array(t.length));
  const op = how.next ? OP.CLOSE_OUT : OP.CLOSE;
  const copyIn = (a: number, b: number): void => void (how.inStage || copyRange(globals, g, a, b, true));
  closeGlobals[how.inStage ? 'placed' : 'copiedIn']++;
  const parts = Math.max(1, Math.min(team.length + 1, how.cut ?? Math.floor(params / MIN_CLOSE_PART)));
  // Parts of `each` values, a multiple of 16 (no two threads write one cache line of the stage), the last the
  // caller's with the remainder.
  const each = Math.ceil(params / parts / 16) * 16;
  const at = (j: number): number => Math.min(params, j * each);
  const closePart = (j: number): void => close(sumAt + 8 * at(j), gAt + 4 * at(j), at(j + 1) - at(j), d);
  const last = parts - 1;
  // Each part posted as soon as its global values are in (its helper starts while the next part's are copied),
  // and each part's next values copied out as soon as it is done (while later parts may still be closing).
  let t0 = performance.now();
  for (let j = 0; j < last; j++) {
    copyIn(at(j), at(j + 1));
    post(team[j], sum, sumAt + 8 * at(j), gAt + 4 * at(j), at(j + 1) - at(j), d, op);
  }
  copyIn(at(last), params);
  let t1 = performance.now();
  closeTimes.copyIn += t1 - t0;
  closePart(last);
  copyRange(next, g, at(last), params, false);
  t0 = performance.now();
  closeTimes.own += t0 - t1;
  for (let j = 0; j < last; j++) {
    const mine = takeOrWait(team[j]);
    if (mine) {
      closePart(j);
      closeParts.caller++;
    } else closeParts.helpers++;
    t1 = performance.now();
    closeTimes.wait += t1 - t0;
    // A helper's CLOSE_OUT part is copied out already (by that helper).
    if (mine || op === OP.CLOSE) copyRange(next, g, at(j), at(j + 1), false);
    t0 = performance.now();
    closeTimes.copyOut += t0 - t1;
  }
  closeSpans.threads += performance.now() - start;
  return next;
}

/** Copies values [a, b) of the layout between its tensors `ts` (in order) and `flat`: into flat, or out of it. */
export function copyRange(ts: readonly Float32Array[], flat: Float32Array, a: number, b: number, into: boolean): void {
  let off = 0;
  for (const t of ts) {
    const lo = Math.max(a, off);
    const hi = Math.min(b, off + t.length);
    if (lo < hi) {
      if (into) flat.set(t.subarray(lo - off, hi - off), lo);
      else t.set(flat.subarray(lo, hi), lo - off);
    }
    off += t.length;
    if (off >= b) return;
  }
}
