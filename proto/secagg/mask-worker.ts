// Mask expansion on a thread of its own. Node's Cipher.update() returns a fresh buffer on every call (no call
// writes into a given buffer), so a SecAgg+ site expanding k + 1 full-length keystreams allocates 60 MB of
// short-lived buffers at N = 100 and 1M parameters. V8 counts them as external memory and answers with a full
// mark-compact of the whole heap about once per site ("external memory pressure" in `node --trace-gc`), whose
// cost grows with whatever else the site holds (its model, its data): inside the benchmark's round the masks
// cost twice their 20 ms in isolation. On a thread of its own the same buffers are collected in a heap of a few
// MB. The vector goes through a shared window 1 MiB at a time and the caller waits (Atomics.wait), so addMasks
// stays synchronous; both threads run the same maskBytes (prg.ts), so the words are the same.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { Mask } from './prg';

/** Below this the round trip to the thread costs more than the collections it saves. */
export const MASK_WORKER_MIN_BYTES = 1 << 18;
const WINDOW_BYTES = 1 << 20;
/** Far above any window's work (1 MiB × 2,000 masks is about a second): only a thread that died waits this long. */
const WINDOW_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS = 10_000;

/** One window of a job: the keys come with the first; the thread forgets them after the last. */
export interface MaskJob {
  readonly keys?: readonly Uint8Array[];
  readonly signs?: readonly number[];
  readonly n: number;
  readonly last: boolean;
}

/** ctrl[0]: 1 when the thread has answered the window; ctrl[1]: 1 once the thread is listening. */
export interface MaskThreadData {
  readonly ctrl: Int32Array;
  readonly window: SharedArrayBuffer;
  readonly port: MessagePort;
}

interface Helper {
  readonly worker: Worker;
  readonly port: MessagePort;
  readonly ctrl: Int32Array;
  readonly window: Uint8Array;
}

/**
 * Blocks until ctrl[i] is no longer 0; false on timeout. A wake-up is not an answer: the thread's notify for the
 * previous window can land after this window was posted (it stores, then notifies), so the value is re-read.
 */
function waitFor(ctrl: Int32Array, i: number, timeoutMs: number): boolean {
  const deadline = Date.now() + timeoutMs;
  while (Atomics.load(ctrl, i) === 0) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    Atomics.wait(ctrl, i, 0, left);
  }
  return true;
}

/** undefined: not started yet; null: could not start (then masks are added on the calling thread, as before). */
let helper: Helper | null | undefined;

function start(): Helper | null {
  const file = path.join(__dirname, 'mask-worker-thread.js');
  if (!existsSync(file)) return null; // run from sources (no compiled thread file): stay on this thread
  try {
    const ctrl = new Int32Array(new SharedArrayBuffer(8));
    const window = new SharedArrayBuffer(WINDOW_BYTES);
    const { port1, port2 } = new MessageChannel();
    const data: MaskThreadData = { ctrl, window, port: port2 };
    const worker = new Worker(file, { workerData: data, transferList: [port2] });
    worker.unref(); // never keeps a process alive
    worker.on('error', () => void (helper = null));
    worker.on('exit', () => void (helper = null));
    if (!waitFor(ctrl, 1, START_TIMEOUT_MS)) {
      void worker.terminate();
      return null;
    }
    return { worker, port: port1, ctrl, window: new Uint8Array(window) };
  } catch {
    return null;
  }
}

/**
 * bytes ← bytes + Σ sign·PRG(key) on the mask thread; false (nothing done) when the thread is not available.
 * Keys must already be checked (32 bytes each).
 */
export function maskOnWorker(bytes: Uint8Array, masks: readonly Mask[]): boolean {
  if (helper === undefined) helper = start();
  const h = helper;
  if (!h) return false;
  for (let off = 0; off < bytes.length; off += WINDOW_BYTES) {
    const n = Math.min(WINDOW_BYTES, bytes.length - off);
    h.window.set(bytes.subarray(off, off + n));
    const job: MaskJob =
      off === 0 ? { keys: masks.map((m) => m.key), signs: masks.map((m) => m.sign), n, last: off + n >= bytes.length } : { n, last: off + n >= bytes.length };
    Atomics.store(h.ctrl, 0, 0);
    h.worker.postMessage(job);
    if (!waitFor(h.ctrl, 0, WINDOW_TIMEOUT_MS)) {
      helper = null;
      void h.worker.terminate();
      throw new Error('secagg: the mask thread did not answer');
    }
    const reply = receiveMessageOnPort(h.port)?.message as { error?: string } | undefined;
    if (!reply || reply.error !== undefined) throw new Error(`secagg: the mask thread failed: ${reply?.error ?? 'no answer'}`);
    bytes.set(h.window.subarray(0, n), off);
  }
  return true;
}
