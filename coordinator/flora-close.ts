// A 'flora' round's close off the coordinator's event loop. Why: past the dense rank K the next version is ΔW
// recomputed per module in float64 loops (flora-next.ts, proto/model/lora-stack.ts compactComponents), ~15 s for a
// GPT-2-small adapter on a 2-core host (bench/flora-close.ts); run on the event loop, that long a close stalls every
// gRPC call the coordinator serves (health checks, keepalive pings, other runs' sites, the ops endpoints).
// So each close runs in a worker thread of its own (flora-thread.ts), awaited by the round's close
// (round-outcome.ts): the sites' factors are moved to it (their buffers transferred: the round reads them no more),
// the base version copied to it a piece per turn of the event loop (it is a committed version, which must stay
// intact here: a failed close leaves the round to retry from it), and the next version moved back. The thread runs
// the same code as FloraStacking.aggregate, so the bits are the same (test/flora-close.test.ts).
// A thread that fails (an error, a crash, an exit before its result) fails the close with an Error naming the
// cause: the round's close then fails as when aggregate() throws, before anything of the version is written.
// One thread per close (tens of milliseconds to start, against a round of minutes): nothing is left running between
// rounds, and a thread that died takes nothing of a later round with it.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { numel, type NamedTensor, type TensorList } from '../proto/tensors';
import { nextVersion, type StackInput } from './flora-next';

/** The compiled thread file beside this one (dist/coordinator/flora-thread.js). */
export const FLORA_THREAD_FILE = path.join(__dirname, 'flora-thread.js');

/** Values of the base copied to the thread per turn of the event loop (1 MiB). */
const BASE_PIECE = 1 << 18;

/** Messages to the thread, in order: the base's tensors (piece by piece), the sites (client id order), then the close. */
export type ToFloraThread =
  | { readonly op: 'base'; readonly name: string; readonly shape: number[]; readonly offset: number; readonly data: Float32Array }
  | { readonly op: 'site'; readonly clientId: string; readonly numExamples: number; readonly values: Float32Array }
  | {
      readonly op: 'close';
      readonly layout: { readonly name: string; readonly shape: number[]; readonly size: number }[];
      readonly ranks: [string, number][];
      readonly totalWeight: number;
    };

/** The thread's one answer: the next version, or why there is none. */
export type FromFloraThread = { readonly tensors: { name: string; shape: number[]; data: Float32Array }[] } | { readonly error: string };

/** The buffer of `x` when `x` spans all of it (it can move), else undefined (moving it would take more than `x`). */
function wholeBuffer(x: Float32Array): ArrayBuffer | undefined {
  const b = x.buffer;
  return b instanceof ArrayBuffer && x.byteOffset === 0 && x.byteLength === b.byteLength ? b : undefined;
}

/**
 * flora-next.ts's nextVersion(global, input) computed in a worker thread: the same tensors, bit for bit. The sites'
 * factors move to the thread (each site's `values` is detached here afterwards, unless it was a view on a larger
 * buffer, then copied); `global` is copied, 1 MiB per turn of the event loop, and left as it was. Rejects, naming
 * the cause, when the thread fails or `signal` aborts (the thread is ended then). `threadFile`: the thread's script (tests put a failing one there). Where the compiled thread file is absent (run
 * from the TypeScript sources), the close runs on the calling thread.
 */
export async function nextVersionOffThread(
  global: TensorList,
  input: StackInput,
  threadFile = FLORA_THREAD_FILE,
  signal?: AbortSignal,
): Promise<NamedTensor[]> {
  if (!existsSync(threadFile)) return nextVersion(global, input);
  signal?.throwIfAborted();
  const worker = new Worker(threadFile);
  let failed: Error | undefined;
  let fail: (why: string) => void = () => undefined;
  const answer = new Promise<NamedTensor[]>((resolve, reject) => {
    fail = (why: string): void => {
      failed ??= new Error(`the FLoRA close's worker thread ${why}; nothing of this round was committed`);
      reject(failed);
    };
    worker.once('message', (m: FromFloraThread) => {
      if ('error' in m) fail(`failed: ${m.error}`);
      else resolve(m.tensors.map((t) => ({ name: t.name, dtype: 'float32', shape: t.shape, data: t.data })));
    });
    worker.on('error', (e: Error) => fail(`failed: ${e.message}`));
    worker.once('exit', (code) => fail(`exited (code ${code}) before its result`));
  });
  // A stopping coordinator does not wait out a close whose version it would not commit: the thread ends now.
  const onAbort = (): void => fail('was stopped: the coordinator is stopping');
  signal?.addEventListener('abort', onAbort, { once: true });
  answer.catch(() => undefined); // seen by the caller's await below; not an unhandled rejection meanwhile
  try {
    const post = (m: ToFloraThread, move: ArrayBuffer[] = []): void => {
      if (failed) throw failed; // the thread is gone: stop feeding it
      worker.postMessage(m, move);
    };
    // A piece per turn of the event loop, copied here (a memcpy) and moved: each turn blocks it for a piece's copy
    // only (posting a whole 9 MB tensor, cloned, blocked it 11-13 ms on the 2-core box; a piece takes well under 1).
    for (const t of global) {
      for (let offset = 0; offset < t.data.length || offset === 0; offset += BASE_PIECE) {
        const data = t.data.slice(offset, offset + BASE_PIECE);
        post({ op: 'base', name: t.name, shape: [...t.shape], offset, data }, [data.buffer]);
        await nextTurn();
      }
    }
    for (const s of input.sites) {
      const move = wholeBuffer(s.values);
      post({ op: 'site', clientId: s.clientId, numExamples: s.numExamples, values: s.values }, move ? [move] : []);
    }
    post({
      op: 'close',
      layout: input.layout.map((t) => ({ name: t.name, shape: [...t.shape], size: numel(t.shape) })),
      ranks: [...input.ranks],
      totalWeight: input.totalWeight,
    });
    return await answer;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    worker.removeAllListeners('exit'); // its exit after the answer (or after terminate) says nothing more
    void worker.terminate();
  }
}
