// What LoRA dropout adds to an engine step, from the step programs alone (no GPU needed): dispatches, distinct
// pipelines, the engine's own buffer bytes (engine/memory.ts) and the mask values recomputed per step, dropout 0
// against 0.1, for GPT-2 small (8 × 256, r 16 on c_attn, c_proj, c_fc) and the ~125M Llama shape (r 16, all seven
// modules) on every engine path. Timing belongs on a GPU (bench/engine-throughput.ts); lavapipe's would mean nothing.
//   node dist/bench/engine-dropout-cost.js [--batch 8] [--seq 256]
import { initLoraAdapter } from '../proto/model/lora-layout';
import { GPT2_LORA, GPT2_SMALL, LLAMA_125M, LLAMA_LORA } from './throughput-models';
import { modelLayout } from '../client-sdk/engine/layout';
import { llamaLayout } from '../client-sdk/engine/layout-llama';
import { buildProgram, type EnginePath, type Program } from '../client-sdk/engine/program';
import { buildLlamaProgram } from '../client-sdk/engine/program-llama';
import { engineMemory } from '../client-sdk/engine/memory';
import { shareKernels } from '../client-sdk/engine/dedupe';
import { chooseTile } from '../client-sdk/engine/matmul';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(name);
  return i < 0 ? dflt : Number(process.argv[i + 1]);
};
const B = arg('--batch', 8);
const T = arg('--seq', 256);
const ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8 };
const GPT2 = GPT2_SMALL;
const LLAMA = LLAMA_125M;

/** Mask values the kernels recompute per step: u's loads (once per column tile of r), dA's loads, dx's epilogue. */
function maskEvaluations(p: Program, inF: (layer: number, proj: string) => number, r: number): number {
  const N = p.rows;
  const tile = chooseTile(N, r);
  const uTiles = Math.ceil(r / (tile.wx * tile.tn));
  return p.dropoutModules.reduce((s, m) => s + (uTiles + 2) * N * inF(m.layer, m.proj), 0);
}

function row(
  family: string,
  path: EnginePath,
  build: (dropout?: number) => Program,
  inF: (layer: number, proj: string) => number,
  r: number,
  adapterSize: number,
): void {
  const [off, on] = [build(), build(0.1)];
  const mOff = engineMemory(off, adapterSize);
  const mOn = engineMemory(on, adapterSize);
  const pipes = (p: Program): number => shareKernels(p.kernels).groups.length;
  console.log(
    JSON.stringify({
      family,
      path,
      batch: B,
      seq: T,
      dispatches: [off.kernels.length, on.kernels.length],
      pipelines: [pipes(off), pipes(on)],
      storage_bytes: [mOff.storage, mOn.storage],
      extra_bytes: mOn.storage - mOff.storage,
      peak_bytes: [mOff.peak, mOn.peak],
      lora_modules: on.dropoutModules.length,
      mask_values_per_step: maskEvaluations(on, inF, r),
    }),
  );
}

const gAdapter = initLoraAdapter(GPT2, GPT2_LORA, 1);
const gLayout = modelLayout(GPT2, gAdapter, B * T);
const lAdapter = initLoraAdapter(LLAMA, LLAMA_LORA, 1);
const lLayout = llamaLayout(LLAMA, lAdapter, B * T);
for (const path of ['f32', 'f16', 'tc'] as EnginePath[]) {
  row(
    'gpt2-small',
    path,
    (dropout) => buildProgram({ config: GPT2, layout: gLayout, batch: B, seq: T, path, loraScale: 2, adam: ADAM, ...(dropout ? { dropout } : {}) }),
    (l, proj) => gLayout.layers[l].proj[proj as keyof (typeof gLayout.layers)[number]['proj']].inF,
    16,
    gLayout.adapterSize,
  );
  row(
    'llama-125m',
    path,
    (dropout) => buildLlamaProgram({ config: LLAMA, layout: lLayout, batch: B, seq: T, path, loraScale: 2, adam: ADAM, ...(dropout ? { dropout } : {}) }),
    (l, proj) => lLayout.layers[l].proj[proj as keyof (typeof lLayout.layers)[number]['proj']].inF,
    16,
    lLayout.adapterSize,
  );
}
