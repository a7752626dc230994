// Sliding-window attention on the WebGPU engine (client-sdk/engine/attention-window.ts), for `npm run test:gpu`
// (test/gpu-engine.ts; `--only-window` alone). The attention kernels with a window against a float64 reference, for
// every forward (row, tiled, vec4 tiled) and backward (scalar, vec4) at the device's workgroup memory and at 16 KiB
// (other tiles), with f32 and f16 activations (the f32 and the f16/tc paths), windows below, at and above a tile;
// a tiny Mistral whose window is shorter than the sequence against tfjs's Mistral (loss, every LoRA gradient,
// with each attention kernel choice) on every path; and a window as long as the sequence giving the bits of the
// same model without one. Runs on lavapipe too (FEDTUNE_ENGINE_SOFTWARE=1 node dist/test/gpu-engine.js
// --only-window --paths f32).
import { attnFwdTile } from '../client-sdk/engine/attention-tiled';
import { attnBwdTile } from '../client-sdk/engine/attention-backward';
import { attnBwdVecTile } from '../client-sdk/engine/attention-backward-vec';
import type { EngineDevice } from '../client-sdk/engine/device';
import type { EnginePath } from '../client-sdk/engine/program';
import type { EngineTuning } from '../client-sdk/engine/tuning';
import { halfToFloat, toHalfBits } from '../client-sdk/engine/half';
import { LlamaModel } from '../client-sdk/model/llama';
import { parseLlamaConfig } from '../proto/model/llama-config';
import { Prng } from '../proto/prng';
import { attentionReference, runAttention, sameBits } from './gpu-attention';
import { stepParity, weightsFor } from './gpu-engine-llama';
import { TINY_MISTRAL_JSON } from './tiny-mistral';
import { relErr } from './rel-err';

type Check = (name: string, ok: boolean, detail: string) => void;

const ALL7 = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

async function kernelChecks(ed: EngineDevice, check: Check): Promise<void> {
  const rng = new Prng(17);
  // hd 32 and 64 (the vec4 kernels need a multiple of 32); T not a multiple of any tile, so tiles end part-full.
  const shapes = [
    { B: 2, T: 70, H: 2, D: 128, scale: 1 / Math.sqrt(64) },
    { B: 1, T: 45, H: 3, D: 96, scale: 1 / Math.sqrt(32) },
  ];
  for (const s of shapes) {
    const N = s.B * s.T;
    const hd = s.D / s.H;
    const qkv = Float32Array.from({ length: N * 3 * s.D }, () => rng.nextFloat() * 2 - 1);
    const dctx32 = Float32Array.from({ length: N * s.D }, () => rng.nextFloat() * 2 - 1);
    // The f16 paths hold dctx in half: the reference takes the same rounded values.
    const dctx16 = Float32Array.from(toHalfBits(dctx32).subarray(0, dctx32.length), halfToFloat);
    const sizes = { qkv: N * 3 * s.D, ctx: N * s.D, lse: s.B * s.H * s.T, dctx: N * s.D, delta: s.B * s.H * s.T, dqkv: N * 3 * s.D };
    // 1: each query alone; 5, 8: inside one tile; 17, 32, 33: about a tile; T − 1: one pair masked per row.
    for (const window of [1, 5, 8, 17, 32, 33, s.T - 1]) {
      for (const act of ['f32', 'f16'] as const) {
        const dctx = act === 'f32' ? dctx32 : dctx16;
        const want = attentionReference({ ...s, window }, qkv, dctx);
        const tol = act === 'f32' ? 1e-5 : 2e-3;
        for (const budget of [ed.caps.maxComputeWorkgroupStorageSize, 16384]) {
          for (const kind of ['row', 'tiled', 'vec'] as const) {
            if (kind === 'row' && budget === 16384) continue; // the row kernel has one tile
            const outs = ['ctx', 'lse', 'delta', 'dqkv'];
            const [got, again] = await runAttention(ed, { ...s, act, window }, kind, budget, sizes, { qkv, dctx });
            const errs = outs.map((o) => relErr(got[o], want[o]));
            const fwdTile = kind === 'row' ? 32 : attnFwdTile(kind === 'vec' ? hd + 3 : hd, budget);
            const bwdTile = kind === 'vec' ? attnBwdVecTile(hd, budget) : attnBwdTile(hd, budget);
            const tag = `window ${window} attention ${act} T${s.T} hd${hd}, ${kind} forward tile ${fwdTile}, ${kind === 'vec' ? 'vec4 ' : ''}backward tile ${bwdTile}`;
            check(
              `${tag}: against float64, rerun bit-identical`,
              Math.max(...errs) < tol && outs.every((o) => sameBits(got[o], again[o])),
              outs.map((o, i) => `${o} ${errs[i].toExponential(2)}`).join(', '),
            );
          }
        }
      }
    }
  }
}

/** The tiny Mistral (window 6, head_dim 32) against tfjs's Mistral, with each attention kernel choice. */
async function mistralChecks(ed: EngineDevice, paths: EnginePath[], check: Check): Promise<void> {
  const cfg = parseLlamaConfig(TINY_MISTRAL_JSON);
  const model = LlamaModel.fromTensors(cfg, weightsFor(cfg, 3));
  const tunings: [string, EngineTuning][] = [
    ['tiled forward', { attnTiled: true }],
    ['vec4 tiled forward and backward', { attnTiled: true, attnVec: true }],
  ];
  for (const [what, tuning] of tunings)
    await stepParity(ed, paths, check, `mistral window ${cfg.slidingWindow}, ${what}`, model, { r: 4, alpha: 8, dropout: 0, targetModules: ALL7 }, tuning);
  model.dispose();
}

/** A window ≥ the sequence is no window: the same loss and gradient bits as the same model without one. */
async function fullWindowChecks(ed: EngineDevice, paths: EnginePath[], check: Check): Promise<void> {
  const long = parseLlamaConfig({ ...TINY_MISTRAL_JSON, sliding_window: 40 });
  const none = parseLlamaConfig({ ...TINY_MISTRAL_JSON, sliding_window: null });
  const lora = { r: 4, alpha: 8, dropout: 0, targetModules: ALL7 };
  const runs = [];
  for (const cfg of [long, none]) {
    const model = LlamaModel.fromTensors(cfg, weightsFor(cfg, 3));
    runs.push(await stepParity(ed, paths, () => undefined, 'full', model, lora));
    model.dispose();
  }
  for (const p of paths) {
    const [a, b] = runs.map((r) => r.get(p));
    const same = !!a && !!b && a.loss === b.loss && sameBits(a.grad, b.grad);
    check(
      `mistral ${p}: sliding_window 40 ≥ sequence 40 gives the bits of no window`,
      same,
      `loss ${a?.loss} and ${b?.loss}, gradient bytes ${same ? 'equal' : 'differ'}`,
    );
  }
}

export async function windowTests(ed: EngineDevice, paths: EnginePath[], check: Check): Promise<void> {
  await kernelChecks(ed, check);
  await mistralChecks(ed, paths, check);
  await fullWindowChecks(ed, paths, check);
}
