// The running sum folded by several threads at once. Why: one thread's fold of an opened chunk costs about twice the
// copy of the same bytes (the stage copy, ~the memcpy baseline, plus the kernel), and on a host with many cores
// the other cores sit idle while the coordinator folds. Here the sum lives in a shared WebAssembly memory and each
// run of staged values is cut into parts: the helper threads (fold-thread.ts) fold the first parts, the calling
// thread the last, and the call returns when all are done, so push() stays synchronous and its refusals come from
// the chunk that holds the bad value, as before. Every value of the sum is still touched by one thread per fold,
// in the same order of updates: the bits are those of the single-threaded kernel (test/fold-threads.test.ts).
// The cut is the same for every update with the same chunking, so each thread keeps meeting the same part of the
// sum (1 MiB of it per part at 1M parameters and 8 parts: it can stay in that core's cache).
// A chunk that starts on a value (the coordinator's chunks do) comes unstaged, to foldBytes: the caller copies it a
// quarter-stage piece at a time while the helpers fold the piece before, so the stage copy, as long as the memcpy
// baseline itself, no longer adds to the fold's time (fold() copies a run whole before it is cut). A chunk whose
// buffer the caller gives up (the coordinator's opened chunks) skips the stage altogether: handed to one helper
// whole, the copy and the fold are the helper's (fold-handoff.ts; the calling thread's CPU per 10 × 1M values fell
// from 11-16 ms staged here with 3 helpers to 0.7-1.4 ms, memcpy's being 2.4-2.6 ms, on the loaded 2-core box).
// Whether threads pay depends on the host's load, not only its cores: on the shared 2-core box (load 4-12), one
// helper made the fold of 10 × 1M values slower (9.4 against 4.9 ms), its thread rarely running when a part was
// posted. So each run goes the way measured faster so far (speeds(): threads until the one-thread fold measures
// faster, one run in 64 the other way), and a part no helper has claimed by the time the caller's own part is done
// is folded by the caller.
//
// FedAvg's close of a threaded sum runs on the same helpers, a part of the values each (fold-close.ts: its stage of
// 4 bytes per value follows the sum in the same memory, the round's global placed there when the sum is made, and
// the next adapter goes to shared buffers made with the sum, 4 bytes per value).
// The module is fold-kernel.ts's, with its memory imported and shared: that text with `(memory (export "mem") 1)`
// replaced by `(import "env" "mem" (memory 1 65536 shared))`, assembled by wabt with threads on (the test does it).
// Every thread of one fold writes the same weight into the module's scratch word at byte 64 (benign: same bytes).
//
// Cost, besides the threads: each helper is a Node worker (a V8 isolate: ~10 MB of RSS each, shared by every
// sum of the process), started by the first sum that would use it (that sum folds on one thread: starting 7
// workers took 0.1-0.4 s, not to be spent on the event loop) or by startFoldThreads; a helper keeps a reference to the latest sum it
// folded until the next one arrives (so at most one sum beyond the live ones stays in memory per helper).
import * as os from 'node:os';
import { CONST_BYTES, MAX_WASM_PARAMS, STAGE_BYTES, SUM_AT, foldKernel, foldRange, wasmApi, type FoldKernel, type WasmFold } from './fold-kernel';
import { CTRL, WARM_MS, helpersListening, pool, post, status, taken, takeOrWait, waitFor, type Helper, type SumMessage } from './fold-pool';
import { HandOffQueue, handoffLayout } from './fold-handoff';
import { callerClose, closeOnThreads, copyRange, type CloseSite } from './fold-close';
import type { CloseFn } from './close-kernel';

const SHARED_WASM = Buffer.from(
  'AGFzbQEAAAABCgFgBX9/f3x/AX8CDwEDZW52A21lbQIDAYCABAMCAQAHCAEEZm9sZAAACtMCAdACAwN7An8FeyAEIAP9FP0LBAAgBP0ABAAhCkEA' +
    '/QAEACELQRD9AAQAIQxBIP0ABAAhDUEw/QAEACEOIAEhCCABIAJBAnRqIQkCQANAIAggCU8NASAI/QAEACEFIAj9AAQQIQYgBSAM/U4gC/1DIAYgDP' +
    '1OIAv9Q/1O/aMBRQ0BIAUgDv3mAf1pIAUgDf3mAf1p/eUBIQcgACAA/QAEACAH/V8gCv3yAf3wAf0LBAAgACAA/QAEECAHIAf9DQgJCgsMDQ4PAAEC' +
    'AwQFBgf9XyAK/fIB/fAB/QsEECAGIA795gH9aSAGIA395gH9af3lASEHIAAgAP0ABCAgB/1fIAr98gH98AH9CwQgIAAgAP0ABDAgByAH/Q0ICQoLDA' +
    '0ODwABAgMEBQYH/V8gCv3yAf3wAf0LBDAgCEEgaiEIIABBwABqIQAMAAsLIAggAWtBAnYLC0YBAEEAC0AAAABDAAAAQwAAAEMAAABD////f////3//' +
    '//9/////fwAAgEsAAIBLAACASwAAgEsAAABMAAAATAAAAEwAAABM',
  'base64',
);

/** Sums smaller than this fold on the calling thread (a run of a few values is not worth a hand-off). */
export const FOLD_THREADS_MIN_PARAMS = 1 << 17;
/** Each part has at least this many values (~10 µs of work): a shorter run is cut into fewer parts. */
export const MIN_PART = 1 << 14;
/** foldBytes: values per piece (a quarter of the stage: four slots, so the next piece never lands on one in flight). */
export const PIECE = 1 << 16;
const SLOTS = STAGE_BYTES / 4 / PIECE;
const STAGED = STAGE_BYTES / 4;
/** foldBytes: each helper's part of a piece has at least this many values. */
const MIN_PIECE_PART = 1 << 13;
let sums = 0;
let configured: number | undefined;
let sharedModule: object | undefined;
/**
 * The helper threads a sum uses by default: half the cores less the calling thread's (the other half for the
 * coordinator's gRPC, crypto and disk work), at most 7 (8 parts). None on 2 cores: one helper there was slower.
 */
export function defaultFoldThreads(cores = os.availableParallelism()): number {
  return Math.max(0, Math.min(7, Math.floor(cores / 2) - 1));
}

/** Sets the helper threads of sums made from now on (undefined: the default); for benches, tests and operators. */
export function setFoldThreads(threads: number | undefined): void {
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 0 && threads <= 64))
    throw new RangeError(`fold threads: ${threads}; need an integer in [0, 64]`);
  configured = threads;
}

/** Forgets the measured speeds (tests: a known start). */
export function resetFoldSpeeds(): void {
  measured.clear();
}

export function foldThreads(): number {
  return configured ?? defaultFoldThreads();
}

/**
 * A round's running sum: threaded when the host has the cores and the sum is large enough, else one thread.
 * `place`: the global the sum's close will read (parallelFoldKernel says why).
 */
export function roundFoldKernel(params: number, place?: readonly Float32Array[]): FoldKernel {
  const threads = foldThreads();
  return (threads > 0 && params >= FOLD_THREADS_MIN_PARAMS && parallelFoldKernel(params, threads, true, place)) || foldKernel(params);
}

/**
 * Starts the helpers a threaded sum would use and resolves once they listen (with how many run: 0 where threads
 * are not available). Optional: a sum made before they listen folds on one thread; this lets a process start
 * them early (benches, tests, a coordinator at its start).
 */
export async function startFoldThreads(threads = foldThreads()): Promise<number> {
  pool(threads, SHARED_WASM);
  return helpersListening(threads);
}

export { foldPartsTaken, helpersRunning } from './fold-pool';

/**
 * Measured speeds (ms per value, moving averages) of runs folded with `threads` helpers and on the calling thread
 * alone, over every sum of the process: a host whose cores are busy elsewhere gets the one-thread fold, an idle one
 * the threads, whatever the core count promised.
 */
interface Speeds {
  threads: number;
  one: number;
  runs: number;
}
const measured = new Map<string, Speeds>();
/** One run in this many goes the way not taken, so that both estimates follow the host's load. */
const PROBE_EVERY = 64;
const EWMA = 0.25;

/** The estimates for sums with `threads` helpers, of fold() or (`bytes`) foldBytes() (mutable: tests set them). */
export function speeds(threads: number, bytes = false): Speeds {
  const key = `${threads}${bytes ? ' bytes' : ''}`;
  let sp = measured.get(key);
  if (!sp) measured.set(key, (sp = { threads: NaN, one: NaN, runs: 0 }));
  return sp;
}

/**
 * Runs the way the estimates say is faster (threads until measured otherwise), the other one run in PROBE_EVERY,
 * and updates the estimate of the way it ran (runs that stopped at a bad value are not timed).
 */
function fastest(sp: Speeds, n: number, threads: () => number, one: () => number): number {
  const viaThreads = ++sp.runs % PROBE_EVERY === 0 ? sp.one < sp.threads : !(sp.one < sp.threads);
  const t0 = performance.now();
  const r = viaThreads ? threads() : one();
  if (r === n) {
    const perValue = (performance.now() - t0) / n;
    const key = viaThreads ? 'threads' : 'one';
    sp[key] = Number.isNaN(sp[key]) ? perValue : sp[key] + EWMA * (perValue - sp[key]);
  }
  return r;
}

/**
 * A sum folded by `threads` helpers and the calling thread; undefined where threads or shared memory are missing.
 * `adaptive`: each run goes the way measured faster so far in this process, threads or the calling thread alone
 * (speeds()); false: always cut into parts (tests). `place`: the global tensors (in the layout's order, together
 * the sum's values) that the first close will read, a round's base version, which does not change: their values are
 * copied into the close's stage now, and that close writes into shared next buffers made now (fold-close.ts says
 * why; 4 bytes per value, as the next adapter's own buffers, and the copy in moved from the close to here).
 */
export function parallelFoldKernel(params: number, threads: number, adaptive = true, place?: readonly Float32Array[]): FoldKernel | undefined {
  if (!wasmApi || params > MAX_WASM_PARAMS || typeof SharedArrayBuffer !== 'function') return undefined;
  const hs = pool(threads, SHARED_WASM);
  if (!hs) return undefined;
  // After the sum: what runs handed over whole need (fold-handoff.ts), where the 32-bit memory has room for it.
  const plan = handoffLayout(SUM_AT, params, hs.length);
  const fits = plan.end <= 2 ** 32 - 65536;
  // Then the close's stage (fold-close.ts: 4 bytes per value, its pages untouched until the round closes).
  const gAt = Math.ceil((fits ? plan.end : SUM_AT + 8 * params) / 16) * 16;
  const closes = gAt + 4 * params <= 2 ** 32 - 65536;
  const pages = Math.ceil((closes ? gAt + 4 * params : fits ? plan.end : SUM_AT + 8 * params) / 65536);
  const memory = new wasmApi.Memory({ initial: pages, maximum: pages, shared: true });
  // One compiled module for the process: V8 compiles a new one with its baseline compiler and optimises it only
  // once it runs hot, so a module per sum would fold each round's first runs with the slower code.
  sharedModule ??= new wasmApi.Module(SHARED_WASM);
  const fold: WasmFold = new wasmApi.Instance(sharedModule, { env: { mem: memory } }).exports.fold;
  const buf = memory.buffer;
  const acc = new Float64Array(buf, SUM_AT, params);
  acc.fill(0); // touched now, while the sites train (fold-kernel.ts says why)
  const placing = closes && place !== undefined && place.reduce((n, t) => n + t.length, 0) === params;
  // The close's stage, touched now too (fold-close.ts): with the global's values where given, else zeros.
  const closeStage = closes ? new Float32Array(buf, gAt, params) : undefined;
  if (placing) copyRange(place, closeStage!, 0, params, true);
  else closeStage?.fill(0);
  // The next adapter's shared buffers, touched now: the copy out would cost their page faults (fold-close.ts).
  const nextBufs = placing ? place.map((t) => new SharedArrayBuffer(t.byteLength)) : undefined;
  let next = nextBufs?.map((b) => new Float32Array(b).fill(0));
  let placed = placing ? place : undefined;
  const stage = new Uint8Array(buf, CONST_BYTES, STAGE_BYTES);
  const staged = new Float32Array(buf, CONST_BYTES, STAGE_BYTES / 4);
  const id = ++sums;
  const sum: SumMessage = { op: 'sum', id, memory, layout: fits ? plan.layout : undefined, ...(nextBufs ? { next: { stage: gAt, bufs: nextBufs } } : {}) };
  // Each helper instantiates the module on this memory now, with an empty part (while the sites train), not in
  // the first upload's fold; one that does not get to it within WARM_MS does it at its first part instead.
  for (const h of hs) post(h, sum, SUM_AT, CONST_BYTES, 0, 0);
  const warm = Date.now() + WARM_MS;
  try {
    for (const h of hs) if (!waitFor(h.c, CTRL.DONE, h.seq, Math.max(0, warm - Date.now()))) takeOrWait(h);
  } catch {
    status.failed = true; // a helper that does not answer an empty part: threads off from here on
    return undefined;
  }
  const team: Helper[] = hs;
  let broken = false;
  const starts: number[] = [];
  const lens: number[] = [];
  const done: number[] = [];
  const parts = { helpers: 0, caller: 0 };
  const handoff = fits ? new HandOffQueue(buf as unknown as SharedArrayBuffer, hs, sum, plan.blocks) : undefined;
  /** Before any fold here: no run handed over may be in flight (they would write the same values). */
  const quiet = (): void => {
    if (handoff && handoff.inFlight > 0) handoff.wait();
  };

  const site: CloseSite = { team: hs, sum, memory, sumAt: SUM_AT, gAt, params, stage: closeStage };
  const closeFn: CloseFn | undefined = closes ? callerClose(memory) : undefined;
  const kernel: FoldKernel = {
    acc,
    stage,
    staged,
    simd: true,
    threads: hs.length,
    parts,
    handoff,
    fold(start, n, w) {
      if (broken) throw new Error('fold: a helper thread stopped answering; this sum is unusable');
      quiet();
      const cut = Math.min(hs.length + 1, Math.floor(n / MIN_PART));
      if (cut <= 1) return foldRange(fold, acc, staged, start, 0, n, w);
      if (!adaptive) return threaded(start, n, w, cut);
      return fastest(
        speeds(hs.length),
        n,
        () => threaded(start, n, w, cut),
        () => foldRange(fold, acc, staged, start, 0, n, w),
      );
    },
    foldBytes(start, bytes, w) {
      if (broken) throw new Error('fold: a helper thread stopped answering; this sum is unusable');
      quiet();
      const n = bytes.length >>> 2;
      if (n < 2 * PIECE) {
        // Too short to overlap anything (one stage or less): staged whole, then cut as fold() cuts it.
        stage.set(bytes);
        return kernel.fold(start, n, w);
      }
      if (!adaptive) return piped(start, bytes, w);
      return fastest(
        speeds(hs.length, true),
        n,
        () => piped(start, bytes, w),
        () => stagedOne(start, bytes, w),
      );
    },
    close: !closes
      ? undefined
      : (globals, d, cut) => {
          if (broken || globals.reduce((n, t) => n + t.length, 0) !== params) return undefined;
          quiet();
          // The placed values serve a close of those very tensors, once (the close overwrites the stage), and the
          // shared next buffers one close (handed out: never written again).
          const inStage = placed !== undefined && placed.length === globals.length && placed.every((t, i) => t === globals[i]);
          placed = undefined;
          const into = next !== undefined && next.length === globals.length && next.every((t, i) => t.length === globals[i].length) ? next : undefined;
          next = undefined;
          try {
            return closeOnThreads(site, closeFn!, globals, d, { cut, inStage, next: into });
          } catch {
            broken = true; // a helper stopped answering: the caller closes on its own (the sum was only read)
            return undefined;
          }
        },
  };
  return kernel;

  function threaded(start: number, n: number, w: number, cut: number): number {
    // Parts of `each` values (a multiple of 16: no two threads write one cache line of the sum), the last to
    // this thread with the remainder (0-7 of which the JavaScript tail adds).
    const each = Math.ceil(n / cut / 16) * 16;
    starts.length = lens.length = done.length = cut;
    for (let j = 0; j < cut; j++) {
      starts[j] = j * each;
      lens[j] = j < cut - 1 ? each : n - j * each;
    }
    postParts(start, w);
    return collectParts(start, 0, n, w);
  }

  /**
   * The bytes of whole values, staged a piece at a time into the stage's slots: while the helpers fold one piece
   * the caller copies the next, so the copy (the memcpy baseline's own work) and the fold overlap. Each piece is
   * cut among the helpers only (the caller keeps its 0-7 last values); one piece is in flight at a time, so a bad
   * value stops the fold as in fold(): what follows it is not folded, or is taken back.
   */
  function piped(start: number, bytes: Uint8Array, w: number): number {
    const n = bytes.length >>> 2;
    let prev = -1;
    let prevLen = 0;
    let prevSlot = 0;
    for (let off = 0, k = 0; off < n; off += PIECE, k++) {
      const m = Math.min(PIECE, n - off);
      const slot = (k % SLOTS) * PIECE;
      stage.set(bytes.subarray(4 * off, 4 * (off + m)), 4 * slot);
      if (prev >= 0) {
        const r = collectParts(start + prev - prevSlot, prevSlot, prevLen, w);
        if (r < prevLen) return prev + r;
      }
      const h = Math.min(team.length, Math.floor(m / MIN_PIECE_PART));
      if (h === 0) {
        const r = foldRange(fold, acc, staged, start + off - slot, slot, m, w) - slot;
        if (r < m) return off + r;
        prev = -1;
        continue;
      }
      const m8 = m & ~7;
      const each = Math.ceil(m8 / h / 16) * 16;
      starts.length = lens.length = done.length = h + 1;
      for (let j = 0; j < h; j++) {
        starts[j] = slot + j * each;
        lens[j] = j < h - 1 ? each : m8 - j * each;
      }
      starts[h] = slot + m8;
      lens[h] = m - m8;
      postParts(start + off - slot, w);
      prev = off;
      prevLen = m;
      prevSlot = slot;
    }
    if (prev >= 0) {
      const r = collectParts(start + prev - prevSlot, prevSlot, prevLen, w);
      if (r < prevLen) return prev + r;
    }
    return n;
  }

  /** Posts every part of the plan (starts, lens: stage indices) but the last, the caller's, to a helper each. */
  function postParts(start: number, w: number): void {
    for (let j = 0; j < starts.length - 1; j++) post(team[j], sum, SUM_AT + 8 * (start + starts[j]), CONST_BYTES + 4 * starts[j], lens[j], w);
  }

  /**
   * Folds the caller's part, then each helper's part is taken back and folded here if no helper claimed it (its
   * thread asleep or not scheduled: a busy host costs at most the one-thread time, never a wait for a thread that
   * does not run) or waited for. Returns where the piece [s, s + n) stopped, relative to s (n: all folded).
   */
  function collectParts(start: number, s: number, n: number, w: number): number {
    const cut = starts.length;
    const last = cut - 1;
    done[last] = foldRange(fold, acc, staged, start, starts[last], lens[last], w) - starts[last];
    for (let j = last - 1; j >= 0; j--) {
      let mine: boolean;
      try {
        mine = takeOrWait(team[j]);
      } catch (e) {
        broken = true;
        throw e;
      }
      if (mine) {
        done[j] = foldRange(fold, acc, staged, start, starts[j], lens[j], w) - starts[j];
        parts.caller++;
        taken.caller++;
      } else {
        done[j] = team[j].c[CTRL.RESULT];
        parts.helpers++;
        taken.helpers++;
      }
    }
    let bad = 0;
    while (bad < cut && done[bad] === lens[bad]) bad++;
    if (bad === cut) return n;
    // A value outside ±LIMIT: the parts before it are in the sum; its own part up to it (a helper stopped at the
    // start of its eight: the values of that eight before the bad one are added here); every later part's
    // values are taken back out (all were admitted, so exactly), leaving the sum as one thread would.
    const stop = bad < last ? foldRange(fold, acc, staged, start, starts[bad] + done[bad], Math.min(8, lens[bad] - done[bad]), w) : starts[bad] + done[bad];
    for (let j = bad + 1; j < cut; j++) if (done[j] > 0) foldRange(fold, acc, staged, start, starts[j], done[j], -w);
    return stop - s;
  }

  /** The one-thread way for bytes: staged a stage at a time, then folded here. */
  function stagedOne(start: number, bytes: Uint8Array, w: number): number {
    const n = bytes.length >>> 2;
    for (let off = 0; off < n; off += STAGED) {
      const m = Math.min(STAGED, n - off);
      stage.set(bytes.subarray(4 * off, 4 * (off + m)));
      const r = foldRange(fold, acc, staged, start + off, 0, m, w);
      if (r < m) return off + r;
    }
    return n;
  }
}
