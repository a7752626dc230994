// The WebGPU engine's update kernels (engine/optimizer.ts) have no SCAFFOLD control variates, so a site built on
// the engine trains a task whose plan carries plan.scaffold on tfjs instead (the same data order, loss and
// optimiser rule), says why once, and reports the backend that actually trained; other tasks stay on the engine.
import type { TensorList } from '../../proto/tensors';
import type { Trainer, TrainingPlan, TrainOutcome, TrainStep } from '../trainer';

export const ENGINE_SCAFFOLD_REFUSAL = 'the WebGPU engine has no SCAFFOLD control variates: SCAFFOLD tasks train on tfjs';

export class EngineScaffoldFallback implements Trainer {
  private tfjs?: Trainer;
  private said = false;
  private last: Trainer;

  constructor(
    private readonly engine: Trainer,
    /** Builds the tfjs trainer on first need (the model is already loaded). */
    private readonly makeTfjs: () => Trainer,
    private readonly warn: (msg: string) => void = (msg) => process.emitWarning(msg, 'FedtuneEngineFallback'),
  ) {
    this.last = engine;
  }

  get backend(): string {
    return this.last.backend;
  }

  train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal, onStep?: (s: TrainStep) => void): Promise<TrainOutcome> {
    if (plan.scaffold) {
      if (!this.said) this.warn(`${ENGINE_SCAFFOLD_REFUSAL} (round ${plan.round})`);
      this.said = true;
      this.last = this.tfjs ??= this.makeTfjs();
    } else {
      this.last = this.engine;
    }
    return this.last.train(global, plan, signal, onStep);
  }

  evaluate(adapter: TensorList): Promise<Record<string, number>> {
    return this.engine.evaluate ? this.engine.evaluate(adapter) : Promise.resolve({});
  }
}
