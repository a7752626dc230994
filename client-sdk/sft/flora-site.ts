// A site's side of FLoRA (lora.aggregation 'flora'; the coordinator's side is coordinator/flora-stack.ts). The task's
// global adapter is the version's stack: an adapter of rank R whose product (scaling 1) is the federation's
// cumulative delta ΔW = Σ_{τ ≤ t} ΔW_τ. Each round the site
//   1. merges it into its base weights, W = W0 + ΔW per adapted projection (MergedBase: ΔW = B_stack·A_stack in
//      float32, added to the model's stored weight once per task; the forward pass reads the merged weights through
//      ForwardOptions.merged and the model's own stay W0; the WebGPU engine merges on the GPU, engine/merge.ts). A task
//      merges the version it was sent, whole, so a site that joins late, or misses rounds, trains on every earlier
//      round's delta: nothing is carried between tasks.
//   2. trains a FRESH LoRA of its own rank r_k ≤ flora_rank (its --lora.r, else the coordinator's lora.r): lora_A
//      from the seeded init (floraInitSeed of the task seed, which the manifest records), lora_B = 0;
//   3. sends (A_k, s_k·B_k), its scaling folded into B (one float32 rounding; exact when s_k is a power of two, as
//      with the default alpha = 2r) and zero-padded to flora_rank, the round's upload layout.
// Its held-out evaluation after training scores the model it trained, the stack plus its own components, as one LoRA
// at scaling 1 (the same function of the input as the merged weights, up to float32 rounding: test/flora.test.ts).
import * as tf from '@tensorflow/tfjs-core';
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { canonicalAdapter, initLoraAdapter, loraScaling, parsePeftKey, type LoraConfig } from '../../proto/model/lora-layout';
import { floraInitSeed } from '../../proto/model/lora-aggregation';
import { concatComponents, loraModules, padComponents, uniformRank } from '../../proto/model/lora-stack';
import type { ModelConfig } from '../../proto/model/model-config';
import type { TrainingPlan, TrainOutcome, TrainStep } from '../trainer';
import type { CausalLm } from '../model/load';
// Type only: lora-trainer.ts imports this file (MergedBase, floraRound).
import type { LoraSftTrainer } from './lora-trainer';

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
  const r = site.r ?? max;
  if (!(Number.isInteger(r) && r >= 1 && r <= max)) {
    throw new Error(`the coordinator's flora_rank is ${max}; this site says --lora.r ${r}: a site may train a rank from 1 up to it, not above`);
  }
  const alpha = site.alpha ?? ((plan.loraAlpha ?? 2 * max) / max) * r;
  // LoRA dropout (the plan's) applies to the fresh LoRA's input only: the merged delta is part of the weights.
  return {
    r,
    alpha,
    dropout: plan.loraDropout ?? 0,
    targetModules: layout.targetModules,
    ...(layout.layersToTransform ? { layersToTransform: layout.layersToTransform } : {}),
  };
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

/** A trainer's last 'flora' outcome: what it uploaded and the stack it trained on (evaluate() scores both). */
export interface FloraOutcome {
  readonly upload: TensorList;
  readonly stack: TensorList;
}

/**
 * What a held-out evaluation scores under FLoRA, or undefined for an ordinary adapter: after the trainer's own 'flora'
 * round (`adapter` is that outcome's upload) the model it trained, the stack plus its components; a candidate sent as
 * a stack (opts.stack), the stack alone. Either as one LoRA at its own rank and scaling 1. The tfjs trainer and the
 * WebGPU engine's both score through this (the engine evaluates on tfjs too).
 */
export function floraEvaluated(
  adapter: TensorList,
  stack: boolean,
  last: FloraOutcome | undefined,
  nLayer: number,
): { readonly adapter: TensorList; readonly lora: LoraConfig } | undefined {
  const whole = last?.upload === adapter ? floraLocalModel(last.stack, adapter) : stack ? adapter : undefined;
  return whole && { adapter: whole, lora: stackLoraConfig(whole, stackLayout(whole, nLayer)) };
}

/**
 * One 'flora' round: the fresh LoRA (the site's rank and alpha, `site`) from its seeded init, trained by the trainer
 * `trainerWith` makes for it on the merged stack; the outcome's adapter is what the site uploads (floraUpload).
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
 * The base weights with the version's delta merged in, W0 + B_stack·A_stack, for ForwardOptions.merged: one float32
 * ΔW per adapted projection, added to the model's stored weight (the model's own tensors are not touched).
 */
export class MergedBase {
  readonly weights = new Map<string, tf.Tensor2D>();

  constructor(model: CausalLm, stack: TensorList) {
    try {
      for (const m of loraModules(canonicalAdapter(stack))) {
        const dw = tf.tidy(() =>
          tf.matMul<tf.Tensor2D>(tf.tensor2d(m.b.data, [m.b.shape[0], m.b.shape[1]]), tf.tensor2d(m.a.data, [m.a.shape[0], m.a.shape[1]])),
        );
        try {
          for (const [name, w] of model.mergedWeights(m.path, dw)) this.weights.set(name, w);
        } finally {
          dw.dispose();
        }
      }
    } catch (e) {
      this.dispose();
      throw e;
    }
  }

  dispose(): void {
    for (const w of this.weights.values()) w.dispose();
    this.weights.clear();
  }
}
