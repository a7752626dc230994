// What a round's sites are told to train with, beyond steps and batch: the scheduled learning rate
// (lr-schedule.ts), FedProx's μ, LoRA dropout and the local optimiser (proto/model/client-optimizer.ts). One function gives both
// the task plan's fields and the manifest's record, so what was sent is what is recorded.
import type { CoordinatorConfig, TrainingSettings } from './config-types';
import type { ClientTrainingRecord } from './checkpoints/types';
import { roundLearningRate } from './lr-schedule';

export function clientTrainingFor(cfg: Pick<CoordinatorConfig, 'training' | 'rounds' | 'lora'>, round: number): ClientTrainingRecord {
  const t = cfg.training;
  return {
    learningRate: roundLearningRate(t, cfg.rounds.total, round),
    proximalMu: t.proximalMu,
    loraDropout: cfg.lora.dropout,
    optimizer: t.optimizer,
    ...(t.optimizer === 'sgd' ? { momentum: t.momentum } : {}),
  };
}

/** TrainingConfig's optimiser fields (80-89) for a round's plan. */
export function optimizerWire(r: ClientTrainingRecord): { optimizer: string; momentum: number } {
  return { optimizer: r.optimizer ?? 'adamw', momentum: r.momentum ?? 0 };
}

/** Cross-key check: momentum belongs to SGD; with AdamW it would be silently ignored, so it is refused. */
export function clientOptimizerProblems(t: Pick<TrainingSettings, 'optimizer' | 'momentum'>): string[] {
  return t.optimizer !== 'sgd' && t.momentum !== 0
    ? [`training.momentum (${t.momentum}) applies to training.optimizer 'sgd' only (training.optimizer is '${t.optimizer}')`]
    : [];
}
