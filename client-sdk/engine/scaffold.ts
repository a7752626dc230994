// SCAFFOLD on the engine (plan.scaffold; the tfjs side is sft/scaffold-local.ts): the correction c − c_i laid out
// over the engine's flat adapter, which the update kernel adds to every step's gradient (optimizer.ts), and the
// outcome's mean gradient from the device's gradient sum.
import type { TensorList } from '../../proto/tensors';
import { parsePeftKey, peftKey } from '../../proto/model/lora-layout';
import { isTrainable } from '../../proto/model/lora-aggregation';
import type { TrainingPlan, TrainOutcome } from '../trainer';

/** c − c_i over the engine's flat layout (`start`, canonical names); zeros for tensors it does not cover (frozen). */
export function flatCorrection(start: TensorList, correction: TensorList): Float32Array {
  const byName = new Map(
    correction.map((t) => {
      const k = parsePeftKey(t.name);
      return [k ? peftKey(k.path, k.which) : t.name, t];
    }),
  );
  const flat = new Float32Array(start.reduce((a, t) => a + t.data.length, 0));
  let at = 0;
  for (const t of start) {
    const c = byName.get(t.name);
    if (c) {
      if (c.data.length !== t.data.length)
        throw new Error(`SCAFFOLD: the control variate of ${t.name} holds ${c.data.length} values; the tensor has ${t.data.length}`);
      flat.set(c.data, at);
    }
    at += t.data.length;
  }
  return flat;
}

/** The device's gradient sum `sum` (flat) over the round's steps, divided by them, per trained tensor (spelled as global). */
export function meanGradientOf(
  sum: Float32Array,
  start: TensorList,
  spelled: ReadonlyMap<string, string>,
  plan: TrainingPlan,
  steps: number,
): TrainOutcome['meanGradient'] {
  const mode = plan.loraAggregation ?? 'fedit';
  const tensors = [];
  let at = 0;
  for (const t of start) {
    if (isTrainable(t.name, mode)) {
      const data = new Float32Array(t.data.length);
      if (steps > 0) for (let j = 0; j < data.length; j++) data[j] = sum[at + j] / steps;
      tensors.push({ name: spelled.get(t.name) ?? t.name, dtype: 'float32' as const, shape: [...t.shape], data });
    }
    at += t.data.length;
  }
  return { tensors, steps };
}
