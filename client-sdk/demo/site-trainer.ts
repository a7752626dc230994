// The trainer of one simulated site (simulate.ts, on the main thread or in site-worker.ts), at the coordinator's
// LoRA or at a rank of its own (--site-ranks): a site below lora.r trains as a real site with --lora.r does,
// through TaskLoraTrainer (sft/task-lora.ts: zero-padded to the adapter's rank under 'fedit'/'ffa'); under 'flora'
// the rank is that of the fresh LoRA it trains each round, which the trainer of its own LoraConfig handles
// (sft/flora-site.ts), on the engine as on tfjs.
import * as tf from '@tensorflow/tfjs-core';
import type { LoraConfig } from '../../proto/model/lora-layout';
import type { CausalLm } from '../model/load';
import { trainerForModel, type SftData } from '../sft/lora-trainer';
import { TaskLoraTrainer } from '../sft/task-lora';
import type { Trainer } from '../trainer';

/**
 * Site i's LoRA: the coordinator's, or at rank ranks[i] ≤ lora.r with alpha scaled alike (the scaling alpha/r
 * unchanged, as `fedtune-site --lora.r` and flora-site.ts floraFreshLora default it).
 */
export function siteLora(lora: LoraConfig, ranks: readonly number[] | undefined, i: number): LoraConfig {
  if (ranks === undefined) return lora;
  const r = ranks[i];
  if (!(Number.isInteger(r) && r >= 1 && r <= lora.r)) throw new Error(`--site-ranks: site-${i}'s rank ${r} is not from 1 to lora.r ${lora.r}`);
  return r === lora.r ? lora : { ...lora, r, alpha: (lora.alpha / lora.r) * r };
}

/**
 * The trainer for a site training `own` (siteLora) under the coordinator's `lora` and `aggregation`. A rank below
 * lora.r outside 'flora' trains on tfjs: zero-padding lives in TaskLoraTrainer, which the engine does not serve.
 */
export async function demoSiteTrainer(
  model: CausalLm,
  lora: LoraConfig,
  own: LoraConfig,
  aggregation: string,
  data: SftData,
): Promise<{ trainer: Trainer; backend: string }> {
  if (own.r < lora.r && aggregation !== 'flora') {
    // Only the rank: TaskLoraTrainer keeps the adapter's scaling itself (sft/task-lora.ts siteRankPlan), so the
    // padded product is the one trained bit for bit, with no recomputed alpha to round differently.
    const backend = tf.getBackend();
    return { trainer: new TaskLoraTrainer({ model, data, lora: { r: own.r }, backend }), backend };
  }
  return trainerForModel(model, own, data);
}
