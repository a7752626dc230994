// The helper threads of the parallel fold (fold-threads.ts): started once per process, shared by every sum, each
// with its block of control words; a part of a run is posted to a helper through them and either claimed and done
// by it or taken back by the caller (whoever swaps CLAIM first does it), so no fold ever waits for a thread that is
// not running. Runs handed over whole (fold-handoff.ts) come as messages on the helper's port, their buffers moved.
// The helper's side is fold-thread.ts.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { WasmMemory } from './fold-kernel';

/** A helper's control words (Int32 indices into its 128-byte shared block); the weight is the float64 at W_AT. */
// SEQ: the latest job's number; CLAIM: that number while nobody has taken the job, then OWNED_BY_HELPER or
// OWNED_BY_CALLER (whoever swapped it first does the part); DONE: the number of the last job the helper did; BELL:
// counts every post (a part or a message on the port): the helper sleeps on it.
// OP: what the part is, a fold (ACC the sum's values, X the staged values, the weight at W_AT) or a close
// (fold-close.ts: ACC the sum's values, X the global's, overwritten by the next values; the denominator at W_AT),
// CLOSE_OUT: a close whose helper then copies its part's next values into the sum's shared next buffers (SumMessage.next).
export const CTRL = { SEQ: 0, DONE: 1, SUM: 2, ACC: 3, X: 4, N: 5, RESULT: 6, READY: 7, CLAIM: 8, BELL: 9, OP: 10 } as const;
export const OP = { FOLD: 0, CLOSE: 1, CLOSE_OUT: 2 } as const;
export const OWNED_BY_HELPER = -1;
const OWNED_BY_CALLER = -2;
export const W_AT = 8; // float64 index: bytes 64-71
export interface FoldThreadData {
  readonly ctrl: SharedArrayBuffer;
  readonly port: MessagePort;
  readonly module: Uint8Array;
  readonly spinMs: number;
}
/**
 * Where a threaded sum keeps, after its values, what handed runs need (fold-handoff.ts): byte addresses of the sum,
 * the region locks (one Int32 per `region` values of the sum) and the job words (JOB_WORDS Int32 per slot).
 */
export interface SumLayout {
  readonly sum: number;
  readonly params: number;
  readonly locks: number;
  readonly region: number;
  readonly jobs: number;
}
/**
 * Where a sum's close leaves the next adapter (fold-close.ts): one SharedArrayBuffer per tensor of the layout, in
 * order, and the byte address of the close's stage in the sum's memory (value i of the layout at stage + 4i).
 */
export interface NextBuffers {
  readonly stage: number;
  readonly bufs: readonly SharedArrayBuffer[];
}
/** Posted to a helper before its first part or run of sum `id` (again whenever another sum came in between). */
export interface SumMessage {
  readonly op: 'sum';
  readonly id: number;
  readonly memory: WasmMemory;
  readonly layout: SumLayout | undefined;
  /** Where the sum's first close writes the next adapter, where that close runs here (FedAvg's own). */
  readonly next?: NextBuffers;
}
/** A run of whole values handed over (its buffer moved): fold it into the sum from value `start`, answer in job `slot`. */
export interface RunMessage {
  readonly op: 'run';
  readonly id: number;
  readonly slot: number;
  readonly buf: ArrayBuffer;
  readonly off: number;
  readonly len: number;
  readonly start: number;
  readonly w: number;
  /** The helper's own bytes in the sum's memory: 16 of scratch, then a stage of `region` values. */
  readonly block: number;
}
export type ToFoldThread = SumMessage | RunMessage;

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
export const WARM_MS = 50;

export interface Helper {
  readonly worker: Worker;
  readonly port: MessagePort;
  readonly c: Int32Array;
  readonly w: Float64Array;
  /** The last sum whose memory was posted to it, and the last job number. */
  sum: number;
  seq: number;
}

/** Started helpers, shared by every sum of the process; `failed`: a helper could not start (threads off). */
export const helpers: Helper[] = [];
export const status = { failed: false };
/** Parts of runs taken by the helpers and by the calling thread, over every sum of the process (for the bench). */
export const taken = { helpers: 0, caller: 0 };

export function foldPartsTaken(): { helpers: number; caller: number } {
  return { ...taken };
}

/** Helper threads started and listening (0 before any was asked for, or where threads failed). */
export function helpersRunning(): number {
  return status.failed ? 0 : helpers.filter(ready).length;
}

/** Blocks until c[i] is `want`; false on timeout (a wake-up is re-checked: the value decides). */
export function waitFor(c: Int32Array, i: number, want: number, timeoutMs: number): boolean {
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
function startHelper(module: Uint8Array): Helper | undefined {
  const file = path.join(__dirname, 'fold-thread.js');
  if (!existsSync(file)) return undefined; // run from sources (no compiled thread file): one thread
  try {
    const ctrl = new SharedArrayBuffer(128);
    const { port1, port2 } = new MessageChannel();
    const data: FoldThreadData = { ctrl, port: port2, module: new Uint8Array(module), spinMs: SPIN_MS };
    const worker = new Worker(file, { workerData: data, transferList: [port2] });
    worker.unref(); // never keeps a process alive
    port1.unref();
    worker.on('error', () => void (status.failed = true));
    worker.on('exit', () => void (status.failed = true));
    return { worker, port: port1, c: new Int32Array(ctrl), w: new Float64Array(ctrl), sum: 0, seq: 0 };
  } catch {
    return undefined;
  }
}

export const ready = (h: Helper): boolean => Atomics.load(h.c, CTRL.READY) === 1;

/**
 * `threads` helpers if they are all started and listening; undefined while some are still starting (they are
 * started now: the next sum gets them) or where threads are not available (not asked for again).
 */
export function pool(threads: number, module: Uint8Array): Helper[] | undefined {
  while (!status.failed && helpers.length < threads) {
    const h = startHelper(module);
    if (!h) status.failed = true;
    else helpers.push(h);
  }
  const hs = helpers.slice(0, threads);
  return !status.failed && hs.every(ready) ? hs : undefined;
}

/** Resolves once the first `threads` helpers listen (or START_TIMEOUT_MS passed), with how many do. */
export async function helpersListening(threads: number): Promise<number> {
  const until = Date.now() + START_TIMEOUT_MS;
  while (!status.failed && Date.now() < until && !helpers.slice(0, threads).every(ready)) await new Promise((r) => setTimeout(r, 5));
  return status.failed ? 0 : helpers.slice(0, threads).filter(ready).length;
}

/** Sends h the sum's memory unless the last sum it was sent is this one. */
function attach(h: Helper, sum: SumMessage): void {
  if (h.sum !== sum.id) {
    h.port.postMessage(sum);
    h.sum = sum.id;
  }
}

/** Wakes h for what was just posted. */
function ring(h: Helper): void {
  Atomics.add(h.c, CTRL.BELL, 1);
  Atomics.notify(h.c, CTRL.BELL);
}

/** Posts a part to helper h: its words first, then the job number in CLAIM and SEQ (the helper reads them after). */
export function post(h: Helper, sum: SumMessage, acc: number, x: number, n: number, w: number, op: number = OP.FOLD): void {
  attach(h, sum);
  const id = sum.id;
  h.c[CTRL.OP] = op;
  h.c[CTRL.SUM] = id;
  h.c[CTRL.ACC] = acc;
  h.c[CTRL.X] = x;
  h.c[CTRL.N] = n;
  h.w[W_AT] = w;
  h.seq++;
  Atomics.store(h.c, CTRL.CLAIM, h.seq);
  Atomics.store(h.c, CTRL.SEQ, h.seq);
  ring(h);
}

/** Hands h a run of whole values, moving `run.buf` to it (unusable here afterwards). */
export function postRun(h: Helper, sum: SumMessage, run: RunMessage): void {
  attach(h, sum);
  h.port.postMessage(run, [run.buf]);
  ring(h);
}

/** Takes back h's latest part if no helper claimed it (true), else waits until the helper has done it (false). */
export function takeOrWait(h: Helper): boolean {
  if (Atomics.compareExchange(h.c, CTRL.CLAIM, h.seq, OWNED_BY_CALLER) === h.seq) return true;
  if (!waitFor(h.c, CTRL.DONE, h.seq, PART_TIMEOUT_MS) || h.c[CTRL.RESULT] < 0) throw new Error('fold: a helper thread did not answer; this sum is unusable');
  return false;
}
