// The WebGPU engine has no LoRA dropout, and a site learns the round's dropout only from each task plan (the
// coordinator's lora.dropout). So a site built on the engine trains a task whose plan asks for dropout > 0 on
// tfjs instead (the same seeded masks, data order and loss as every tfjs site), says why once, and reports the
// backend that actually trained; tasks with dropout 0 stay on the engine.
import type { TensorList } from '../../proto/tensors';
import type { Trainer, TrainingPlan, TrainOutcome } from '../trainer';
import { ENGINE_DROPOUT_REFUSAL } from '../lora-dropout';

export class EngineDropoutFallback implements Trainer {
  private tfjs?: Trainer;
  private said = false;
  private last: Trainer;

  constructor(
    private readonly engine: Trainer,
    /** Builds the tfjs trainer on first need (the model is already loaded; nothing is built for dropout 0). */
    private readonly makeTfjs: () => Trainer,
    /** Where the reason goes, once per trainer (default: a process warning). */
    private readonly warn: (msg: string) => void = (msg) => process.emitWarning(msg, 'FedtuneEngineFallback'),
  ) {
    this.last = engine;
  }

  /** The backend of the last task trained (the engine's until a task asks for dropout). */
  get backend(): string {
    return this.last.backend;
  }

  train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
    if ((plan.loraDropout ?? 0) > 0) {
      if (!this.said) this.warn(`${ENGINE_DROPOUT_REFUSAL} (round ${plan.round} asks for ${plan.loraDropout})`);
      this.said = true;
      this.last = this.tfjs ??= this.makeTfjs();
    } else {
      this.last = this.engine;
    }
    return this.last.train(global, plan, signal);
  }

  evaluate(adapter: TensorList): Promise<Record<string, number>> {
    // Evaluation never drops out; the engine's is tfjs's held-out evaluation as well.
    return this.engine.evaluate ? this.engine.evaluate(adapter) : Promise.resolve({});
  }
}
