// The sites' update norms in a quality cell (bench/quality-cell.ts): each site's trainer reports ‖local − global‖₂
// beside its loss, and the manifest carries their example-weighted mean. That is the figure DP's clip norm C is set
// against, and the signal its noise is judged by (bench/QUALITY.md, run 11).
import type { Trainer } from '../client-sdk/trainer';

/** The manifest metric: the example-weighted mean of the sites' update_norm (only sites whose report came in time). */
export const UPDATE_NORM = 'clients.update_norm';

/** `t` reporting its update's L2 norm in the outcome's metrics (update_norm); training itself untouched. */
export function withUpdateNorm(t: Trainer): Trainer {
  const train: Trainer['train'] = async (global, plan, signal, onStep) => {
    const out = await t.train(global, plan, signal, onStep);
    const before = new Map(global.map((g) => [g.name, g.data]));
    let ss = 0;
    for (const a of out.adapter) {
      const g = before.get(a.name);
      if (g) for (let i = 0; i < a.data.length; i++) ss += (a.data[i] - g[i]) ** 2;
    }
    return { ...out, metrics: { ...out.metrics, update_norm: Math.sqrt(ss) } };
  };
  // The rest of the trainer (backend, evaluate, dispose) as it is, its methods bound to the original.
  return new Proxy(t, {
    get: (target, key) => {
      if (key === 'train') return train;
      const v: unknown = Reflect.get(target, key, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
