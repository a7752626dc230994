// A 'flora' round's close off the coordinator's event loop, shared among worker threads. Why off the loop: past the
// dense rank K the next version is ΔW recomputed per module in float64 loops (flora-next.ts, proto/model/
// lora-stack.ts compactComponents), ~15 s for a GPT-2-small adapter on one core (bench/flora-close.ts); run on the
// event loop, that long a close stalls every gRPC call the coordinator serves (health checks, keepalive pings, other
// runs' sites, the ops endpoints). Why several threads: that work is independent module by module, so a host with
// more cores closes a round proportionally faster (flora-shares.ts shares the modules out by cost).
// Each thread (flora-thread.ts) is sent its share's base tensors, copied a piece per turn of the event loop (the base
// is a committed version, which must stay intact here: a failed close leaves the round to retry from it), and its
// share of the sites' factors (copied out of the round's, which are then released: a sum is closed once; with one
// share they simply move). The close then takes two steps: every thread's facts, from which the decisions spanning
// all modules are taken here (flora-next.ts decide), then every share's next tensors, moved back and merged. The
// threads run the same code as FloraStacking.aggregate, so the bits are the same whatever the thread count
// (test/flora-close.test.ts, test/flora-threads.test.ts).
// A thread that fails (an error, a crash, an exit before its result) fails the close with an Error naming the
// cause, every thread ended: the round's close then fails as when aggregate() throws, before anything of the version
// is written. Threads per close (tens of milliseconds to start, against a round of minutes): nothing is left running
// between rounds, and a thread that died takes nothing of a later round with it.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { numel, type NamedTensor, type TensorList } from '../proto/tensors';
import { declaredRanks, decide, nextVersion, type CloseDecisions, type ShareFacts, type StackInput } from './flora-next';
import { defaultCloseThreads, mergeShares, planShares, shareOf, siteShare } from './flora-shares';

/** The compiled thread file beside this one (dist/coordinator/flora-thread.js). */
export const FLORA_THREAD_FILE = path.join(__dirname, 'flora-thread.js');

/** Values of the base copied to a thread per turn of the event loop (1 MiB). */
const BASE_PIECE = 1 << 18;

/** Messages to a thread, in order: its base tensors (piece by piece), the sites (client id order), facts, close. */
export type ToFloraThread =
  | { readonly op: 'base'; readonly name: string; readonly shape: number[]; readonly offset: number; readonly data: Float32Array }
  | { readonly op: 'site'; readonly clientId: string; readonly numExamples: number; readonly values: Float32Array }
  | {
      readonly op: 'facts';
      readonly layout: { readonly name: string; readonly shape: number[]; readonly size: number }[];
      readonly declared: (number | undefined)[];
    }
  | { readonly op: 'close'; readonly decisions: CloseDecisions; readonly totalWeight: number };

/** A thread's answer to 'facts' or to 'close', or why there is none. */
export type FromFloraThread =
  | { readonly facts: ShareFacts }
  | { readonly tensors: { name: string; shape: number[]; data: Float32Array }[]; readonly rank: number }
  | { readonly error: string };
type Answer<K extends string> = Extract<FromFloraThread, Record<K, unknown>>;

/** Where the close's options leave them: the thread's script (tests put a failing one there), how many threads. */
export interface CloseOptions {
  readonly threadFile?: string;
  readonly signal?: AbortSignal;
  /** At most this many threads (default defaultCloseThreads()); never more than the modules. */
  readonly threads?: number;
}

/** The buffer of `x` when `x` spans all of it (it can move), else undefined (moving it would take more than `x`). */
function wholeBuffer(x: Float32Array): ArrayBuffer | undefined {
  const b = x.buffer;
  return b instanceof ArrayBuffer && x.byteOffset === 0 && x.byteLength === b.byteLength ? b : undefined;
}

/**
 * flora-next.ts's nextVersion(global, input) computed in worker threads: the same tensors, bit for bit, whatever
 * the thread count. The sites' factors are consumed (each site's `values` is detached here afterwards, unless it was
 * a view on a larger buffer); `global` is copied, 1 MiB per turn of the event loop, and left as it was. Rejects,
 * naming the cause, when a thread fails or `signal` aborts (every thread is ended then). Where the compiled thread
 * file is absent (run from the TypeScript sources), the close runs on the calling thread.
 */
export async function nextVersionOffThread(global: TensorList, input: StackInput, options: CloseOptions = {}): Promise<NamedTensor[]> {
  const { threadFile = FLORA_THREAD_FILE, signal } = options;
  if (!existsSync(threadFile)) return nextVersion(global, input);
  signal?.throwIfAborted();
  const declared = declaredRanks(input); // names and shapes only: no data is read here
  const shares = planShares(input.layout, options.threads ?? defaultCloseThreads());
  const workers = shares.map(() => new Worker(threadFile));
  let failed: Error | undefined;
  let fail: (why: string) => void = () => undefined;
  const failure = new Promise<never>((_, reject) => {
    fail = (why: string): void => {
      failed ??= new Error(`the FLoRA close's worker thread ${why}; nothing of this round was committed`);
      reject(failed);
    };
  });
  failure.catch(() => undefined); // seen by the caller's await below; not an unhandled rejection meanwhile
  for (const w of workers) {
    w.on('error', (e: Error) => fail(`failed: ${e.message}`));
    w.once('exit', (code) => fail(`exited (code ${code}) before its result`));
  }
  /** Every thread's next answer, in share order; the first failure instead. */
  const answers = <K extends 'facts' | 'tensors'>(key: K): Promise<Answer<K>[]> => {
    const each = workers.map(
      (w) =>
        new Promise<Answer<K>>((resolve) =>
          w.once('message', (m: FromFloraThread) =>
            'error' in m ? fail(`failed: ${m.error}`) : key in m ? resolve(m as Answer<K>) : fail('answered out of turn'),
          ),
        ),
    );
    return Promise.race([failure, Promise.all(each)]);
  };
  // A stopping coordinator does not wait out a close whose version it would not commit: the threads end now.
  const onAbort = (): void => fail('was stopped: the coordinator is stopping');
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const post = (i: number, m: ToFloraThread, move: ArrayBuffer[] = []): void => {
      if (failed) throw failed; // a thread is gone: stop feeding them
      workers[i].postMessage(m, move);
    };
    // A piece per turn of the event loop, copied here (a memcpy) and moved: each turn blocks it for a piece's copy
    // only (posting a whole 9 MB tensor, cloned, blocked it 11-13 ms on the 2-core box; a piece takes well under 1).
    for (const t of global) {
      const i = shareOf(shares, t.name);
      for (let offset = 0; offset < t.data.length || offset === 0; offset += BASE_PIECE) {
        const data = t.data.slice(offset, offset + BASE_PIECE);
        post(i, { op: 'base', name: t.name, shape: [...t.shape], offset, data }, [data.buffer]);
        await nextTurn();
      }
    }
    for (const s of input.sites) {
      const whole = wholeBuffer(s.values);
      shares.forEach((share, i) => {
        const values = shares.length === 1 ? s.values : siteShare(s.values, share);
        const move = shares.length === 1 ? whole : (values.buffer as ArrayBuffer);
        post(i, { op: 'site', clientId: s.clientId, numExamples: s.numExamples, values }, move ? [move] : []);
      });
      // Copied out to the shares: the round's own copy goes now (detached, as a single share's moved one is).
      if (shares.length > 1 && whole) structuredClone(whole, { transfer: [whole] });
      await nextTurn();
    }
    const facts = answers('facts');
    shares.forEach((share, i) =>
      post(i, { op: 'facts', layout: share.layout.map((t) => ({ name: t.name, shape: [...t.shape], size: numel(t.shape) })), declared }),
    );
    const decisions = decide(
      input,
      declared,
      (await facts).map((a) => a.facts),
    );
    const parts = answers('tensors');
    shares.forEach((_, i) => post(i, { op: 'close', decisions, totalWeight: input.totalWeight }));
    return mergeShares(
      (await parts).map((p) => ({ rank: p.rank, tensors: p.tensors.map((t) => ({ name: t.name, dtype: 'float32' as const, shape: t.shape, data: t.data })) })),
    );
  } finally {
    signal?.removeEventListener('abort', onAbort);
    for (const w of workers) {
      w.removeAllListeners('exit'); // its exit now (ended here) says nothing more
      void w.terminate();
    }
  }
}
