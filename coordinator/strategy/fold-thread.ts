// One helper thread of the parallel fold (fold-threads.ts): waits for a part of a run in its control words, folds it
// with its own instance of the kernel on the round's shared memory, and answers in the same words. The memory of
// each new running sum comes as a message on its port, posted before the first job for that sum; the thread keeps
// the latest one only. The loop never returns to the event loop (jobs come through Atomics, not messages), so a
// job costs no message round trip; the thread spins a short while after each job (the next part of a back-to-back
// upload comes within one chunk's copy) and then sleeps in Atomics.wait, costing nothing while no upload streams.
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import { wasmApi, type WasmFold, type WasmMemory } from './fold-kernel';
import { CTRL, OWNED_BY_HELPER, W_AT, type FoldThreadData, type SumMessage } from './fold-pool';

const { ctrl, port, module: bytes, spinMs } = workerData as FoldThreadData;
const c = new Int32Array(ctrl);
const w64 = new Float64Array(ctrl);
const mod = new wasmApi!.Module(bytes);
let sumId = 0;
let fold: WasmFold | undefined;

/** The instance for sum `id`, from the messages waiting on the port (older sums' are dropped). */
function attach(id: number): void {
  for (let m = receiveMessageOnPort(port); m && sumId !== id; m = receiveMessageOnPort(port)) {
    const msg = m.message as SumMessage;
    if (msg.id !== id) continue;
    const mem: WasmMemory = msg.memory;
    fold = new wasmApi!.Instance(mod, { env: { mem } }).exports.fold;
    sumId = id;
  }
}

Atomics.store(c, CTRL.READY, 1);
Atomics.notify(c, CTRL.READY);
let seen = 0;
for (;;) {
  if (Atomics.load(c, CTRL.SEQ) === seen) {
    const until = performance.now() + spinMs;
    while (Atomics.load(c, CTRL.SEQ) === seen && performance.now() < until);
    if (Atomics.load(c, CTRL.SEQ) === seen) Atomics.wait(c, CTRL.SEQ, seen);
    continue;
  }
  seen = Atomics.load(c, CTRL.SEQ);
  // The caller may have done this part itself already (it takes any part not claimed by the time its own is done);
  // claimed here, the job's words stay as they are until DONE says so.
  if (Atomics.compareExchange(c, CTRL.CLAIM, seen, OWNED_BY_HELPER) !== seen) continue;
  const id = c[CTRL.SUM];
  if (id !== sumId) attach(id);
  // -1: no memory for this sum arrived (a bug on the posting side); the caller refuses to go on.
  c[CTRL.RESULT] = id === sumId && fold ? fold(c[CTRL.ACC], c[CTRL.X], c[CTRL.N], w64[W_AT]) : -1;
  Atomics.store(c, CTRL.DONE, seen);
  Atomics.notify(c, CTRL.DONE);
}
