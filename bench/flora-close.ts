// `node dist/bench/flora-close.js [layers] [reps] [threads]`: the coordinator's round close under
// lora.aggregation 'flora' (coordinator/flora-stack.ts) against FedAvg's over the same uploads, in the same run, on
// GPT-2 small's adapted projections (d = 768: c_attn 768→2304, attn.c_proj 768→768, mlp.c_fc 768→3072, mlp.c_proj
// 3072→768; `layers` of them, default 2). Five sites upload rank-8 factors (the demo's r), one round each way,
// medians of `reps` (3):
//   fedavg         — FedAvg: begin, admit + add each update, sum, aggregate (the sites' deltas on the same layout);
//   flora_stack    — FloraStacking over a base stack of rank 400 (well below K = 768): concatenation only;
//   flora_dense    — FloraStacking over a base already in dense form (rank K, an identity factor): the version is
//                    compacted again, ΔW recomputed from the base's sparse identity and the round's 40 components.
// `seconds` times the whole of each (admissions included) on the calling thread (aggregate(), as the coordinator ran
// it before the close moved off the event loop). `close` times the close alone (sum + aggregate), each FLoRA one both
// ways: on the calling thread and as the coordinator runs it now, in a worker thread (aggregateOffThread:
// coordinator/flora-close.ts). For each, the event loop's longest block while it ran (perf_hooks
// monitorEventLoopDelay at 1 ms: its largest delay, which includes the box's own scheduling noise), as a ratio to
// FedAvg's close in the same run: what a gRPC call arriving meanwhile waits at most.
// The worker-thread closes run on 1 thread (`_thread`) and shared among `threads` (default: the host's cores, at
// least 2) by module (`_threads`, flora-shares.ts), both in this run: `threads_speedup` is the 1-thread close's time
// over the shared one's. The host's cores and its load average before and after are printed beside them (on a shared
// box another job's load takes cores from the threads).
// Printed as JSON: seconds and each FLoRA figure's ratio to fedavg measured in the same run.
import { availableParallelism, loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { FedAvg } from '../coordinator/strategy/fedavg';
import { FloraStacking } from '../coordinator/flora-stack';
import type { Aggregation, Strategy } from '../coordinator/strategy/strategy';
import { zeroAdapter } from '../proto/model/lora-stack';
import { Prng } from '../proto/prng';
import { sortByName, type NamedTensor } from '../proto/tensors';

const SITES = 5;
const RANK = 8;
const K = 768;
const now = (): number => Number(process.hrtime.bigint()) / 1e9;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** GPT-2 small's adapted projections of `layers` blocks as [path, d_in, d_out]. */
function modules(layers: number): [string, number, number][] {
  const out: [string, number, number][] = [];
  for (let l = 0; l < layers; l++) {
    out.push([`h.${l}.attn.c_attn`, 768, 2304], [`h.${l}.attn.c_proj`, 768, 768], [`h.${l}.mlp.c_fc`, 768, 3072], [`h.${l}.mlp.c_proj`, 3072, 768]);
  }
  return out;
}

/** An adapter of rank r over the modules, values from `fill(module, which, index)`. */
function adapter(mods: [string, number, number][], r: number, fill: (m: number, which: 'A' | 'B', i: number, n: number) => number): NamedTensor[] {
  const out: NamedTensor[] = [];
  mods.forEach(([p, n, o], m) => {
    const key = `base_model.model.transformer.${p}`;
    out.push({ name: `${key}.lora_A.weight`, dtype: 'float32', shape: [r, n], data: Float32Array.from({ length: r * n }, (_, i) => fill(m, 'A', i, n)) });
    out.push({ name: `${key}.lora_B.weight`, dtype: 'float32', shape: [o, r], data: Float32Array.from({ length: o * r }, (_, i) => fill(m, 'B', i, r)) });
  });
  return sortByName(out);
}

function admitted(strategy: Strategy, layout: NamedTensor[], updates: NamedTensor[][]): Aggregation {
  const agg = strategy.begin(layout);
  updates.forEach((delta, k) => {
    const u = { clientId: `site-${k}`, numExamples: 100 + k, delta };
    agg.admit(u);
    agg.add(u);
  });
  return agg;
}

function closeOnce(strategy: Strategy, base: NamedTensor[], layout: NamedTensor[], updates: NamedTensor[][]): number {
  const t0 = now();
  strategy.aggregate(base, admitted(strategy, layout, updates).sum(), { tensors: [], round: 2 });
  return now() - t0;
}

/** The close alone (sum + aggregate, or its worker-thread form), with the event loop's longest block meanwhile. */
async function closeWatched(strategy: Strategy, base: NamedTensor[], layout: NamedTensor[], updates: NamedTensor[][], offThread: boolean): Promise<Watched> {
  const agg = admitted(strategy, layout, updates);
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  await sleep(20); // started after the admissions above (their block is not the close's); no reset(): it skips the next delay
  const t0 = now();
  const state = { tensors: [], round: 2 };
  if (offThread) await strategy.aggregateOffThread!(base, agg.sum(), state);
  else strategy.aggregate(base, agg.sum(), state);
  const seconds = now() - t0;
  await sleep(20); // a block on this thread is recorded when the loop runs again
  h.disable();
  return { seconds, block: h.max / 1e9 };
}

interface Watched {
  seconds: number;
  block: number;
}

async function main(): Promise<void> {
  const layers = Number(process.argv[2] ?? 2);
  const reps = Number(process.argv[3] ?? 3);
  const threads = Number(process.argv[4] ?? Math.max(2, availableParallelism()));
  const load = [loadavg()[0]];
  const mods = modules(layers);
  const rng = new Prng(7);
  const rand = (): number => (2 * rng.nextFloat() - 1) * 0.05;
  const updates = Array.from({ length: SITES }, () => adapter(mods, RANK, rand));
  const fedavgBase = adapter(mods, RANK, rand);
  const stackBase = adapter(mods, 400, rand);
  // Dense form at rank K: for d_in ≤ d_out A = [I; 0] and B = [ΔW, 0]; else B = [I, 0] and A = [ΔW; 0].
  const denseBase = adapter(mods, K, (m, which, i, n) => {
    const [, din, dout] = mods[m];
    const identityIsA = din <= dout;
    const row = Math.floor(i / n);
    const col = i % n;
    if ((which === 'A') === identityIsA) return row === col ? 1 : 0;
    return which === 'A' ? (row < dout ? rand() : 0) : col < din ? rand() : 0;
  });
  const layout = zeroAdapter(fedavgBase, RANK);
  const times: Record<string, number[]> = { fedavg: [], flora_stack: [], flora_dense: [] };
  const watched: Record<string, Watched[]> = { fedavg: [], flora_stack: [], flora_stack_thread: [], flora_dense: [], flora_dense_thread: [] };
  for (const name of ['flora_stack', 'flora_dense']) watched[`${name}_threads`] = [];
  for (let rep = 0; rep < reps; rep++) {
    times.fedavg.push(closeOnce(new FedAvg(), fedavgBase, fedavgBase, updates));
    times.flora_stack.push(closeOnce(new FloraStacking(), stackBase, layout, updates));
    times.flora_dense.push(closeOnce(new FloraStacking(), denseBase, layout, updates));
    watched.fedavg.push(await closeWatched(new FedAvg(), fedavgBase, fedavgBase, updates, false));
    for (const [name, base] of [
      ['flora_stack', stackBase],
      ['flora_dense', denseBase],
    ] as const) {
      watched[name].push(await closeWatched(new FloraStacking(), base, layout, updates, false));
      watched[`${name}_thread`].push(await closeWatched(new FloraStacking(undefined, 1), base, layout, updates, true));
      watched[`${name}_threads`].push(await closeWatched(new FloraStacking(undefined, threads), base, layout, updates, true));
    }
  }
  const s = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const close = Object.fromEntries(Object.entries(watched).map(([k, v]) => [k, median(v.map((w) => w.seconds))]));
  const block = Object.fromEntries(Object.entries(watched).map(([k, v]) => [k, median(v.map((w) => w.block))]));
  load.push(loadavg()[0]);
  const ratios = (x: Record<string, number>): Record<string, number> =>
    Object.fromEntries(Object.entries(x).flatMap(([k, v]) => (k === 'fedavg' ? [] : [[k, v / x.fedavg]])));
  process.stdout.write(
    JSON.stringify(
      {
        bench: 'flora-close',
        layers,
        sites: SITES,
        rank: RANK,
        reps,
        threads,
        cores: availableParallelism(),
        load_avg_1min: { before: load[0], after: load[1] },
        seconds: s,
        ratio_to_fedavg: { flora_stack: s.flora_stack / s.fedavg, flora_dense: s.flora_dense / s.fedavg },
        close_seconds: close,
        close_ratio_to_fedavg: ratios(close),
        event_loop_max_block_s: block,
        event_loop_block_ratio_to_fedavg: ratios(block),
        threads_speedup: {
          flora_stack: close.flora_stack_thread / close.flora_stack_threads,
          flora_dense: close.flora_dense_thread / close.flora_dense_threads,
        },
      },
      null,
      2,
    ) + '\n',
  );
}

void main();
