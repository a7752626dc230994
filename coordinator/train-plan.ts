// The task a selected site is sent: the round's training plan (steps, batch, the scheduled learning rate,
// FedProx's μ, the local optimiser, the LoRA aggregation mode and dropout), its base version, seed and deadline, and the SecAgg settings when the
// attempt runs under secure aggregation. The manifest records the same plan (clientTraining).
import type { Checkpoint, ClientTrainingRecord } from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import { roundAggregation } from './lora-aggregation';
import { clientTrainingFor, optimizerWire } from './client-training';
import type { Task } from './task';
import type { SecAggAttempt } from './secagg-attempt';

/** What a round's sites train with (client-training.ts): the scheduled learning rate, FedProx's μ, LoRA dropout, the optimiser. */
export function clientTraining(cfg: CoordinatorConfig, round: number): ClientTrainingRecord {
  return clientTrainingFor(cfg, round);
}

export interface TrainTaskFields {
  readonly taskId: string;
  readonly round: number;
  readonly attempt: number;
  readonly base: Checkpoint;
  readonly deadline: number;
  readonly seed: number;
  readonly secagg: SecAggAttempt | undefined;
}

/** The TrainTask as it goes on the wire (the fields a site's upload is bound to derive from it). */
export function trainTask(cfg: CoordinatorConfig, adapterConfig: Record<string, unknown>, f: TrainTaskFields): Task['wire'] {
  const tr = cfg.training;
  const lora = cfg.lora;
  const plan = clientTraining(cfg, f.round);
  return {
    task_id: f.taskId,
    round: f.round,
    attempt: f.attempt,
    base_version: f.base.manifest.version,
    base_manifest_sha256: f.base.manifestSha256,
    deadline_unix_ms: f.deadline,
    seed: f.seed,
    secagg: f.secagg?.settings,
    config: {
      local_steps: tr.localSteps,
      batch_size: tr.batchSize,
      learning_rate: plan.learningRate,
      weight_decay: tr.weightDecay,
      max_seq_len: tr.maxSeqLen,
      proximal_mu: plan.proximalMu,
      ...optimizerWire(plan),
      lora_aggregation: roundAggregation(cfg),
      lora_alpha: typeof adapterConfig.lora_alpha === 'number' ? adapterConfig.lora_alpha : lora.alpha,
      // 'flora': the rank of each round's fresh LoRA (lora.alpha above is its alpha; the version is a stack of its own).
      flora_rank: roundAggregation(cfg) === 'flora' ? lora.r : 0,
      lora_dropout: plan.loraDropout,
      lora_dropout_stated: true,
      scaffold: cfg.strategy.name === 'scaffold',
    },
  };
}
