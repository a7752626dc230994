// The `training` section of the coordinator's configuration schema, spread into config-schema.ts: the sites' local
// training each round (steps, batch, learning rate and its schedule, FedProx, the local optimiser), sent in the task
// plan (train-plan.ts, client-training.ts; the rate by round in lr-schedule.ts).

export const trainingSchema = {
  training: {
    localSteps: {
      doc: "Optimiser steps per client per round (default 1: the default recipe's FedSGD, one step a round, so the round's mean update is the pooled data's gradient).",
      format: 'positive-int',
      default: 1,
      env: 'FEDTUNE_TRAINING_LOCAL_STEPS',
      arg: 'training.localSteps',
    },
    batchSize: {
      doc: "Examples per local step (default 32, the default recipe's).",
      format: 'positive-int',
      default: 32,
      env: 'FEDTUNE_TRAINING_BATCH_SIZE',
      arg: 'training.batchSize',
    },
    learningRate: {
      doc: "The clients' learning rate (the peak of training.schedule; each round's rate is sent in its task). Default 1 with the default recipe's one SGD step: a scale, not a step (the update is −1 × the gradient; FedAdam's rate is the step).",
      format: 'positive-number',
      default: 1,
      env: 'FEDTUNE_TRAINING_LEARNING_RATE',
      arg: 'training.learningRate',
    },
    weightDecay: {
      doc: 'Decoupled weight decay on LoRA tensors.',
      format: 'non-negative-number',
      default: 0,
      env: 'FEDTUNE_TRAINING_WEIGHT_DECAY',
      arg: 'training.weightDecay',
    },
    maxSeqLen: {
      doc: 'Tokens per training sequence (prompt + completion).',
      format: 'positive-int',
      default: 96,
      env: 'FEDTUNE_TRAINING_MAX_SEQ_LEN',
      arg: 'training.maxSeqLen',
    },
    proximalMu: {
      doc: "FedProx: μ of the proximal term μ/2·‖w − w_global‖² added to each site's local loss (0: off).",
      format: 'non-negative-number',
      default: 0,
      env: 'FEDTUNE_TRAINING_PROXIMAL_MU',
      arg: 'training.proximalMu',
    },
    schedule: {
      doc: "Client learning rate by round: 'constant' (training.learningRate) or 'cosine' (decays to training.minLearningRate by the last round).",
      format: ['constant', 'cosine'],
      default: 'constant',
      env: 'FEDTUNE_TRAINING_SCHEDULE',
      arg: 'training.schedule',
    },
    warmupRounds: {
      doc: 'Rounds of linear warm-up before the schedule: round r ≤ k trains at learningRate·r/k (0: none).',
      format: 'non-negative-int',
      default: 0,
      env: 'FEDTUNE_TRAINING_WARMUP_ROUNDS',
      arg: 'training.warmupRounds',
    },
    minLearningRate: {
      doc: "Floor of the 'cosine' schedule (at most training.learningRate).",
      format: 'non-negative-number',
      default: 0,
      env: 'FEDTUNE_TRAINING_MIN_LEARNING_RATE',
      arg: 'training.minLearningRate',
    },
    optimizer: {
      doc: "The sites' local optimiser, restarted each round: 'adamw' (Adam, decoupled weight decay) or 'sgd' (plain SGD, with training.momentum; the default recipe's).",
      format: ['adamw', 'sgd'],
      default: 'sgd',
      env: 'FEDTUNE_TRAINING_OPTIMIZER',
      arg: 'training.optimizer',
    },
    momentum: {
      doc: "Heavy-ball momentum of training.optimizer 'sgd' in [0, 1) (0: none); its buffer restarts each round.",
      format: 'probability',
      default: 0,
      env: 'FEDTUNE_TRAINING_MOMENTUM',
      arg: 'training.momentum',
    },
  },
} as const;
