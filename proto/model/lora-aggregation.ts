// How a round combines LoRA updates, which both sides must agree on (the task plan carries it):
//   'fedit' — every LoRA tensor is trained and averaged, A and B separately (FedIT). mean(B)·mean(A) is not the
//             mean of the sites' products B_k·A_k once their A differ (shared/design/federated-lora.md).
//   'ffa'   — FFA-LoRA (Sun et al., ICLR 2024): lora_A stays frozen at its seeded init, sites train and upload
//             only lora_B. The product is linear in B, so (Σ p_k B_k)·A = Σ p_k (B_k·A): the average is exact,
//             under secure aggregation too, and uploads halve.
//   'flora' — FLoRA (Wang et al., NeurIPS 2024): each round every site trains a FRESH LoRA of its own rank on
//             top of the version it was sent (base + that version's cumulative delta) and uploads both factors;
//             the coordinator stacks them, A's rows and p_k-weighted B's columns, so B·A = Σ p_k s_k B_k A_k
//             exactly (coordinator/flora-stack.ts). A version holds the stack of every round so far: an exact
//             PEFT adapter whose product is the cumulative delta (client-sdk/sft/flora-site.ts merges it).
import type { TensorList } from '../tensors';
import { hashString } from '../prng';
import { parsePeftKey } from './lora-layout';

export const LORA_AGGREGATIONS = ['fedit', 'ffa', 'flora'] as const;
export type LoraAggregation = (typeof LORA_AGGREGATIONS)[number];
/** The modes a round can run (the wire value; '' from an older coordinator means 'fedit'). */
export type RoundLoraAggregation = LoraAggregation;

/** The wire value of TrainingConfig.lora_aggregation as a mode; undefined for one this side does not know. */
export function roundAggregationFromWire(v: string): RoundLoraAggregation | undefined {
  if (v === '' || v === 'fedit') return 'fedit';
  if (v === 'ffa') return 'ffa';
  if (v === 'flora') return 'flora';
  return undefined;
}

/** Is this tensor trained (and uploaded) under `mode`? Under 'fedit' and 'flora' every tensor is; under 'ffa' only lora_B. */
export function isTrainable(name: string, mode: RoundLoraAggregation): boolean {
  return mode !== 'ffa' || parsePeftKey(name)?.which === 'B';
}

/**
 * The seed of a site's fresh lora_A under 'flora': derived from its task seed (recorded in the version's manifest,
 * seeds.clients), so every site's A_k differs and each is reproducible from the manifest.
 */
export function floraInitSeed(taskSeed: number): number {
  return hashString(`flora-init:${taskSeed}`);
}

/** The tensors a site trains and uploads under `mode`, in the adapter's (sorted) order. */
export function trainableTensors<T extends TensorList[number]>(adapter: readonly T[], mode: RoundLoraAggregation): T[] {
  return adapter.filter((t) => isTrainable(t.name, mode));
}
