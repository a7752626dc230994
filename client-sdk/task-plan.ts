// A TrainTask as the site's Trainer sees it: the wire's training configuration read and checked (the round's LoRA
// aggregation, the local optimiser), then turned into the TrainingPlan the trainer runs. A value this site does not
// know fails the task by name before anything trains. Kept apart from the client's session and stream handling
// (client.ts), which calls these in this order with SCAFFOLD's download between them.
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import { roundAggregationFromWire, type RoundLoraAggregation } from '../proto/model/lora-aggregation';
import { clientOptimizerOf, type ClientOptimizer } from '../proto/model/client-optimizer';
import { planLoraDropout } from './lora-dropout';
import type { ScaffoldRound } from './scaffold-site';
import type { TrainingPlan } from './trainer';

export interface TaskSettings {
  readonly loraAggregation: RoundLoraAggregation;
  readonly optimizer: ClientOptimizer;
}

/** The round's LoRA aggregation and local optimiser, or an error naming what this site does not know. */
export function taskSettings(t: TrainTask__Output): TaskSettings {
  const c = t.config!;
  const loraAggregation = roundAggregationFromWire(c.lora_aggregation);
  if (!loraAggregation) throw new Error(`the coordinator asks for lora aggregation '${c.lora_aggregation}', which this site does not know`);
  return { loraAggregation, optimizer: clientOptimizerOf(c.optimizer, c.momentum) };
}

/** TrainingConfig.flora_rank of a 'flora' task: a positive integer, or the task fails naming it. */
function floraRankOf(r: number): number {
  if (!(Number.isInteger(r) && r >= 1)) throw new Error(`the coordinator asks for lora aggregation 'flora' with flora_rank ${r}; need a positive integer`);
  return r;
}

/** The plan the trainer runs for this task (with SCAFFOLD's correction for a SCAFFOLD round). */
export function trainingPlan(t: TrainTask__Output, s: TaskSettings, scaffold: ScaffoldRound | null): TrainingPlan {
  const c = t.config!;
  return {
    round: t.round,
    taskId: t.task_id,
    localSteps: c.local_steps,
    batchSize: c.batch_size,
    learningRate: c.learning_rate,
    weightDecay: c.weight_decay,
    maxSeqLen: c.max_seq_len,
    proximalMu: c.proximal_mu,
    optimizer: s.optimizer,
    seed: t.seed,
    deadlineUnixMs: t.deadline_unix_ms > 0 ? t.deadline_unix_ms : undefined,
    loraAggregation: s.loraAggregation,
    ...(s.loraAggregation === 'flora' ? { floraRank: floraRankOf(c.flora_rank) } : {}),
    ...(c.lora_alpha > 0 ? { loraAlpha: c.lora_alpha } : {}),
    ...planLoraDropout(c), // a value outside [0, 1) fails the task here, naming lora_dropout
    ...(scaffold ? { scaffold: { correction: scaffold.correction } } : {}),
  };
}
