// A plain-text table of versions for `fedtune checkpoints list`.
import type { Manifest } from './types';

const num = (x: number | undefined, digits = 4): string => (x === undefined ? '-' : x.toFixed(digits));

/** ε at δ spent up to this version (privacy.enabled runs); '-' without DP, 'inf' when unbounded. */
function epsilonCell(m: Manifest): string {
  if (!m.privacy) return '-';
  if (m.privacy.epsilon === null) return 'inf';
  // A noise multiplier near 0 (a noiseless twin) gives an ε in the billions: exponent form keeps the column readable.
  const e = m.privacy.epsilon;
  return `${e >= 1e6 ? e.toExponential(2) : e.toFixed(3)}@${m.privacy.delta}`;
}

export function formatVersionTable(manifests: readonly Manifest[]): string {
  const rows = [
    ['version', 'round', 'attempt', 'clients', 'examples', 'train_loss', 'eval_loss', 'eval_acc', 'heldout_loss', 'heldout_acc', 'best', 'epsilon', 'created'],
  ];
  for (const m of manifests) {
    rows.push([
      `v${m.version}`,
      String(m.round),
      String(m.attempt),
      // A Poisson-sampled DP round publishes neither who nor how many took part (privacy/sampling.ts).
      m.privacy?.sampling ? 'hidden' : String(m.participants.length),
      m.secureAggregation || m.privacy?.sampling ? 'hidden' : String(m.participants.reduce((s, p) => s + (p.numExamples ?? 0), 0)),
      num(m.metrics['clients.train_loss']),
      // Federated evaluation: sites' validation figures, example-weighted (evaluation.*).
      num(m.metrics['eval.loss']),
      num(m.metrics['eval.accuracy'], 3),
      num(m.metrics['heldout.eval_loss']),
      num(m.metrics['heldout.eval_accuracy'], 3),
      m.best ? `v${m.best.version}` : '-',
      epsilonCell(m),
      m.createdAt,
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) =>
      r
        .map((cell, c) => cell.padEnd(widths[c]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
