// Sites that score their validation split only for the federated evaluation of a candidate, not after each round's
// training as well. The SDK calls a trainer's evaluate() in both places (client-sdk/client.ts: right after the
// upload, on the site's own trained adapter, for its reported metrics; client-sdk/evaluate-task.ts: on the candidate,
// for evaluation.*). Over 600 one-step rounds the former costs 600 validation passes a site, about half the CPU of
// its training, for figures nobody reads: `npm run demo` skips them when it scores the held-out set every k > 1
// rounds, as the quality benchmark that measured its recipe did (bench/quality-cell.ts). Training, the candidates
// and their figures are untouched: evaluate() of the very adapter object train() returned answers no figures;
// every other one runs.
import type { Trainer } from '../trainer';

export function withCandidateEvalOnly(t: Trainer): Trainer {
  // The adapter object the last train() returned: the SDK evaluates exactly that object after training, and a
  // downloaded candidate is always another one.
  let trained: unknown = null;
  const train: Trainer['train'] = async (global, plan, signal, onStep) => {
    const out = await t.train(global, plan, signal, onStep);
    trained = out.adapter;
    return out;
  };
  // A candidate's options (a FLoRA stack: opts.stack) pass through.
  const evaluate: NonNullable<Trainer['evaluate']> = async (adapter, opts) => (adapter === trained ? {} : t.evaluate!(adapter, opts));
  return new Proxy(t, {
    get: (target, key) => {
      if (key === 'train') return train;
      if (key === 'evaluate') return target.evaluate ? evaluate : undefined;
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
