// `npm run bench -- fedavg`: FedAvg's fold as the coordinator runs it against a memcpy of the same bytes
// (Float32Array.set into one tensor-sized buffer), medians of REPS repetitions. The fold is fed as the upload path
// feeds it (coordinator/upload.ts, Attempt.foldChunk): each update's opened chunks, one buffer each (node:crypto gives
// every opened chunk a buffer of its own; copying them in is not timed), pushed as owned (on a threaded sum each is
// handed to a fold helper, its buffer moved: fold-handoff.ts); then the trailer's wait for every chunk of the update
// to be folded, which leaves the thread free (Attempt.foldSettled), and finish and commit (the accept). The 10
// uploads arrive back to back: update k+1's chunks are pushed while update k's last chunks are still folding, as the
// coordinator's event loop takes the next upload's frames. Timed: from the first update's open to the last one's
// commit. The coordinator's default (on this host: `fold_threads` helper threads, coordinator/strategy/fold-threads.ts)
// gives the goal's keys. Interleaved with it in each repetition: the same with each upload accepted before the next
// one's first chunk (`one_by_one_…`), with the 10 uploads' chunks interleaved (`together_…`), the one-thread fold,
// the JavaScript loop it replaced and the fold with 1, 3 and 7 helpers (as many as the host has cores for), for the
// before/after and the choice of the default in one run.
// The round's close (FedAvg.aggregate of the sum) is timed after the default's fold. Its sum is made as the
// coordinator makes it, when the attempt opens, with the round's global: on a threaded sum that copies the global's
// values into the sum's memory and touches the next adapter's buffers then (fold-close.ts), not in the timed steps;
// `begin_seconds` times that (the default's begin, interleaved), where the copy in went.
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { closeFedAvg } from '../coordinator/strategy/close-kernel';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { closeParts, closeSpans, closeTimes } from '../coordinator/strategy/fold-close';
import { stepAlongMeanDelta } from '../coordinator/strategy/mean-delta';
import { accumulateUnchecked } from '../coordinator/strategy/fixed-point';
import { handed } from '../coordinator/strategy/fold-handoff';
import { foldPartsTaken, foldThreads, helpersRunning, setFoldThreads, startFoldThreads } from '../coordinator/strategy/fold-threads';
import type { Aggregation, UpdateFold } from '../coordinator/strategy/strategy';
import { DEFAULT_CHUNK_BYTES } from '../proto/load';
import type { NamedTensor } from '../proto/tensors';
import { lcgTensors } from './secagg';

const REPS = 7;
const now = (): number => Number(process.hrtime.bigint()) / 1e9;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
/** This process's CPU seconds (user + system, every thread): on a shared box not inflated by preemption. */
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const tiny = new Int32Array(new SharedArrayBuffer(4));
/**
 * The calling thread's own CPU seconds (Linux: /proc/thread-self/schedstat, nanoseconds), NaN elsewhere. A 20 µs
 * sleep first: the kernel adds a running thread's current slice to that figure only when it is switched out.
 */
const mainCpuNow = (): number => {
  try {
    Atomics.wait(tiny, 0, 0, 0.02);
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e9;
  } catch {
    return Number.NaN;
  }
};

function randomTensors(count: number, size: number, scale: number, seed: number): NamedTensor[] {
  return lcgTensors(count, size, scale, seed, (i) => `t${String(i).padStart(3, '0')}`);
}

/** The plaintext of an update as the coordinator opens it: chunks of DEFAULT_CHUNK_BYTES, each its own buffer. */
export function openedChunks(delta: readonly NamedTensor[]): Buffer[] {
  const all = Buffer.concat(delta.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
  const out: Buffer[] = [];
  for (let off = 0; off < all.length; off += DEFAULT_CHUNK_BYTES) out.push(Buffer.from(all.subarray(off, off + DEFAULT_CHUNK_BYTES)));
  return out;
}

export async function benchFedAvg(clients: number, params: number): Promise<Record<string, number>> {
  const global = randomTensors(4, params / 4, 0.1, 1);
  const updates = Array.from({ length: clients }, (_, k) => ({ clientId: `c${k}`, numExamples: 100 + k, delta: randomTensors(4, params / 4, 0.01, k + 2) }));
  const chunks = updates.map((u) => openedChunks(u.delta));
  const strategy = new FedAvg();
  const globalCopy = global.map((g) => ({ ...g, data: g.data.slice() }));
  // BENCH_FOLD_THREADS: helper threads to try instead of the default (0: the one-thread fold twice).
  const threads = process.env.BENCH_FOLD_THREADS ? Number(process.env.BENCH_FOLD_THREADS) : foldThreads();
  const t = {
    fold: [] as number[],
    close: [] as number[],
    closeOne: [] as number[],
    closeCopyIn: [] as number[],
    one: [] as number[],
    js: [] as number[],
    copy: [] as number[],
    together: [] as number[],
    oneByOne: [] as number[],
  };
  const cpu = { fold: [] as number[], one: [] as number[], copy: [] as number[] };
  const main = { fold: [] as number[], one: [] as number[], copy: [] as number[] };
  // Other helper counts, interleaved too, for choosing the default on a new host (those the host has cores for).
  const others = [1, 3, 7].filter((n) => n !== threads && n < os.availableParallelism());
  const sweep = new Map(others.map((n) => [n, [] as number[]]));
  // As a coordinator's later rounds find them: started and listening (the first sum of a process folds on one
  // thread while they start).
  await startFoldThreads(Math.max(threads, ...others));
  let helperParts = 0;
  let closeHelperParts = 0;
  const closeSteps = { copyIn: [] as number[], own: [] as number[], wait: [] as number[], copyOut: [] as number[] };
  // Per repetition: the close's time outside the calling thread's timed steps, and garbage collection within it.
  const closeOutside: number[] = [];
  const closeAround = { sum: [] as number[], aggregate: [] as number[], call: [] as number[], threads: [] as number[] };
  const closeWindows: [number, number][] = [];
  const gcs: [number, number][] = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcs.push([e.startTime, e.startTime + e.duration]);
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  const begins: number[] = [];
  let closeAllParts = 0;
  let parts = 0;
  let handedChunks = 0;
  let pushedChunks = 0;
  /**
   * As the coordinator does it (Attempt.foldChunk, foldSettled, accept): each update's opened chunks, owned.
   * 'arrival': back to back; 'one-by-one': each accepted before the next arrives; 'together': chunks interleaved.
   */
  const foldAll = async (a: Aggregation, time: number[], cpuTime: number[], mainTime: number[], mode = 'arrival'): Promise<void> => {
    const opened = chunks.map((cs) => cs.map((c) => new Uint8Array(c))); // each its own buffer, as node:crypto's
    const c = cpuNow();
    const m = mainCpuNow();
    const t0 = now();
    const accept = (f: UpdateFold): Promise<void> => {
      const done = (): void => {
        f.finish();
        f.commit();
      };
      const folding = f.settled?.(); // the trailer: every chunk of the update folded, the thread free meanwhile
      if (!folding) return Promise.resolve(done());
      return folding.then(done);
    };
    if (mode === 'together') {
      const fs = updates.map((u) => a.open(u.clientId, u.numExamples));
      for (let j = 0; j < opened[0].length; j++) for (let k = 0; k < clients; k++) fs[k].push(opened[k][j], true);
      await Promise.all(fs.map(accept));
    } else {
      const accepts: Promise<void>[] = [];
      for (let k = 0; k < clients; k++) {
        const f = a.open(updates[k].clientId, updates[k].numExamples);
        for (const x of opened[k]) f.push(x, true);
        if (mode === 'one-by-one') await accept(f);
        else accepts.push(accept(f));
      }
      await Promise.all(accepts);
    }
    time.push(now() - t0);
    mainTime.push(mainCpuNow() - m);
    cpuTime.push(cpuNow() - c);
  };
  try {
    for (let rep = 0; rep < REPS; rep++) {
      // The sum is made when the attempt opens (its pages touched, its helpers attached), before any upload.
      setFoldThreads(threads);
      const b0 = now();
      const a = strategy.begin(global);
      begins.push(now() - b0);
      const before = foldPartsTaken();
      const handedBefore = handed.runs;
      await foldAll(a, t.fold, cpu.fold, main.fold);
      const after = foldPartsTaken();
      helperParts += after.helpers - before.helpers;
      parts += after.helpers - before.helpers + after.caller - before.caller;
      handedChunks += handed.runs - handedBefore;
      pushedChunks += chunks.reduce((n, cs) => n + cs.length, 0);
      const closed = closeParts.helpers + closeParts.caller;
      const steps = { ...closeTimes };
      const spans = { ...closeSpans };
      const byHelpers = closeParts.helpers;
      const w0 = performance.now();
      let t0 = now();
      const s = a.sum();
      const tSum = now() - t0;
      strategy.aggregate(global, s);
      t.close.push(now() - t0);
      closeWindows.push([w0, performance.now()]);
      let inSteps = 0;
      for (const k of Object.keys(steps) as (keyof typeof steps)[]) {
        closeSteps[k].push((closeTimes[k] - steps[k]) / 1e3);
        inSteps += (closeTimes[k] - steps[k]) / 1e3;
      }
      closeOutside.push(t.close[t.close.length - 1] - inSteps);
      // Where that time lies: reading the sum (a.sum()), FedAvg.aggregate around its threaded close, the close's
      // call before closeOnThreads (layout checks), and closeOnThreads beyond its steps.
      const fedavgSpan = (closeSpans.fedavg - spans.fedavg) / 1e3;
      const threadsSpan = (closeSpans.threads - spans.threads) / 1e3;
      closeAround.sum.push(tSum);
      closeAround.aggregate.push(t.close[t.close.length - 1] - tSum - fedavgSpan);
      closeAround.call.push(fedavgSpan - threadsSpan);
      closeAround.threads.push(threadsSpan - inSteps);
      closeHelperParts += closeParts.helpers - byHelpers;
      closeAllParts += closeParts.helpers + closeParts.caller - closed;
      // The same sum closed on the calling thread alone (the close before fold-close.ts), interleaved.
      t0 = now();
      stepAlongMeanDelta('FedAvg', global, a.sum(), () => undefined, closeFedAvg);
      t.closeOne.push(now() - t0);
      setFoldThreads(0);
      await foldAll(strategy.begin(global), t.one, cpu.one, main.one);
      for (const [n, times] of sweep) {
        setFoldThreads(n);
        await foldAll(strategy.begin(global), times, [], []);
      }
      setFoldThreads(threads);
      const together = strategy.begin(global);
      await foldAll(together, t.together, [], [], 'together');
      // That sum closed over a copy of the global (other arrays, the same values): the close copies the global in
      // on the calling thread, as before it was placed when the sum was made (fold-close.ts); the same bits.
      t0 = now();
      strategy.aggregate(globalCopy, together.sum());
      t.closeCopyIn.push(now() - t0);
      await foldAll(strategy.begin(global), t.oneByOne, [], [], 'one-by-one');
      // The JavaScript loop the sum used before the SIMD kernel (same bits).
      const acc = global.map((g) => new Float64Array(g.data.length));
      t0 = now();
      for (const u of updates) u.delta.forEach((d, i) => accumulateUnchecked(acc[i], d.data, u.numExamples));
      t.js.push(now() - t0);
      const dst = new Float32Array(params / 4);
      const c = cpuNow();
      const mc = mainCpuNow();
      t0 = now();
      for (const u of updates) for (const d of u.delta) dst.set(d.data);
      t.copy.push(now() - t0);
      main.copy.push(mainCpuNow() - mc);
      cpu.copy.push(cpuNow() - c);
    }
  } finally {
    setFoldThreads(undefined);
  }
  await new Promise((r) => setImmediate(r)); // the observer's last entries
  gcObserver.disconnect();
  // Milliseconds of garbage collection (any thread's pause of this isolate) overlapping each repetition's close.
  const closeGc = closeWindows.map(([a, b]) => gcs.reduce((ms, [s, e]) => ms + Math.max(0, Math.min(b, e) - Math.max(a, s)), 0) / 1e3);
  const bytes = clients * params * 4;
  const m = { fold: median(t.fold), close: median(t.close), one: median(t.one), js: median(t.js), copy: median(t.copy) };
  return {
    clients,
    params,
    fold_seconds: m.fold,
    fold_params_per_second: (clients * params) / m.fold,
    memcpy_seconds: m.copy,
    memcpy_gb_per_second: bytes / m.copy / 1e9,
    fold_over_memcpy_time: m.fold / m.copy,
    fedavg_percent_of_memcpy_bandwidth: (100 * m.copy) / m.fold,
    fedavg_goal_percent_of_memcpy: 50,
    fedavg_goal_met: (100 * m.copy) / m.fold >= 50 ? 1 : 0,
    // With the aggregate at the round's close counted in as well (one pass over the parameters, any N).
    fold_and_close_percent_of_memcpy_bandwidth: (100 * m.copy) / (m.fold + m.close),
    close_seconds: m.close,
    // The close split across the fold's helpers (fold-close.ts): the share of its parts they took (the rest the
    // calling thread took back unclaimed), and the same sum closed on the calling thread alone, interleaved.
    close_parts_by_helpers_percent: closeAllParts > 0 ? (100 * closeHelperParts) / closeAllParts : 0,
    one_thread_close_seconds: median(t.closeOne),
    // The threaded close copying the global in itself (a sum closed over other arrays than it was made with).
    close_with_copy_in_seconds: median(t.closeCopyIn),
    // The calling thread's steps of the threaded close (fold-close.ts closeTimes): the global copied in (parts
    // posted as it goes), its own part and its copy out, the wait for the helpers' parts, their copy out.
    close_copy_in_seconds: median(closeSteps.copyIn),
    close_own_part_seconds: median(closeSteps.own),
    close_wait_seconds: median(closeSteps.wait),
    close_copy_out_seconds: median(closeSteps.copyOut),
    // Per repetition, the close less those steps (the call around them: the sum's handoff wait, the layout check,
    // building the tensors), and garbage collection overlapping the close; medians. And the default's begin, where
    // a threaded sum now copies the global in (fold-close.ts).
    close_outside_steps_seconds: median(closeOutside),
    close_outside_sum_seconds: median(closeAround.sum),
    close_outside_aggregate_seconds: median(closeAround.aggregate),
    close_outside_call_seconds: median(closeAround.call),
    close_outside_threads_seconds: median(closeAround.threads),
    close_gc_seconds: median(closeGc),
    close_gc_max_seconds: Math.max(...closeGc),
    begin_seconds: median(begins),
    fold_and_one_thread_close_percent_of_memcpy_bandwidth: (100 * m.copy) / (m.fold + median(t.closeOne)),
    js_loop_seconds: m.js,
    js_loop_percent_of_memcpy_bandwidth: (100 * m.copy) / m.js,
    // The same ratio in CPU seconds (process.cpuUsage, microsecond resolution: the copy takes milliseconds). It
    // counts every thread: with helpers, their spinning between chunks too.
    fold_cpu_seconds: median(cpu.fold),
    memcpy_cpu_seconds: median(cpu.copy),
    fedavg_cpu_percent_of_memcpy: (100 * median(cpu.copy)) / median(cpu.fold),
    // The calling thread's own CPU (the coordinator's gRPC thread): what the fold leaves it to do per 10 × 1M values
    // with the chunks handed to helpers, against its CPU for the memcpy (Linux only; NaN elsewhere).
    fold_main_thread_cpu_seconds: median(main.fold),
    memcpy_main_thread_cpu_seconds: median(main.copy),
    fedavg_main_thread_cpu_percent_of_memcpy: (100 * median(main.copy)) / median(main.fold),
    one_thread_main_thread_cpu_seconds: median(main.one),
    // The coordinator's default on this host: helper threads (0: the fold runs on the calling thread only), the
    // host's cores, the share of the opened chunks handed to helpers whole, and of the parts of staged runs (chunks
    // not handed) the helpers took (the rest the calling thread took itself).
    fold_threads: Math.min(threads, helpersRunning()),
    host_cores: os.availableParallelism(),
    fold_chunks_handed_percent: pushedChunks > 0 ? (100 * handedChunks) / pushedChunks : 0,
    fold_parts_by_helpers_percent: parts > 0 ? (100 * helperParts) / parts : 0,
    // The one-thread fold, interleaved in the same repetitions.
    one_thread_fold_seconds: m.one,
    one_thread_percent_of_memcpy_bandwidth: (100 * m.copy) / m.one,
    one_thread_fold_cpu_seconds: median(cpu.one),
    ...Object.fromEntries([...sweep].map(([n, times]) => [`percent_of_memcpy_with_${n}_helper_threads`, (100 * m.copy) / median(times)])),
    // The default again, with the 10 uploads arriving at once (chunks interleaved: runs of several updates on the
    // same values of the sum, under the region locks), interleaved in the same repetitions.
    together_percent_of_memcpy_bandwidth: (100 * m.copy) / median(t.together),
    // The default again, each upload accepted before the next one's first chunk (uploads strictly one after another:
    // each waits for its last chunk's fold).
    one_by_one_percent_of_memcpy_bandwidth: (100 * m.copy) / median(t.oneByOne),
  };
}

/** The table row of the fedavg section. */
export function fedavgRow(f: Record<string, number>): [string, string, string, string] {
  return [
    'FedAvg, 10 clients × 1M params (chunks folded on arrival)',
    `${(f.fold_params_per_second / 1e6).toFixed(1)} M params/s`,
    `memcpy ${f.memcpy_gb_per_second.toFixed(2)} GB/s`,
    `${f.fedavg_percent_of_memcpy_bandwidth.toFixed(0)}% of memcpy bandwidth (goal 50%; ${f.fold_threads} helper threads on ${f.host_cores} cores, ` +
      `${f.fold_chunks_handed_percent.toFixed(0)}% of chunks handed to helpers; uploads at once ${f.together_percent_of_memcpy_bandwidth.toFixed(0)}%, ` +
      `one by one ${f.one_by_one_percent_of_memcpy_bandwidth.toFixed(0)}%; ` +
      `one thread ${f.one_thread_percent_of_memcpy_bandwidth.toFixed(0)}%; ` +
      `calling thread's CPU ${f.fedavg_main_thread_cpu_percent_of_memcpy.toFixed(0)}% of memcpy's; ` +
      `in CPU time ${f.fedavg_cpu_percent_of_memcpy.toFixed(0)}%; ${f.fold_and_close_percent_of_memcpy_bandwidth.toFixed(0)}% with the close's ` +
      `${(f.close_seconds * 1000).toFixed(1)} ms (${f.close_parts_by_helpers_percent.toFixed(0)}% of its parts on helpers; on one thread ` +
      `${(f.one_thread_close_seconds * 1000).toFixed(1)} ms, ${f.fold_and_one_thread_close_percent_of_memcpy_bandwidth.toFixed(0)}%); the JavaScript loop ${f.js_loop_percent_of_memcpy_bandwidth.toFixed(0)}%)`,
  ];
}
