// A site's side of FLoRA (lora.aggregation 'flora'; the coordinator's side is coordinator/flora-stack.ts). The task's
// global adapter is the version's stack: an adapter of rank R whose product (scaling 1) is the federation's
// cumulative delta ΔW = Σ_{τ ≤ t} ΔW_τ. Each round the site
//   1. merges it into its base: W0 + ΔW. The merge is functional, not in place: the stack rides as a FROZEN low-rank
//      path beside the fresh LoRA in every projection, y = W0·x + B_stack·A_stack·x + s_k·B_k·A_k·x (StackedPath),
//      which is (W0 + ΔW)·x up to float rounding. Stateless, so a site that joins late (or misses rounds) merges
//      exactly the version it was sent, every earlier round included; the cost is O(R) per token per module,
//      bounded by the coordinator (R ≤ min(d_in, d_out)).
//   2. trains a FRESH LoRA of its own rank r_k ≤ flora_rank (its --lora.r, else the coordinator's lora.r): lora_A
//      from the seeded init (floraInitSeed of the task seed, which the manifest records), lora_B = 0;
//   3. sends (A_k, s_k·B_k), its scaling folded into B (one float32 rounding; exact when s_k is a power of two, as
//      with the default alpha = 2r) and zero-padded to flora_rank, the round's upload layout.
// Its held-out evaluation after training scores the model it trained: the stack plus its own components.
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { canonicalAdapter, initLoraAdapter, loraScaling, parsePeftKey, type LoraConfig } from '../../proto/model/lora-layout';
import { floraInitSeed } from '../../proto/model/lora-aggregation';
import { concatComponents, loraModules, padComponents, uniformRank } from '../../proto/model/lora-stack';
import type { ModelConfig } from '../../proto/model/model-config';
import type { TrainingPlan, TrainOutcome, TrainStep } from '../trainer';
import type { LoraState } from '../model/gpt2';
// Type only: lora-trainer.ts imports this file for StackedPath.
import type { LoraSftTrainer } from './lora-trainer';

/** Why the WebGPU engine (client-sdk/engine) refuses a FLoRA round: it has no frozen path for the stack beside a fresh LoRA. */
export const ENGINE_FLORA_REFUSAL =
  "the WebGPU engine cannot train under lora.aggregation 'flora' (it has no path for the version's stacked delta beside a fresh LoRA): train on tfjs (FEDTUNE_ENGINE unset)";

export interface FloraSiteOptions {
  /** The rank this site trains (≤ the task's flora_rank); default: flora_rank. */
  readonly r?: number;
  /** This site's alpha; default: the coordinator's scaling (lora_alpha / flora_rank) times r. */
  readonly alpha?: number;
}

/** The stack's target modules (short names) and, when not every layer has them, its layers. */
export function stackLayout(stack: TensorList, nLayer: number): Pick<LoraConfig, 'targetModules' | 'layersToTransform'> {
  const names = new Set<string>();
  const layers = new Set<number>();
  for (const m of loraModules(canonicalAdapter(stack))) {
    names.add(m.path.slice(m.path.lastIndexOf('.') + 1));
    layers.add(Number(m.path.split('.')[1]));
  }
  const ls = [...layers].sort((a, b) => a - b);
  const all = ls.length === nLayer && ls.every((l, i) => l === i);
  return { targetModules: [...names].sort(), ...(all ? {} : { layersToTransform: ls }) };
}

/** A LoraConfig whose scaling is 1 for a stack of rank r over these modules (a version, or a stack plus fresh factors). */
export function stackLoraConfig(adapter: TensorList, layout: Pick<LoraConfig, 'targetModules' | 'layersToTransform'>): LoraConfig {
  const r = uniformRank(adapter);
  return { r, alpha: r, dropout: 0, targetModules: layout.targetModules, ...(layout.layersToTransform ? { layersToTransform: layout.layersToTransform } : {}) };
}

/** The fresh LoRA a site trains this round, or an error naming what does not fit. */
export function floraFreshLora(plan: TrainingPlan, site: FloraSiteOptions, layout: Pick<LoraConfig, 'targetModules' | 'layersToTransform'>): LoraConfig {
  const max = plan.floraRank;
  if (max === undefined) throw new Error("a 'flora' task needs the coordinator's flora_rank");
  if ((plan.loraDropout ?? 0) > 0)
    throw new Error(`lora.aggregation 'flora' trains beside the version's stacked delta, which LoRA dropout ${plan.loraDropout} would drop too`);
  const r = site.r ?? max;
  if (!(Number.isInteger(r) && r >= 1 && r <= max)) {
    throw new Error(`the coordinator's flora_rank is ${max}; this site says --lora.r ${r}: a site may train a rank from 1 up to it, not above`);
  }
  const alpha = site.alpha ?? ((plan.loraAlpha ?? 2 * max) / max) * r;
  return { r, alpha, dropout: 0, targetModules: layout.targetModules, ...(layout.layersToTransform ? { layersToTransform: layout.layersToTransform } : {}) };
}

/** The round's fresh adapter: lora_A seeded from the task seed (floraInitSeed), lora_B zero. */
export function floraFreshAdapter(model: ModelConfig, fresh: LoraConfig, taskSeed: number): NamedTensor[] {
  return initLoraAdapter(model, fresh, floraInitSeed(taskSeed));
}

/**
 * What the site uploads: the trained fresh factors with lora_B times `scaling` (fround once), zero-padded to
 * `rank`, named as the global stack spells its tensors.
 */
export function floraUpload(trained: TensorList, scaling: number, rank: number, global: TensorList): NamedTensor[] {
  const spelled = new Map(global.map((t) => [canonicalAdapter([t])[0].name, t.name]));
  const folded = canonicalAdapter(trained).map((t) =>
    parsePeftKey(t.name)?.which === 'B' && scaling !== 1 ? { ...t, data: Float32Array.from(t.data, (v) => v * scaling) } : t,
  );
  return padComponents(folded, rank).map((t) => ({ ...t, name: spelled.get(t.name) ?? t.name }));
}

/** The site's local model after training as one adapter of scaling 1: the stack's components, then its own. */
export function floraLocalModel(stack: TensorList, upload: TensorList): NamedTensor[] {
  return concatComponents(canonicalAdapter(stack), canonicalAdapter(upload));
}

/**
 * One 'flora' round: the fresh LoRA (the site's rank and alpha, `site`) from its seeded init, trained by the trainer
 * `trainerWith` makes for it beside the stack; the outcome's adapter is what the site uploads (floraUpload).
 */
export async function floraRound(
  trainerWith: (fresh: LoraConfig) => Pick<LoraSftTrainer, 'train'>,
  model: ModelConfig & { readonly nLayer: number },
  stack: TensorList,
  plan: TrainingPlan,
  site: FloraSiteOptions,
  signal?: AbortSignal,
  onStep?: (s: TrainStep) => void,
): Promise<TrainOutcome> {
  const fresh = floraFreshLora(plan, site, stackLayout(stack, model.nLayer));
  const out = await trainerWith(fresh).train(floraFreshAdapter(model, fresh, plan.seed), plan, signal, onStep, stack);
  return { ...out, adapter: floraUpload(out.adapter, loraScaling(fresh), plan.floraRank!, stack), loraRank: fresh.r };
}

/**
 * The version's stack as tf constants, and the forward's LoRA state that runs it beside the fresh (trainable)
 * modules: per module A = [A_stack; A_k] and B = [B_stack, s_k·B_k] at scaling 1, so the low-rank path is
 * B_stack·A_stack·x + s_k·B_k·A_k·x (the stack's scaling was folded into it at the coordinator).
 */
export class StackedPath {
  private readonly stack = new Map<string, { a: tf.Tensor2D; b: tf.Tensor2D }>();

  constructor(global: TensorList) {
    for (const m of loraModules(canonicalAdapter(global))) {
      this.stack.set(m.path, {
        a: tf.tensor2d(m.a.data, [m.a.shape[0], m.a.shape[1]], 'float32'),
        b: tf.tensor2d(m.b.data, [m.b.shape[0], m.b.shape[1]], 'float32'),
      });
    }
  }

  /** The state for ForwardOptions.lora (call inside the gradient scope: the concatenations are taped). */
  state(fresh: ReadonlyMap<string, { a: tf.Tensor2D; b: tf.Tensor2D }>, scaling: number, dropout: number): LoraState {
    if (dropout > 0) throw new Error("lora.aggregation 'flora': LoRA dropout would drop the stacked delta too");
    const modules = new Map<string, { a: tf.Tensor2D; b: tf.Tensor2D }>();
    for (const [path, m] of fresh) {
      const s = this.stack.get(path);
      if (!s) throw new Error(`the version's stack has no module ${path}`);
      modules.set(path, { a: tf.concat2d([s.a, m.a], 0), b: tf.concat2d([s.b, tf.mul<tf.Tensor2D>(m.b, scaling)], 1) });
    }
    if (modules.size !== this.stack.size) throw new Error(`the fresh LoRA covers ${modules.size} modules, the version's stack ${this.stack.size}`);
    return { modules, scaling: 1, dropout: 0 };
  }

  dispose(): void {
    for (const s of this.stack.values()) {
      s.a.dispose();
      s.b.dispose();
    }
  }
}
