// The optimiser a site trains with locally, which the coordinator chooses and sends in the task plan:
//   'adamw' — Adam with decoupled weight decay, its moments restarted every round (fedtune's default).
//   'sgd'   — plain SGD, w ← w − lr·b with b = momentum·b + g (heavy ball, PyTorch's form without dampening; b
//             restarted every round, so momentum 0 is w ← w − lr·g). Decoupled weight decay shrinks w first, as
//             under AdamW.
// Why SGD: Reddi et al.'s server optimisers (FedAvgM, FedAdam) assume client SGD, whose update is proportional to
// the site's gradient; with client Adam each site's update is roughly lr·sign(gradient), which under label skew
// is dominated by "push my own label" (bench/QUALITY.md).
export const CLIENT_OPTIMIZERS = ['adamw', 'sgd'] as const;
export type ClientOptimizerName = (typeof CLIENT_OPTIMIZERS)[number];

export type ClientOptimizer = { readonly name: 'adamw' } | { readonly name: 'sgd'; readonly momentum: number };

export const ADAMW: ClientOptimizer = { name: 'adamw' };

/**
 * The plan's optimiser as a site reads it: absent or '' (an older coordinator) is AdamW; a name this side does not
 * know, or a momentum outside [0, 1) (or any momentum with AdamW), is refused with a message naming it.
 */
export function clientOptimizerOf(name: string | undefined, momentum: number | undefined): ClientOptimizer {
  const n = name ?? '';
  const m = momentum ?? 0;
  if (n === '' || n === 'adamw') {
    if (m !== 0) throw new Error(`momentum ${m} is for the 'sgd' optimiser; AdamW takes none`);
    return ADAMW;
  }
  if (n === 'sgd') {
    if (!(Number.isFinite(m) && m >= 0 && m < 1)) throw new Error(`bad SGD momentum ${m}: must be a number in [0, 1)`);
    return { name: 'sgd', momentum: m };
  }
  throw new Error(
    `the coordinator asks for client optimizer ${JSON.stringify(n.slice(0, 64))}, which this site does not know (known: ${CLIENT_OPTIMIZERS.join(', ')})`,
  );
}
