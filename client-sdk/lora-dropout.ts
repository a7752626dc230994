// LoRA dropout is the coordinator's setting (its lora.dropout), carried in every task plan, so all sites of a
// round train with the same regularisation and the manifest can say which. A site applies it with masks hashed
// from the task's seed and the step (client-sdk/model/dropout-mask.ts; the tfjs trainer and the WebGPU engine draw
// the same ones), so a round stays reproducible from its manifest.
// Kept apart from the tfjs trainer: the client checks the wire value here without loading any ML runtime.
import type { TrainingPlan } from './trainer';

/** A dropout probability in [0, 1), or an error naming the setting and the value. */
export function checkLoraDropout(p: number, from: string): number {
  if (!(p >= 0 && p < 1)) throw new Error(`${from} lora_dropout ${p}: LoRA dropout must be in [0, 1)`);
  return p;
}

/**
 * The plan's loraDropout from the task's wire fields: absent when the coordinator does not state one (an older
 * coordinator); a value outside [0, 1) is refused by name before anything trains.
 */
export function planLoraDropout(c: { readonly lora_dropout: number; readonly lora_dropout_stated: boolean }): Pick<TrainingPlan, 'loraDropout'> {
  return c.lora_dropout_stated ? { loraDropout: checkLoraDropout(c.lora_dropout, 'the coordinator asks for') } : {};
}

/** The dropout a trainer applies to a task: the plan's when it states one, else the trainer's own setting. */
export function taskLoraDropout(plan: TrainingPlan, own: number): number {
  return plan.loraDropout === undefined ? own : checkLoraDropout(plan.loraDropout, 'the task plan has');
}
