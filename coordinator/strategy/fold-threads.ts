// The running sum folded by several threads at once. Why: one thread's fold of an opened chunk costs about twice the
// copy of the same bytes (the stage copy, ~the memcpy baseline, plus the kernel), and on a host with many cores
// the other cores sit idle while the coordinator folds. Here the sum lives in a shared WebAssembly memory and each
// run of staged values is cut into parts: the helper threads (fold-thread.ts) fold the first parts, the calling
// thread the last, and the call returns when all are done, so push() stays synchronous and its refusals come from
// the chunk that holds the bad value, as before. Every value of the sum is still touched by one thread per fold,
// in the same order of updates: the bits are those of the single-threaded kernel (test/fold-threads.test.ts).
// The cut is the same for every update with the same chunking, so each thread keeps meeting the same part of the
// sum (1 MiB of it per part at 1M parameters and 8 parts: it can stay in that core's cache).
// Whether threads pay depends on the host's load, not only its cores: on the shared 2-core box (load 4-12), one
// helper made the fold of 10 × 1M values slower (9.4 against 4.9 ms), its thread rarely running when a part was
// posted. So each run goes the way measured faster so far (speeds(): threads until the one-thread fold measures
// faster, one run in 64 the other way), and a part no helper has claimed by the time the caller's own part is done
// is folded by the caller.
//
// The module is fold-kernel.ts's, with its memory imported and shared: that text with `(memory (export "mem") 1)`
// replaced by `(import "env" "mem" (memory 1 65536 shared))`, assembled by wabt with threads on (the test does it).
// Every thread of one fold writes the same weight into the module's scratch word at byte 64 (benign: same bytes).
//
// Cost, besides the threads: each helper is a Node worker (a V8 isolate: ~10 MB of RSS each, shared by every
// sum of the process), started by the first sum that would use it (that sum folds on one thread: starting 7
// workers took 0.1-0.4 s, not to be spent on the event loop) or by startFoldThreads; a helper keeps a reference to the latest sum it
// folded until the next one arrives (so at most one sum beyond the live ones stays in memory per helper).
import { existsSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import {
  CONST_BYTES,
  MAX_WASM_PARAMS,
  STAGE_BYTES,
  SUM_AT,
  foldKernel,
  foldRange,
  wasmApi,
  type FoldKernel,
  type WasmFold,
  type WasmMemory,
} from './fold-kernel';

const SHARED_WASM = Buffer.from(
  'AGFzbQEAAAABCQFgBH9/f3wBfwIPAQNlbnYDbWVtAgMBgIAEAwIBAAcIAQRmb2xkAAAK1QIB0gIDA3sCfwV7QcAAIAP9FP0LBABBwAD9AAQAIQ' +
    'lBAP0ABAAhCkEQ/QAEACELQSD9AAQAIQxBMP0ABAAhDSABIQcgASACQQJ0aiEIAkADQCAHIAhPDQEgB/0ABAAhBCAH/QAEECEFIAQgC/1OIAr9' +
    'QyAFIAv9TiAK/UP9Tv2jAUUNASAEIA395gH9aSAEIAz95gH9af3lASEGIAAgAP0ABAAgBv1fIAn98gH98AH9CwQAIAAgAP0ABBAgBiAG/Q0ICQ' +
    'oLDA0ODwABAgMEBQYH/V8gCf3yAf3wAf0LBBAgBSAN/eYB/WkgBSAM/eYB/Wn95QEhBiAAIAD9AAQgIAb9XyAJ/fIB/fAB/QsEICAAIAD9AAQw' +
    'IAYgBv0NCAkKCwwNDg8AAQIDBAUGB/1fIAn98gH98AH9CwQwIAdBIGohByAAQcAAaiEADAALCyAHIAFrQQJ2CwtGAQBBAAtAAAAAQwAAAEMAAA' +
    'BDAAAAQ////3////9/////f////38AAIBLAACASwAAgEsAAIBLAAAATAAAAEwAAABMAAAATA==',
  'base64',
);

/** A helper's control words (Int32 indices into its 128-byte shared block); the weight is the float64 at W_AT. */
// SEQ: the latest job's number; CLAIM: that number while nobody has taken the job, then OWNED_BY_HELPER or
// OWNED_BY_CALLER (whoever swapped it first does the part); DONE: the number of the last job the helper did.
export const CTRL = { SEQ: 0, DONE: 1, SUM: 2, ACC: 3, X: 4, N: 5, RESULT: 6, READY: 7, CLAIM: 8 } as const;
export const OWNED_BY_HELPER = -1;
const OWNED_BY_CALLER = -2;
export const W_AT = 8; // float64 index: bytes 64-71
export interface FoldThreadData {
  readonly ctrl: SharedArrayBuffer;
  readonly port: MessagePort;
  readonly module: Uint8Array;
  readonly spinMs: number;
}
/** Posted to a helper before its first part of sum `id`. */
export interface SumMessage {
  readonly id: number;
  readonly memory: WasmMemory;
}

/** Sums smaller than this fold on the calling thread (a run of a few values is not worth a hand-off). */
export const FOLD_THREADS_MIN_PARAMS = 1 << 17;
/** Each part has at least this many values (~10 µs of work): a shorter run is cut into fewer parts. */
export const MIN_PART = 1 << 14;
/**
 * How long a helper spins after a job before it sleeps: longer than the gap between the runs of back-to-back
 * chunks (one chunk's stage copy, ~0.1 ms per MiB), so a burst keeps its helpers awake. Runs that come apart (at the
 * network's pace) cost this much spinning per helper each: the bench's CPU figure counts it.
 */
const SPIN_MS = 0.3;
/** Far above any part's work (milliseconds): only a helper that died waits this long. */
const PART_TIMEOUT_MS = 60_000;
const START_TIMEOUT_MS = 10_000;
/** How long a new sum waits, in all, for its helpers to instantiate the module on its memory. */
const WARM_MS = 50;

interface Helper {
  readonly worker: Worker;
  readonly port: MessagePort;
  readonly c: Int32Array;
  readonly w: Float64Array;
  /** The last sum whose memory was posted to it, and the last job number. */
  sum: number;
  seq: number;
}

/** Started helpers, shared by every sum of the process; `failed`: a helper could not start (threads off). */
const helpers: Helper[] = [];
let failed = false;
let sums = 0;
let configured: number | undefined;
let sharedModule: object | undefined;
/** Parts of runs taken by the helpers and by the calling thread, over every sum of the process (for the bench). */
const taken = { helpers: 0, caller: 0 };

export function foldPartsTaken(): { helpers: number; caller: number } {
  return { ...taken };
}

/** Helper threads started and listening (0 before any was asked for, or where threads failed). */
export function helpersRunning(): number {
  return failed ? 0 : helpers.filter(ready).length;
}

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

/** A round's running sum: threaded when the host has the cores and the sum is large enough, else one thread. */
export function roundFoldKernel(params: number): FoldKernel {
  const threads = foldThreads();
  return (threads > 0 && params >= FOLD_THREADS_MIN_PARAMS && parallelFoldKernel(params, threads)) || foldKernel(params);
}

/** Blocks until c[i] is `want`; false on timeout (a wake-up is re-checked: the value decides). */
function waitFor(c: Int32Array, i: number, want: number, timeoutMs: number): boolean {
  let v = Atomics.load(c, i);
  for (let spin = 0; v !== want && spin < 20_000; spin++) v = Atomics.load(c, i);
  const deadline = Date.now() + timeoutMs;
  while (v !== want) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    Atomics.wait(c, i, v, left);
    v = Atomics.load(c, i);
  }
  return true;
}

/** Starts a helper without waiting for it (a worker takes ~60 ms to start: not on the event loop's time). */
function startHelper(): Helper | undefined {
  const file = path.join(__dirname, 'fold-thread.js');
  if (!existsSync(file)) return undefined; // run from sources (no compiled thread file): one thread
  try {
    const ctrl = new SharedArrayBuffer(128);
    const { port1, port2 } = new MessageChannel();
    const data: FoldThreadData = { ctrl, port: port2, module: new Uint8Array(SHARED_WASM), spinMs: SPIN_MS };
    const worker = new Worker(file, { workerData: data, transferList: [port2] });
    worker.unref(); // never keeps a process alive
    port1.unref();
    worker.on('error', () => void (failed = true));
    worker.on('exit', () => void (failed = true));
    return { worker, port: port1, c: new Int32Array(ctrl), w: new Float64Array(ctrl), sum: 0, seq: 0 };
  } catch {
    return undefined;
  }
}

const ready = (h: Helper): boolean => Atomics.load(h.c, CTRL.READY) === 1;

/**
 * `threads` helpers if they are all started and listening; undefined while some are still starting (they are
 * started now: the next sum gets them) or where threads are not available (not asked for again).
 */
function pool(threads: number): Helper[] | undefined {
  while (!failed && helpers.length < threads) {
    const h = startHelper();
    if (!h) failed = true;
    else helpers.push(h);
  }
  const hs = helpers.slice(0, threads);
  return !failed && hs.every(ready) ? hs : undefined;
}

/**
 * Starts the helpers a threaded sum would use and resolves once they listen (with how many run: 0 where threads
 * are not available). Optional: a sum made before they listen folds on one thread; this lets a process start
 * them early (benches, tests, a coordinator at its start).
 */
export async function startFoldThreads(threads = foldThreads()): Promise<number> {
  pool(threads);
  const until = Date.now() + START_TIMEOUT_MS;
  while (!failed && Date.now() < until && !helpers.slice(0, threads).every(ready)) await new Promise((r) => setTimeout(r, 5));
  return failed ? 0 : helpers.slice(0, threads).filter(ready).length;
}

/**
 * Measured speeds (ms per value, moving averages) of runs folded with `threads` helpers and on the calling thread
 * alone, over every sum of the process: a host whose cores are busy elsewhere gets the one-thread fold, an idle one
 * the threads, whatever the core count promised.
 */
const measured = new Map<number, { threads: number; one: number; runs: number }>();
/** One run in this many goes the way not taken, so that both estimates follow the host's load. */
const PROBE_EVERY = 64;
const EWMA = 0.25;

/** The estimates for sums with `threads` helpers (mutable: tests set them to check the choice). */
export function speeds(threads: number): { threads: number; one: number; runs: number } {
  let sp = measured.get(threads);
  if (!sp) measured.set(threads, (sp = { threads: NaN, one: NaN, runs: 0 }));
  return sp;
}

/** Posts a part to helper h: its words first, then the job number in CLAIM and SEQ (the helper reads them after). */
function post(h: Helper, id: number, memory: WasmMemory, acc: number, x: number, n: number, w: number): void {
  if (h.sum !== id) {
    const msg: SumMessage = { id, memory };
    h.port.postMessage(msg);
    h.sum = id;
  }
  h.c[CTRL.SUM] = id;
  h.c[CTRL.ACC] = acc;
  h.c[CTRL.X] = x;
  h.c[CTRL.N] = n;
  h.w[W_AT] = w;
  h.seq++;
  Atomics.store(h.c, CTRL.CLAIM, h.seq);
  Atomics.store(h.c, CTRL.SEQ, h.seq);
  Atomics.notify(h.c, CTRL.SEQ);
}

/** Takes back h's latest part if no helper claimed it (true), else waits until the helper has done it (false). */
function takeOrWait(h: Helper): boolean {
  if (Atomics.compareExchange(h.c, CTRL.CLAIM, h.seq, OWNED_BY_CALLER) === h.seq) return true;
  if (!waitFor(h.c, CTRL.DONE, h.seq, PART_TIMEOUT_MS) || h.c[CTRL.RESULT] < 0) throw new Error('fold: a helper thread did not answer; this sum is unusable');
  return false;
}

/**
 * A sum folded by `threads` helpers and the calling thread; undefined where threads or shared memory are missing.
 * `adaptive`: each run goes the way measured faster so far in this process, threads or the calling thread alone
 * (speeds()); false: always cut into parts (tests).
 */
export function parallelFoldKernel(params: number, threads: number, adaptive = true): FoldKernel | undefined {
  if (!wasmApi || params > MAX_WASM_PARAMS || typeof SharedArrayBuffer !== 'function') return undefined;
  const hs = pool(threads);
  if (!hs) return undefined;
  const pages = Math.ceil((SUM_AT + 8 * params) / 65536);
  const memory = new wasmApi.Memory({ initial: pages, maximum: pages, shared: true });
  // One compiled module for the process: V8 compiles a new one with its baseline compiler and optimises it only
  // once it runs hot, so a module per sum would fold each round's first runs with the slower code.
  sharedModule ??= new wasmApi.Module(SHARED_WASM);
  const fold: WasmFold = new wasmApi.Instance(sharedModule, { env: { mem: memory } }).exports.fold;
  const buf = memory.buffer;
  const acc = new Float64Array(buf, SUM_AT, params);
  acc.fill(0); // touched now, while the sites train (fold-kernel.ts says why)
  const stage = new Uint8Array(buf, CONST_BYTES, STAGE_BYTES);
  const staged = new Float32Array(buf, CONST_BYTES, STAGE_BYTES / 4);
  const id = ++sums;
  // Each helper instantiates the module on this memory now, with an empty part (while the sites train), not in
  // the first upload's fold; one that does not get to it within WARM_MS does it at its first part instead.
  for (const h of hs) post(h, id, memory, SUM_AT, CONST_BYTES, 0, 0);
  const warm = Date.now() + WARM_MS;
  try {
    for (const h of hs) if (!waitFor(h.c, CTRL.DONE, h.seq, Math.max(0, warm - Date.now()))) takeOrWait(h);
  } catch {
    failed = true; // a helper that does not answer an empty part: threads off from here on
    return undefined;
  }
  const team: Helper[] = hs;
  let broken = false;
  const starts: number[] = [];
  const lens: number[] = [];
  const done: number[] = [];
  const parts = { helpers: 0, caller: 0 };

  return {
    acc,
    stage,
    staged,
    simd: true,
    threads: hs.length,
    parts,
    fold(start, n, w) {
      if (broken) throw new Error('fold: a helper thread stopped answering; this sum is unusable');
      const cut = Math.min(hs.length + 1, Math.floor(n / MIN_PART));
      if (cut <= 1) return foldRange(fold, acc, staged, start, 0, n, w);
      if (!adaptive) return threaded(start, n, w, cut);
      // The faster way by the estimates (threads until measured otherwise), the other one run in PROBE_EVERY.
      const sp = speeds(hs.length);
      const viaThreads = ++sp.runs % PROBE_EVERY === 0 ? sp.one < sp.threads : !(sp.one < sp.threads);
      const t0 = performance.now();
      const r = viaThreads ? threaded(start, n, w, cut) : foldRange(fold, acc, staged, start, 0, n, w);
      if (r === n) {
        const perValue = (performance.now() - t0) / n;
        const key = viaThreads ? 'threads' : 'one';
        sp[key] = Number.isNaN(sp[key]) ? perValue : sp[key] + EWMA * (perValue - sp[key]);
      }
      return r;
    },
  };

  function threaded(start: number, n: number, w: number, cut: number): number {
    // Parts of `each` values (a multiple of 16: no two threads write one cache line of the sum), the last to
    // this thread with the remainder (0-7 of which the JavaScript tail adds).
    const each = Math.ceil(n / cut / 16) * 16;
    const last = cut - 1;
    starts.length = lens.length = done.length = cut;
    for (let j = 0; j < cut; j++) {
      starts[j] = j * each;
      lens[j] = j < last ? each : n - j * each;
    }
    for (let j = 0; j < last; j++) post(team[j], id, memory, SUM_AT + 8 * (start + starts[j]), CONST_BYTES + 4 * starts[j], lens[j], w);
    done[last] = foldRange(fold, acc, staged, start, starts[last], lens[last], w) - starts[last];
    // A part no helper has taken yet (its thread is asleep or not scheduled) is done here: a busy host costs at
    // most the one-thread time, never a wait for a thread that does not run.
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
    return stop;
  }
}
