// Configuration keys of federated evaluation and early stopping, spread into config-schema.ts. Two sections of
// their own (the schema has two levels: section.key): `evaluation.*` says who evaluates each candidate version
// and how long the coordinator waits; `earlyStopping.*` which metric picks the best version and when to stop.
import type { CoordinatorConfig } from '../config-types';

export const evalStopSchema = {
  evaluation: {
    enabled: {
      doc: 'Federated evaluation: before each version commits, selected sites evaluate it on their validation split; the example-weighted loss/accuracy go into its manifest (eval.loss, eval.accuracy).',
      format: Boolean,
      default: false,
      env: 'FEDTUNE_EVALUATION_ENABLED',
      arg: 'evaluation.enabled',
    },
    everyRounds: {
      doc: 'Evaluate every k-th round (round % k = 0).',
      format: 'positive-int',
      default: 1,
      env: 'FEDTUNE_EVALUATION_EVERY_ROUNDS',
      arg: 'evaluation.everyRounds',
    },
    sites: {
      doc: "Who may be asked: 'participants' (the round's sites still connected, or away less than rounds.reconnectGraceMs) or 'connected' (every connected site).",
      format: ['participants', 'connected'],
      default: 'participants',
      env: 'FEDTUNE_EVALUATION_SITES',
      arg: 'evaluation.sites',
    },
    fraction: {
      doc: 'Share of those sites asked (seeded choice), in (0, 1]; never fewer than evaluation.minSites.',
      format: 'unit-fraction',
      default: 1,
      env: 'FEDTUNE_EVALUATION_FRACTION',
      arg: 'evaluation.fraction',
    },
    minSites: {
      doc: 'Reports (with examples) needed for figures; fewer and the version commits without them.',
      format: 'positive-int',
      default: 1,
      env: 'FEDTUNE_EVALUATION_MIN_SITES',
      arg: 'evaluation.minSites',
    },
    deadlineMs: {
      doc: 'How long the coordinator waits for evaluation reports before committing with those it has (ms).',
      format: 'positive-int',
      default: 60000,
      env: 'FEDTUNE_EVALUATION_DEADLINE_MS',
      arg: 'evaluation.deadlineMs',
    },
  },
  earlyStopping: {
    metric: {
      doc: 'Manifest metric that picks the best version and the release pointer: eval.loss, eval.accuracy, heldout.eval_loss, … (a version without it is skipped).',
      format: 'metric-name',
      default: 'eval.loss',
      env: 'FEDTUNE_EARLY_STOPPING_METRIC',
      arg: 'earlyStopping.metric',
    },
    mode: {
      doc: "'min' (lower is better, e.g. a loss) or 'max' (e.g. an accuracy).",
      format: ['min', 'max'],
      default: 'min',
      env: 'FEDTUNE_EARLY_STOPPING_MODE',
      arg: 'earlyStopping.mode',
    },
    patience: {
      doc: 'Stop the run after this many versions carrying the metric without improvement (0: never stop; the best version is still tracked).',
      format: 'non-negative-int',
      default: 0,
      env: 'FEDTUNE_EARLY_STOPPING_PATIENCE',
      arg: 'earlyStopping.patience',
    },
    minDelta: {
      doc: 'An improvement must beat the best value by more than this.',
      format: 'non-negative-number',
      default: 0,
      env: 'FEDTUNE_EARLY_STOPPING_MIN_DELTA',
      arg: 'earlyStopping.minDelta',
    },
    window: {
      doc: 'Compare the mean of the metric over the last this many versions carrying it, a new best naming the middle one of them (1: each version on its own figure). Over 27 runs (bench/QUALITY.md runs 16b, 19 and 20) a window of 5 did no better than 1.',
      format: 'positive-int',
      default: 1,
      env: 'FEDTUNE_EARLY_STOPPING_WINDOW',
      arg: 'earlyStopping.window',
    },
  },
} as const;

/** Cross-key problems (config.ts adds them to its list). */
export function evalStopProblems(cfg: CoordinatorConfig): string[] {
  const out: string[] = [];
  if (cfg.earlyStopping.patience > 0 && cfg.earlyStopping.metric.startsWith('eval.') && !cfg.evaluation.enabled) {
    out.push(`earlyStopping.metric ${cfg.earlyStopping.metric} comes from federated evaluation: set evaluation.enabled (or pick a heldout.* metric)`);
  }
  return out;
}
