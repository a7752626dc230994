// The mask thread that mask-worker.ts starts: masks each window of a vector in the shared buffer it was given,
// continuing every keystream from one window to the next, and answers on its port.
import type { Cipher } from 'node:crypto';
import { parentPort, workerData } from 'node:worker_threads';
import type { MaskJob, MaskThreadData } from './mask-worker';
import { maskBytes, maskCipher } from './prg';

const { ctrl, window, port } = workerData as MaskThreadData;
const win = new Uint8Array(window);
let plus: Cipher[] = [];
let minus: Cipher[] = [];

parentPort!.on('message', (job: MaskJob) => {
  let error: string | undefined;
  try {
    if (job.keys) {
      plus = job.keys.filter((_, i) => job.signs![i] === 1).map((k) => maskCipher(k));
      minus = job.keys.filter((_, i) => job.signs![i] !== 1).map((k) => maskCipher(k));
    }
    maskBytes(win.subarray(0, job.n), plus, minus);
  } catch (e) {
    error = e instanceof Error ? e.message : String(e);
  }
  if (job.last || error !== undefined) plus = minus = []; // the keys go with the job
  port.postMessage({ error });
  Atomics.store(ctrl, 0, 1);
  Atomics.notify(ctrl, 0);
});
Atomics.store(ctrl, 1, 1);
Atomics.notify(ctrl, 1);
