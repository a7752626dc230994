// A plain-text table of versions for `fedtune checkpoints list`, with what retention removed from each (its
// pruned.json, read as a version read reads it: `fedtune verify` is what checks the record's signature).
import * as path from 'node:path';
import { ADAPTER_WEIGHTS, prunedFiles } from './pruned-record';
import { CheckpointIntegrityError, versionDirName } from './run-layout';
import { SERVER_STATE_FILE } from './server-state';
import type { Manifest } from './types';

/** Per version, the files its pruned.json names; null when the record does not parse (`fedtune verify` says why). */
export type PrunedByVersion = ReadonlyMap<number, ReadonlySet<string> | null>;

export async function prunedByVersion(runDir: string, manifests: readonly Manifest[]): Promise<PrunedByVersion> {
  const out = new Map<number, ReadonlySet<string> | null>();
  for (const m of manifests) {
    try {
      out.set(m.version, await prunedFiles(path.join(runDir, 'versions', versionDirName(m.version)), m.version));
    } catch (e) {
      if (!(e instanceof CheckpointIntegrityError)) throw e;
      out.set(m.version, null);
    }
  }
  return out;
}

/**
 * 'adapter' when the adapter (and its average) went, 'state' when the server state went, both joined by '+';
 * '-' when nothing was pruned; '?' when the record does not parse.
 */
function prunedCell(files: ReadonlySet<string> | null | undefined): string {
  if (files === null) return '?';
  const gone = [ADAPTER_WEIGHTS.some((f) => files?.has(f)) ? 'adapter' : '', files?.has(SERVER_STATE_FILE) ? 'state' : ''].filter(Boolean);
  return gone.length ? gone.join('+') : '-';
}

const num = (x: number | undefined, digits = 4): string => (x === undefined ? '-' : x.toFixed(digits));

/** ε at δ spent up to this version (privacy.enabled runs); '-' without DP, 'inf' when unbounded. */
function epsilonCell(m: Manifest): string {
  if (!m.privacy) return '-';
  if (m.privacy.epsilon === null) return 'inf';
  // A noise multiplier near 0 (a noiseless twin) gives an ε in the billions: exponent form keeps the column readable.
  const e = m.privacy.epsilon;
  return `${e >= 1e6 ? e.toExponential(2) : e.toFixed(3)}@${m.privacy.delta}`;
}

/** The round's clip norm C under DP (adaptive clipping's C_t when on), 4 significant digits; '-' without DP. */
function clipCell(m: Manifest): string {
  const c = m.privacy?.clipNorm;
  return typeof c === 'number' ? c.toPrecision(4) : '-';
}

export function formatVersionTable(manifests: readonly Manifest[], pruned: PrunedByVersion = new Map()): string {
  const rows = [
    [
      'version',
      'round',
      'attempt',
      'clients',
      'examples',
      'train_loss',
      'eval_loss',
      'eval_acc',
      'heldout_loss',
      'heldout_acc',
      'best',
      'epsilon',
      'clip',
      'pruned',
      'created',
    ],
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
      clipCell(m),
      prunedCell(pruned.get(m.version)),
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
