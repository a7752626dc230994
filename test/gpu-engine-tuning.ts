// The engine's kernel choices (client-sdk/engine/tuning.ts) on the GPU, for `npm run test:gpu` (test/gpu-engine.ts):
// one full step of the demo model under each choice against the same step under the defaults, on every path.
// The transposed lora_B copy, the epilogue as its own pass and the vec4 attention tiles must give the same bytes
// (same values, same order);
// the split LoRA side products,
// the tiled attention forward and other tensor-core tiles change only the order of float sums, so their loss and
// adapter gradient must agree within rounding (f32 path 1e-5 relative; f16/tc 3e-3, ten times below the tolerance
// the one-step check against tfjs allows those paths).
import * as path from 'node:path';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { initLoraAdapter, loraScaling, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import { packBatch } from '../client-sdk/sft/pack';
import type { EngineDevice } from '../client-sdk/engine/device';
import { LoraEngine } from '../client-sdk/engine/engine';
import type { EnginePath } from '../client-sdk/engine/program';
import type { EngineTuning } from '../client-sdk/engine/tuning';
import type { NamedTensor } from '../proto/tensors';
import { relErr } from './rel-err';

type Check = (name: string, ok: boolean, detail: string) => void;

const MODEL_DIR = path.resolve(__dirname, '..', '..', 'examples', 'base-model');
const LORA: LoraConfig = { r: 16, alpha: 32, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] };

/** Every tile name bench/engine-profile.ts times, on the products it times them on. */
const TILES_A: EngineTuning['tiles'] = [
  ['^fwd ', 'd2x1-t4x4'],
  ['^bwd\\.dx ', 's4x2-t2x4-k32-db-p8-v1'],
  ['^lm\\.logits', 's2x2-t2x4-k32-db-p8-v1'],
  ['^lm\\.dhs', 's2x2-t4x4-k32-db-p8-v1'],
];
const TILES_B: EngineTuning['tiles'] = [
  ['^fwd ', 's2x2-t4x4-k64-p8-v1'],
  ['^bwd\\.dx ', 's2x2-t2x4-k32-db-p8-v1'],
  ['^lm\\.logits', 's4x2-t2x4-k32-db-p8-v1'],
];

/** Each choice against `base` (default: no choices, the kernels as they were before tuning.ts). */
const VARIANTS: { name: string; tuning: EngineTuning; exact: boolean; tcOnly?: boolean; base?: EngineTuning }[] = [
  { name: 'loraT', tuning: { loraT: true }, exact: true },
  { name: 'loraSplitK 48', tuning: { loraSplitK: 48 }, exact: false },
  { name: 'attnTiled', tuning: { attnTiled: true }, exact: false },
  { name: 'attnVec (tiled forward)', tuning: { attnTiled: true, attnVec: true }, exact: true, base: { attnTiled: true } },
  { name: 'attnVec (backward)', tuning: { attnVec: true }, exact: true },
  { name: 'epiSplit', tuning: { epiSplit: true }, exact: true, tcOnly: true },
  { name: 'loraT + epiSplit', tuning: { loraT: true, epiSplit: true }, exact: true, tcOnly: true },
  { name: 'tiles A', tuning: { tiles: TILES_A }, exact: false, tcOnly: true },
  { name: 'tiles B', tuning: { tiles: TILES_B }, exact: false, tcOnly: true },
  { name: 'all', tuning: { loraT: true, loraSplitK: 48, attnTiled: true, attnVec: true, epiSplit: true, tiles: TILES_A }, exact: false },
];

export async function tuningTests(ed: EngineDevice, paths: readonly EnginePath[], check: Check): Promise<void> {
  const { model } = await loadGpt2Dir(MODEL_DIR);
  const cfg = model.config;
  const weights = await model.namedWeights();
  const adapter: NamedTensor[] = initLoraAdapter(cfg, LORA, 5).map((t) => {
    const rng = new Prng(9, t.data.length);
    return t.name.includes('lora_B') ? { ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * 0.05) } : t;
  });
  const theta = new Float32Array(adapter.reduce((s, t) => s + t.data.length, 0));
  adapter.reduce((o, t) => (theta.set(t.data, o), o + t.data.length), 0);
  const rng = new Prng(13);
  // Rows of unequal length (padding included) and a batch whose rows are not a multiple of the 128-row tiles.
  const packed = packBatch(
    Array.from({ length: 5 }, (_, b) => {
      const tokens = Array.from({ length: 30 + 7 * b }, () => 1 + rng.nextInt(cfg.vocabSize - 1));
      return { tokens, pairs: tokens.slice(1).map((target, i) => ({ pos: i, target })) };
    }),
    64,
  );
  const pairPos = Int32Array.from(packed.pairRow, (r) => packed.rows[r]);
  const run = async (p: EnginePath, tuning: EngineTuning): Promise<{ loss: number; grad: Float32Array; err: string }> => {
    const e = new LoraEngine(ed, { config: cfg, weights, adapter, batch: packed.batch, seq: packed.seq, path: p, loraScale: loraScaling(LORA), tuning });
    const errs = await e.compileErrors();
    e.setAdapter(theta);
    e.step({ ids: packed.inputIds, pairPos, pairTarget: packed.pairTarget, lr: 0, weightDecay: 0 });
    const [loss] = await e.readLoss();
    const grad = await e.readF32('grad', e.layout.adapterSize);
    await e.dispose();
    return { loss, grad, err: errs.join(' | ') };
  };
  for (const p of paths) {
    const plain = await run(p, {});
    for (const v of VARIANTS) {
      if (v.tcOnly && p !== 'tc') continue;
      const base = v.base ? await run(p, v.base) : plain;
      const got = await run(p, v.tuning);
      const name = `tuning ${v.name} ${p}: step against the default kernels`;
      if (got.err) {
        check(name, false, got.err);
        continue;
      }
      const dLoss = Math.abs(got.loss - base.loss) / Math.abs(base.loss);
      const dGrad = relErr(got.grad, base.grad);
      if (v.exact) {
        const same = Buffer.from(got.grad.buffer).equals(Buffer.from(base.grad.buffer)) && got.loss === base.loss;
        check(name, same, `bit-identical loss and gradient: ${same} (loss ${got.loss} vs ${base.loss}, grad rel ${dGrad.toExponential(2)})`);
      } else {
        const tol = p === 'f32' ? 1e-5 : 3e-3;
        check(
          name,
          dLoss < tol && dGrad < tol && Number.isFinite(got.loss),
          `loss rel ${dLoss.toExponential(2)}, gradient rel ${dGrad.toExponential(2)} (limit ${tol})`,
        );
      }
    }
  }
  model.dispose();
}
