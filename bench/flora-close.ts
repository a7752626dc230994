// `node dist/bench/flora-close.js [layers]`: the coordinator's round close under lora.aggregation 'flora'
// (coordinator/flora-stack.ts) against FedAvg's over the same uploads, in the same run, on GPT-2 small's adapted
// projections (d = 768: c_attn 768→2304, attn.c_proj 768→768, mlp.c_fc 768→3072, mlp.c_proj 3072→768; `layers` of
// them, default 2). Five sites upload rank-8 factors (the demo's r), one round each way, medians of REPS:
//   fedavg         — FedAvg: begin, admit + add each update, sum, aggregate (the sites' deltas on the same layout);
//   flora_stack    — FloraStacking over a base stack of rank 400 (well below K = 768): concatenation only;
//   flora_dense    — FloraStacking over a base already in dense form (rank K, an identity factor): the version is
//                    compacted again, ΔW recomputed from the base's sparse identity and the round's 40 components.
// Printed as JSON: seconds and each FLoRA figure's ratio to fedavg measured in the same run.
import { FedAvg } from '../coordinator/strategy/fedavg';
import { FloraStacking } from '../coordinator/flora-stack';
import type { Strategy } from '../coordinator/strategy/strategy';
import { zeroAdapter } from '../proto/model/lora-stack';
import { Prng } from '../proto/prng';
import { sortByName, type NamedTensor } from '../proto/tensors';

const REPS = 3;
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

function closeOnce(strategy: Strategy, base: NamedTensor[], layout: NamedTensor[], updates: NamedTensor[][]): number {
  const t0 = now();
  const agg = strategy.begin(layout);
  updates.forEach((delta, k) => {
    const u = { clientId: `site-${k}`, numExamples: 100 + k, delta };
    agg.admit(u);
    agg.add(u);
  });
  strategy.aggregate(base, agg.sum(), { tensors: [], round: 2 });
  return now() - t0;
}

function main(): void {
  const layers = Number(process.argv[2] ?? 2);
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
  for (let rep = 0; rep < REPS; rep++) {
    times.fedavg.push(closeOnce(new FedAvg(), fedavgBase, fedavgBase, updates));
    times.flora_stack.push(closeOnce(new FloraStacking(), stackBase, layout, updates));
    times.flora_dense.push(closeOnce(new FloraStacking(), denseBase, layout, updates));
  }
  const s = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  process.stdout.write(
    JSON.stringify(
      {
        bench: 'flora-close',
        layers,
        sites: SITES,
        rank: RANK,
        reps: REPS,
        seconds: s,
        ratio_to_fedavg: { flora_stack: s.flora_stack / s.fedavg, flora_dense: s.flora_dense / s.fedavg },
      },
      null,
      2,
    ) + '\n',
  );
}

main();
