// Which LoRA aggregation a run uses (lora.aggregation), and what the coordinator refuses. The mode decides WHICH
// tensors sites train and send (proto/model/lora-aggregation.ts) before the Strategy sees an update: under
// 'ffa' the round's sum covers only lora_B, so the Strategy's aggregate keeps every lora_A at its global value
// (WeightedSum: a tensor missing from the sum keeps its global value) and A stays at its seeded init. Under 'flora'
// an update is a site's fresh factors at rank lora.r (zero-padded), whatever the base version's stacked rank, and
// the run's Strategy stacks them instead of summing (flora-stack.ts).
import { ProtocolError, status } from '../proto/errors';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { isTrainable, trainableTensors, type RoundLoraAggregation } from '../proto/model/lora-aggregation';
import { parsePeftKey } from '../proto/model/lora-layout';
import { zeroAdapter } from '../proto/model/lora-stack';
import type { CoordinatorConfig } from './config-types';
import { AdmissionError, type Aggregation } from './strategy/strategy';
import { declareFloraRank } from './flora-stack';

type AggregationConfig = Pick<CoordinatorConfig, 'lora' | 'secagg' | 'privacy' | 'strategy'>;

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

/** The mode a round runs: the resolved configuration. */
export function roundAggregation(cfg: AggregationConfig): RoundLoraAggregation {
  const a = loraAggregationOf(cfg);
  if (a === 'auto') throw new Error(`lora.aggregation '${a}' cannot run a round`);
  return a;
}

/** Configuration problems of lora.aggregation (loadConfig reports them with the others). */
export function loraAggregationProblems(cfg: AggregationConfig): string[] {
  if (loraAggregationOf(cfg) !== 'flora') return [];
  const problems: string[] = [];
  if (cfg.secagg.enabled) {
    problems.push(
      "lora.aggregation 'flora' stacks each site's own factors, which secure aggregation hides from the coordinator: it cannot run with secagg.enabled (use 'ffa', which is exact under SecAgg)",
    );
  }
  // DP-FedAvg clips and noises one update per site in the adapter's own coordinates; a stack keeps every site's
  // factors as its own components, and no sensitivity bound or accountant for that is stated here.
  if (cfg.privacy.enabled) {
    problems.push(
      "lora.aggregation 'flora' keeps every site's factors in the version (stacked), and fedtune states no differential-privacy guarantee for that: it cannot run with privacy.enabled (use 'ffa')",
    );
  }
  // The stack is no weighted sum: server optimisers, SCAFFOLD and the EMA all read one.
  if (cfg.strategy.name !== 'fedavg' || cfg.strategy.ema > 0) {
    problems.push(
      `lora.aggregation 'flora' stacks the sites' factors with FedAvg's weights; it runs with strategy.name 'fedavg' and strategy.ema 0 only (got '${cfg.strategy.name}', ema ${cfg.strategy.ema})`,
    );
  }
  return problems;
}

/**
 * The tensors a round's updates carry (and its sum covers): the whole adapter, only lora_B under 'ffa', or under
 * 'flora' a zero adapter of the fresh rank `floraRank` (lora.r) over the base's modules, whatever its stacked rank.
 */
export function uploadLayout<T extends TensorList[number]>(adapter: readonly T[], mode: RoundLoraAggregation, floraRank?: number): NamedTensor[] {
  if (mode === 'flora') {
    if (floraRank === undefined) throw new Error("lora.aggregation 'flora': the upload layout needs the fresh rank (lora.r)");
    return zeroAdapter(adapter, floraRank);
  }
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

/**
 * A site's reported training rank must not exceed the rank of the round's upload layout (the adapter's, or under
 * 'flora' lora.r): it zero-pads a smaller one; 0: not stated. Under 'flora' its factors, when already uploaded,
 * must be zero beyond it (the stack keeps only the declared components).
 */
export function checkReportedRank(rank: number, layout: TensorList, agg?: Aggregation, clientId?: string): void {
  if (rank === 0) return;
  let r = 0;
  for (const t of layout) {
    const k = parsePeftKey(t.name);
    if (k) r = Math.max(r, k.which === 'A' ? t.shape[0] : t.shape[1]);
  }
  if (r > 0 && rank > r) {
    throw new ProtocolError(
      status.INVALID_ARGUMENT,
      `lora_rank ${rank} exceeds the adapter's rank ${r}: a site may train a smaller rank (zero-padded to it), never a larger one`,
    );
  }
  try {
    if (clientId !== undefined) declareFloraRank(agg, clientId, rank);
  } catch (e) {
    // The factors say otherwise: the site's refusal. Anything else is this coordinator's error, passed on as it is.
    throw e instanceof AdmissionError ? new ProtocolError(status.INVALID_ARGUMENT, e.message) : e;
  }
}
