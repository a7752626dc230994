// How a round combines LoRA updates, which both sides must agree on (the task plan carries it):
//   'fedit' — every LoRA tensor is trained and averaged, A and B separately (FedIT). mean(B)·mean(A) is not the
//             mean of the sites' products B_k·A_k once their A differ (shared/design/federated-lora.md).
//   'ffa'   — FFA-LoRA (Sun et al., ICLR 2024): lora_A stays frozen at its seeded init, sites train and upload
//             only lora_B. The product is linear in B, so (Σ p_k B_k)·A = Σ p_k (B_k·A): the average is exact,
//             under secure aggregation too, and uploads halve.
//   'flora' — FLoRA's stacking (factors stacked, merged into the base each round); recognised so that it is
//             refused by name (coordinator/config.ts): it is not implemented.
import type { TensorList } from '../tensors';
import { parsePeftKey } from './lora-layout';

export const LORA_AGGREGATIONS = ['fedit', 'ffa', 'flora'] as const;
export type LoraAggregation = (typeof LORA_AGGREGATIONS)[number];
/** The modes a round can run today (the wire value; '' from an older coordinator means 'fedit'). */
export type RoundLoraAggregation = Exclude<LoraAggregation, 'flora'>;

/** The wire value of TrainingConfig.lora_aggregation as a mode; undefined for one this side does not know. */
export function roundAggregationFromWire(v: string): RoundLoraAggregation | undefined {
  if (v === '' || v === 'fedit') return 'fedit';
  if (v === 'ffa') return 'ffa';
  return undefined;
}

/** Is this tensor trained (and uploaded) under `mode`? Under 'fedit' every tensor is; under 'ffa' only lora_B. */
export function isTrainable(name: string, mode: RoundLoraAggregation): boolean {
  return mode === 'fedit' || parsePeftKey(name)?.which === 'B';
}

/** The tensors a site trains and uploads under `mode`, in the adapter's (sorted) order. */
export function trainableTensors<T extends TensorList[number]>(adapter: readonly T[], mode: RoundLoraAggregation): T[] {
  return adapter.filter((t) => isTrainable(t.name, mode));
}
