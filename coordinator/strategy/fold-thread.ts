// One helper thread of the parallel fold (fold-threads.ts): waits for work, folds it with its own instance of the
// kernel on the round's shared memory, and answers in shared words. Two kinds of work: a part of a run the caller
// staged (its control words: fold-pool.ts), and a run of whole values handed over with its buffer (a message on its
// port: fold-handoff.ts), which it copies into its own stage a region at a time and folds under that region's lock,
// so that runs of several updates folded at once by several helpers never write one value of the sum together.
// The memory of each new running sum comes as a message on its port, posted before the first work for that sum, and
// the messages are read in order, so each run meets the sum it was handed for; the thread keeps the latest one only.
// The loop never returns to the event loop (work comes through Atomics and receiveMessageOnPort), so a part costs no
// message round trip; the thread spins a short while after each job (the next part of a back-to-back upload comes
// within one chunk's copy) and then sleeps in Atomics.wait, costing nothing while no upload streams.
import { MessageChannel, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { SCRATCH, addChecked, wasmApi, type WasmFold } from './fold-kernel';
import { LIMIT } from './fixed-point';
import { CLOSE_SHARED_WASM, type CloseFn } from './close-kernel';
import { copyRange } from './fold-close';
import { CTRL, OP, OWNED_BY_HELPER, W_AT, type FoldThreadData, type NextBuffers, type RunMessage, type SumLayout, type ToFoldThread } from './fold-pool';
import { JOB, JOB_WORDS, lockTake, lockTry, lockWait, unlock } from './fold-handoff';

const { ctrl, port, module: bytes, spinMs } = workerData as FoldThreadData;
const c = new Int32Array(ctrl);
const w64 = new Float64Array(ctrl);
const mod = new wasmApi!.Module(bytes);
const closeMod = new wasmApi!.Module(CLOSE_SHARED_WASM);

interface Sum {
  readonly id: number;
  readonly fold: WasmFold;
  /** FedAvg's close on the same memory (close-kernel.ts), made with the sum where it closes here, else at its first close part. */
  close?: CloseFn;
  /** Where a CLOSE_OUT part's next values go (SumMessage.next): the buffers' views; the stage, its byte address. */
  readonly next?: { readonly views: Float32Array[]; readonly stage: Float32Array; readonly at: number };
  readonly mem: object;
  readonly buf: SharedArrayBuffer;
  readonly layout: SumLayout | undefined;
}
let cur: Sum | undefined;
/**
 * Where each handed run's buffer goes once folded: a closed port, to which a transfer detaches the buffer and frees
 * its memory at once. Left to the garbage collector, the buffers outlive their use: this thread allocates almost
 * nothing, so it collects rarely, and each helper held tens of MB of folded chunks (RSS +60-100 MB with 3 helpers
 * over 2,400 chunks of 1 MiB on the 2-core box, against none with the chunks staged on the calling thread).
 */
const sink = new MessageChannel().port1;
sink.close();

/** Every message waiting on the port, in order: a new sum's memory, or a run to fold into the current sum. */
function drain(): void {
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
    const msg = m.message as ToFoldThread;
    if (msg.op === 'sum') {
      const mem = msg.memory;
      cur = {
        id: msg.id,
        mem,
        fold: new wasmApi!.Instance(mod, { env: { mem } }).exports.fold,
        // Made now, while the sites train, where the sum will close here (not in the close's own time).
        close: msg.next && closeOn(mem),
        buf: mem.buffer as unknown as SharedArrayBuffer,
        layout: msg.layout,
        next: msg.next && nextOf(mem.buffer as unknown as SharedArrayBuffer, msg.next),
      };
    } else {
      foldRun(msg);
      sink.postMessage(null, [msg.buf]);
    }
  }
}

/**
 * A handed run, cut where the sum's lock regions end; each piece copied into this thread's stage and folded under
 * its region's lock, a locked region left for later (another helper is folding another update there). A value
 * outside ±LIMIT: every piece folded is taken back, and the run's first bad value is named (none of it in the sum).
 */
function foldRun(r: RunMessage): void {
  const s = cur;
  const L = s?.layout;
  if (!s || s.id !== r.id || !L) return answer(s?.buf, L, r.slot, JOB.FAILED, -1, 0); // a bug on the posting side
  const locks = new Int32Array(s.buf, L.locks, Math.ceil(L.params / L.region));
  const acc = new Float64Array(s.buf, L.sum, L.params);
  const stageAt = r.block + 16;
  const staged = new Float32Array(s.buf, stageAt, L.region);
  const stage = new Uint8Array(s.buf, stageAt, 4 * L.region);
  const src = new Uint8Array(r.buf, r.off, r.len);
  const n = r.len >>> 2;
  const froms: number[] = [];
  for (let i = 0; i < n; i = (Math.floor((r.start + i) / L.region) + 1) * L.region - r.start) froms.push(i);
  const folded = new Array<number>(froms.length).fill(-1);
  const piece = (k: number, m: number, w: number): number => {
    const from = froms[k];
    stage.set(src.subarray(4 * from, 4 * (from + m)));
    const at = r.start + from;
    const m8 = m & ~7;
    const got = s.fold(L.sum + 8 * at, stageAt, m8, w, r.block);
    return got < m8 ? got : addChecked(acc, staged, at, m8, m, w);
  };
  const len = (k: number): number => (k + 1 < froms.length ? froms[k + 1] : n) - froms[k];
  const region = (k: number): number => Math.floor((r.start + froms[k]) / L.region);
  let left = froms.length;
  let bad = false;
  while (left > 0 && !bad) {
    let waitOn = -1;
    for (let k = 0; k < froms.length && !bad; k++) {
      if (folded[k] >= 0) continue;
      if (!lockTry(locks, region(k))) {
        if (waitOn < 0) waitOn = region(k);
        continue;
      }
      folded[k] = piece(k, len(k), r.w);
      unlock(locks, region(k));
      left--;
      bad = folded[k] < len(k);
    }
    if (left > 0 && !bad && waitOn >= 0) lockWait(locks, waitOn);
  }
  if (!bad) return answer(s.buf, L, r.slot, JOB.DONE, -1, 0);
  for (let k = 0; k < froms.length; k++)
    if (folded[k] > 0) {
      lockTake(locks, region(k));
      piece(k, folded[k], -r.w); // admitted values: exactly what was added comes back out
      unlock(locks, region(k));
    }
  const view = new DataView(r.buf, r.off, r.len);
  let i = 0;
  for (; i < n; i++) {
    const v = view.getFloat32(4 * i, true);
    if (!(v < LIMIT && v > -LIMIT)) break;
  }
  answer(s.buf, L, r.slot, JOB.DONE, i, view.getInt32(4 * i, true));
}

function answer(buf: SharedArrayBuffer | undefined, L: SumLayout | undefined, slot: number, state: number, bad: number, bits: number): void {
  if (!buf || !L) return; // no sum to answer in: the caller's wait times out and refuses the sum
  const j = new Int32Array(buf, L.jobs, JOB_WORDS * (slot + 1));
  const at = JOB_WORDS * slot;
  j[at + 1] = bad;
  j[at + 2] = bits;
  Atomics.store(j, at, state);
  Atomics.notify(j, at);
}

function nextOf(buf: SharedArrayBuffer, next: NextBuffers): Sum['next'] {
  const views = next.bufs.map((b) => new Float32Array(b));
  return {
    views,
    stage: new Float32Array(
      buf,
      next.stage,
      views.reduce((n, v) => n + v.length, 0),
    ),
    at: next.stage,
  };
}

const closeOn = (mem: object): CloseFn => (new wasmApi!.Instance(closeMod, { env: { mem } }).exports as unknown as { close: CloseFn }).close;

/**
 * The posted part: a fold (returns where it stopped) or a close (fold-close.ts: all of it, always), whose next
 * values a CLOSE_OUT part then copies into the sum's next buffers (-1 where the sum has none: the caller refuses).
 */
function work(s: Sum): number {
  const op = c[CTRL.OP];
  if (op === OP.FOLD) return s.fold(c[CTRL.ACC], c[CTRL.X], c[CTRL.N], w64[W_AT], SCRATCH);
  const x = c[CTRL.X];
  const n = c[CTRL.N];
  if (op === OP.CLOSE_OUT && !s.next) return -1;
  s.close ??= closeOn(s.mem);
  s.close(c[CTRL.ACC], x, n, w64[W_AT]);
  if (op === OP.CLOSE_OUT) {
    const a = (x - s.next!.at) >>> 2;
    copyRange(s.next!.views, s.next!.stage, a, a + n, false);
  }
  return n;
}

Atomics.store(c, CTRL.READY, 1);
Atomics.notify(c, CTRL.READY);
let seen = 0;
for (;;) {
  const bell = Atomics.load(c, CTRL.BELL);
  drain();
  const seq = Atomics.load(c, CTRL.SEQ);
  if (seq !== seen) {
    seen = seq;
    // The caller may have done this part itself already (it takes any part not claimed by the time its own is done);
    // claimed here, the job's words stay as they are until DONE says so.
    if (Atomics.compareExchange(c, CTRL.CLAIM, seen, OWNED_BY_HELPER) !== seen) continue;
    drain(); // the part's sum was posted before its job number: read now if it came after the drain above
    // -1: no memory for this sum arrived (a bug on the posting side); the caller refuses to go on.
    c[CTRL.RESULT] = cur && cur.id === c[CTRL.SUM] ? work(cur) : -1;
    Atomics.store(c, CTRL.DONE, seen);
    Atomics.notify(c, CTRL.DONE);
    continue;
  }
  if (Atomics.load(c, CTRL.BELL) !== bell) continue;
  const until = performance.now() + spinMs;
  while (Atomics.load(c, CTRL.BELL) === bell && performance.now() < until);
  if (Atomics.load(c, CTRL.BELL) === bell) Atomics.wait(c, CTRL.BELL, bell);
}
