// SCAFFOLD at the site, around one training task (client.ts): before training, the server's c (downloaded for
// the task's base version) and the site's own c_i (its ControlVariateStore, per run id; zeros for a new site)
// give the correction c − c_i that the trainer adds to every local gradient (TrainingPlan.scaffold). After
// training, c_i⁺ is the mean of the raw local gradients (TrainOutcome.meanGradient: the paper's option II,
// see sft/scaffold-local.ts), Δc_i = c_i⁺ − c_i rides in the same sealed upload as extra tensors
// (`scaffold.dc/<tensor>`), and c_i⁺ replaces c_i in the store once the coordinator has accepted the upload.
import { CONTROL_DELTA_PREFIX } from '../proto/model/scaffold';
import { sortByName, type NamedTensor, type TensorList } from '../proto/tensors';
import type { TrainOutcome } from './trainer';

export interface ScaffoldRound {
  /** c − c_i per trained tensor, for TrainingPlan.scaffold. */
  readonly correction: NamedTensor[];
  /** From the trainer's outcome: the Δc tensors to upload and c_i⁺ to keep once the upload is accepted. */
  finish(out: TrainOutcome): { readonly controlDeltas: NamedTensor[]; readonly next: NamedTensor[] };
}

const sameLayout = (a: TensorList, b: TensorList): boolean =>
  a.length === b.length && a.every((t, i) => t.name === b[i].name && t.shape.join(',') === b[i].shape.join(','));

/**
 * `trained`: the global adapter's tensors this round trains (sorted); `c`: the downloaded server control
 * variate; `ci`: the site's stored one, or null. A stored c_i of another layout (a different adapter) is set
 * aside with a warning and the site starts again from 0.
 */
export function beginScaffoldRound(trained: TensorList, c: TensorList, ci: TensorList | null, warn: (msg: string) => void): ScaffoldRound {
  const cs = sortByName(c);
  if (!sameLayout(cs, trained))
    throw new Error(`the coordinator's SCAFFOLD control variate has ${cs.length} tensors not matching the ${trained.length} trained ones`);
  for (const t of cs)
    for (let j = 0; j < t.data.length; j++)
      if (!Number.isFinite(t.data[j])) throw new Error(`the coordinator's SCAFFOLD control variate ${t.name}[${j}] is ${t.data[j]}`);
  let mine = ci ? sortByName(ci) : null;
  if (mine && !sameLayout(mine, trained)) {
    warn("the stored SCAFFOLD control variate does not match this run's adapter: starting again from c_i = 0");
    mine = null;
  }
  const start = mine ?? trained.map((t) => ({ name: t.name, dtype: 'float32' as const, shape: [...t.shape], data: new Float32Array(t.data.length) }));
  const correction = cs.map((t, k) => {
    const data = new Float32Array(t.data.length);
    for (let j = 0; j < data.length; j++) data[j] = t.data[j] - start[k].data[j];
    return { name: t.name, dtype: 'float32' as const, shape: [...t.shape], data };
  });
  return {
    correction,
    finish(out) {
      if (!out.meanGradient) throw new Error('the trainer returned no mean gradient for a SCAFFOLD task: it cannot take part in SCAFFOLD rounds');
      const { steps } = out.meanGradient;
      const mean = sortByName(out.meanGradient.tensors);
      if (!sameLayout(mean, trained)) throw new Error("the trainer's mean gradient does not have the trained tensors' layout");
      // No step taken (only empty completions): nothing learned about the gradient, c_i stays.
      const next = steps > 0 ? mean : start;
      const controlDeltas = next.map((t, k) => {
        const data = new Float32Array(t.data.length);
        for (let j = 0; j < data.length; j++) data[j] = t.data[j] - start[k].data[j];
        return { name: CONTROL_DELTA_PREFIX + t.name, dtype: 'float32' as const, shape: [...t.shape], data };
      });
      return { controlDeltas, next };
    },
  };
}
