// `node dist/bench/optimiser-close.js`: the default strategy's close (FedAdam with bias correction and a cosine
// server rate, the default recipe's settings) over 1M values in 16 tensors, through the WebAssembly close
// (coordinator/strategy/fedopt-kernel.ts) and through fedopt.ts's JavaScript loop, each in a fresh process (as a
// coordinator runs it: once a round, so V8 has rarely optimised the loop). ROUNDS rounds each; CPU time of the
// process (user + system) per round's aggregate, so a shared box's preemption does not count. Prints JSON.
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import { FedAdam } from '../coordinator/strategy/fedopt';
import { SCALE } from '../coordinator/strategy/fixed-point';
import type { ServerState, WeightedSum } from '../coordinator/strategy/strategy';
import type { NamedTensor } from '../proto/tensors';

const TENSORS = 16;
const PER = 1 << 16;
const ROUNDS = 10;
const cpuNow = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** One process's ROUNDS closes, in ms of CPU time each (`js`: the JavaScript loop only). */
function rounds(js: boolean): number[] {
  const strategy = new FedAdam({
    serverLearningRate: 0.003,
    beta1: 0.9,
    beta2: 0.999,
    tau: 1e-8,
    biasCorrection: true,
    serverSchedule: 'cosine',
    roundsTotal: 600,
  });
  if (js) Object.assign(strategy, { closeInWasm: false });
  let global: NamedTensor[] = Array.from({ length: TENSORS }, (_, t) => ({
    name: `t${t}`,
    dtype: 'float32' as const,
    shape: [PER],
    data: Float32Array.from({ length: PER }, (_, j) => 0.02 * Math.sin(j + t)),
  }));
  let tensors: readonly NamedTensor[] = [];
  const times: number[] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const sum: WeightedSum = {
      tensors: new Map(global.map((g, t) => [g.name, Float64Array.from({ length: PER }, (_, j) => Math.round(SCALE * 1e-3 * Math.cos(j * r + t)))])),
      totalWeight: 10,
      scale: SCALE,
    };
    const state: ServerState = { tensors: [...tensors], round: r };
    const t0 = cpuNow();
    global = strategy.aggregate(global, sum, state);
    times.push((cpuNow() - t0) * 1000);
    tensors = state.tensors;
  }
  return times;
}

const mode = process.argv[2];
if (mode === 'js' || mode === 'wasm') process.stdout.write(JSON.stringify(rounds(mode === 'js')));
else {
  const run = (m: string): number[] => JSON.parse(execFileSync(process.execPath, [__filename, m], { encoding: 'utf8' })) as number[];
  const js = run('js');
  const wasm = run('wasm');
  const r1 = (x: number): number => Number(x.toFixed(1));
  console.log(
    JSON.stringify({
      values: TENSORS * PER,
      rounds: ROUNDS,
      loadavg_1m: os.loadavg()[0],
      cpus: os.cpus().length,
      js_close_cpu_ms: js.map(r1),
      wasm_close_cpu_ms: wasm.map(r1),
      js_median_ms: r1(median(js)),
      wasm_median_ms: r1(median(wasm)),
      js_round1_ms: r1(js[0]),
      wasm_round1_ms: r1(wasm[0]),
    }),
  );
}
