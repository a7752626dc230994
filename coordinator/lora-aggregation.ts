// Which LoRA aggregation a run uses (lora.aggregation), and what the coordinator refuses. The mode decides WHICH
// tensors sites train and send (proto/model/lora-aggregation.ts) before the Strategy sees an update: under
// 'ffa' the round's sum covers only lora_B, so the Strategy's aggregate keeps every lora_A at its global value
// (WeightedSum: a tensor missing from the sum keeps its global value) and A stays at its seeded init.
import { ProtocolError, status } from '../proto/errors';
import type { TensorList } from '../proto/tensors';
import { isTrainable, trainableTensors, type RoundLoraAggregation } from '../proto/model/lora-aggregation';
import { parsePeftKey } from '../proto/model/lora-layout';
import type { CoordinatorConfig } from './config-types';

type AggregationConfig = Pick<CoordinatorConfig, 'lora' | 'secagg' | 'privacy'>;

/**
 * The configured mode with 'auto' resolved: 'ffa' under secure aggregation (the coordinator sees only the sum,
 * and only a linear update makes the sum's product the mean of the sites' products) and under differential
 * privacy (noise added to B alone enters the product linearly, noise on both factors also multiplies), else
 * 'fedit' (the demo's default until FFA is measured better there).
 */
export function loraAggregationOf(cfg: AggregationConfig): CoordinatorConfig['lora']['aggregation'] {
  const a = cfg.lora.aggregation;
  if (a !== 'auto') return a;
  return cfg.secagg.enabled || cfg.privacy.enabled ? 'ffa' : 'fedit';
}

/** The mode a round runs: the resolved configuration, 'flora' having been refused at load. */
export function roundAggregation(cfg: AggregationConfig): RoundLoraAggregation {
  const a = loraAggregationOf(cfg);
  if (a === 'flora' || a === 'auto') throw new Error(`lora.aggregation '${a}' cannot run a round`);
  return a;
}

/** Configuration problems of lora.aggregation (loadConfig reports them with the others). */
export function loraAggregationProblems(cfg: AggregationConfig): string[] {
  if (loraAggregationOf(cfg) !== 'flora') return [];
  if (cfg.secagg.enabled) {
    return [
      "lora.aggregation 'flora' stacks each site's own factors, which secure aggregation hides from the coordinator: it cannot run with secagg.enabled (use 'ffa', which is exact under SecAgg)",
    ];
  }
  return [
    "lora.aggregation 'flora' is not implemented: stacking needs the base model re-merged every round, which fedtune's fixed base does not do (use 'ffa' for exact aggregation)",
  ];
}

/** The tensors a round's updates carry (and its sum covers): the whole adapter, or only lora_B under 'ffa'. */
export function uploadLayout<T extends TensorList[number]>(adapter: readonly T[], mode: RoundLoraAggregation): T[] {
  const out = trainableTensors(adapter, mode);
  if (out.length === 0) throw new Error(`lora.aggregation '${mode}': the adapter has no trainable tensor`);
  return out;
}

/** An upload naming a frozen tensor is refused by name (before the generic layout check says "unexpected"). */
export function refuseFrozen(names: readonly string[], mode: RoundLoraAggregation): void {
  // A name that is no LoRA tensor at all is left to the layout check ("unexpected tensor").
  const frozen = names.find((n) => parsePeftKey(n) !== undefined && !isTrainable(n, mode));
  if (frozen !== undefined) {
    throw new ProtocolError(
      status.INVALID_ARGUMENT,
      `tensor ${frozen} is frozen under lora.aggregation '${mode}': an update carries only the lora_B tensors (FFA-LoRA)`,
    );
  }
}

/** A site's reported training rank must not exceed the adapter's (it zero-pads a smaller one; 0: not stated). */
export function checkReportedRank(rank: number, adapter: TensorList): void {
  if (rank === 0) return;
  let r = 0;
  for (const t of adapter) if (parsePeftKey(t.name)?.which === 'A') r = Math.max(r, t.shape[0]);
  if (r > 0 && rank > r) {
    throw new ProtocolError(
      status.INVALID_ARGUMENT,
      `lora_rank ${rank} exceeds the adapter's rank ${r}: a site may train a smaller rank (zero-padded to it), never a larger one`,
    );
  }
}
