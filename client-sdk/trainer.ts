// The Trainer is the seam between the federation (client.ts) and a model: receive → train → send.
// fedtune's LoRA-on-GPT-2 trainer implements it (client-sdk/sft/lora-trainer.ts); any other model can too.
import type { NamedTensor, TensorList } from '../proto/tensors';
import type { RoundLoraAggregation } from '../proto/model/lora-aggregation';
import type { ClientOptimizer } from '../proto/model/client-optimizer';

export interface TrainingPlan {
  /** Federated round and this client's task in it. */
  readonly round: number;
  readonly taskId: string;
  /** Optimiser steps to take locally this round. */
  readonly localSteps: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly weightDecay: number;
  readonly maxSeqLen: number;
  /**
   * FedProx: μ of the proximal term μ/2·‖w − w_global‖² to add to the local loss (0 or absent: none). A trainer
   * that cannot honour μ > 0 must refuse the round rather than ignore it.
   */
  readonly proximalMu?: number;
  /**
   * The local optimiser (absent: AdamW, restarted each round). A trainer that cannot run the one asked for must
   * refuse the round rather than train with another (proto/model/client-optimizer.ts).
   */
  readonly optimizer?: ClientOptimizer;
  /** Seed for shuffling and dropout, chosen by the coordinator and recorded in the manifest. */
  readonly seed: number;
  /**
   * When the coordinator stops taking this round's uploads (unix ms, the coordinator's clock). The SDK aborts
   * `signal` a little before it (leaving time to upload); a trainer may also plan fewer steps to finish in time.
   */
  readonly deadlineUnixMs?: number;
  /**
   * The round's LoRA aggregation (absent: 'fedit'). Under 'ffa' (FFA-LoRA) every lora_A tensor is frozen: the
   * trainer must return it bit-identical (only lora_B trains), or the SDK fails the task rather than upload.
   */
  readonly loraAggregation?: RoundLoraAggregation;
  /** The global adapter's lora_alpha, when the coordinator states it (a smaller-rank site rescales by it). */
  readonly loraAlpha?: number;
  /**
   * Under 'flora': the rank of the round's fresh LoRA (the coordinator's lora.r; loraAlpha is its alpha). The global
   * adapter is then the version's stack (scaling 1), which the trainer trains on top of, and the outcome's adapter
   * is the fresh factors, lora_B times the site's scaling, zero-padded to this rank (client-sdk/sft/flora-site.ts).
   */
  readonly floraRank?: number;
  /**
   * LoRA dropout on the adapter's input while training (the coordinator's lora.dropout; absent from an older
   * coordinator: the trainer's own setting). Masks come from `seed`. A trainer that cannot apply p > 0 must
   * refuse the round (or hand it to one that can) rather than ignore it.
   */
  readonly loraDropout?: number;
  /**
   * SCAFFOLD (client-sdk/scaffold-site.ts): c − c_i for every trained tensor, to add to each local gradient. A
   * trainer given it must return meanGradient (or refuse the round); one that cannot must refuse rather than ignore it.
   */
  readonly scaffold?: { readonly correction: TensorList };
}

export interface TrainOutcome {
  /** The adapter after local training, same layout as the global adapter it started from. */
  readonly adapter: NamedTensor[];
  /** Weight of this update in FedAvg (examples seen in local training). */
  readonly numExamples: number;
  /** e.g. train_loss, train_tokens, train_seconds. */
  readonly metrics: Record<string, number>;
  /** The LoRA rank trained, when below the global adapter's (the adapter is then zero-padded to it). */
  readonly loraRank?: number;
  /** SCAFFOLD rounds: the mean of the raw loss gradients over the steps taken (the site's next c_i), and how many. */
  readonly meanGradient?: { readonly tensors: NamedTensor[]; readonly steps: number };
}

/**
 * One local optimiser step done, for progress output (client-sdk/site/progress.ts). `step` counts from 1 to
 * `total` (plan.localSteps); `loss` is that step's loss. A trainer may report only some steps (the WebGPU engine
 * reports when a loss read-back completes, every few steps and the last), never out of order.
 */
export interface TrainStep {
  readonly step: number;
  readonly total: number;
  readonly loss: number;
}

export interface EvaluateOptions {
  /**
   * The adapter is a FLoRA stack (lora.aggregation 'flora'): evaluate it at scaling 1 (lora_alpha = its rank), not
   * at the run's alpha. A trainer that cannot must throw rather than score it at another scaling.
   */
  readonly stack?: boolean;
}

export interface Trainer {
  /** Name of the compute backend (e.g. "wasm", "webgpu", "tensorflow"), reported to the coordinator. */
  readonly backend: string;
  /**
   * Train from `global` for one round; must leave `global` unmodified. `onStep`, when given, hears about steps
   * as they finish; it must not change what is trained (a trainer reads the loss for it without waiting on it).
   */
  train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal, onStep?: (s: TrainStep) => void): Promise<TrainOutcome>;
  /**
   * Evaluate an adapter on the client's local held-out data (optional). For federated evaluation
   * (client-sdk/evaluate-task.ts) the result must carry eval_loss and eval_examples (and may carry eval_accuracy
   * in [0, 1]); without them the site declines to evaluate.
   */
  evaluate?(adapter: TensorList, opts?: EvaluateOptions): Promise<Record<string, number>>;
}
