// Early stopping over the manifest chain: each version's manifest records the best version so far by the
// configured metric (BestVersionRecord), so the decision is a pure function of the parent's record and the new
// version's metrics. A restarted coordinator reads the same record from the latest manifest and decides the same.
import type { BestVersionRecord } from '../checkpoints/types';

export interface EarlyStoppingSettings {
  readonly metric: string;
  readonly mode: 'min' | 'max';
  readonly patience: number;
  readonly minDelta: number;
}

/**
 * The best record after committing `version` with `metrics`, given the parent's record. A version without the
 * metric keeps the parent's record as it is (it neither improves nor counts against patience). A parent record
 * kept under another metric or mode is not comparable: tracking starts again.
 */
export function nextBest(
  s: EarlyStoppingSettings,
  parent: BestVersionRecord | undefined,
  version: number,
  metrics: Readonly<Record<string, number>>,
): BestVersionRecord | undefined {
  const prior = parent && parent.metric === s.metric && parent.mode === s.mode ? parent : undefined;
  const value = metrics[s.metric];
  if (value === undefined || !Number.isFinite(value)) return prior;
  const fresh: BestVersionRecord = { metric: s.metric, mode: s.mode, version, value, sinceBest: 0 };
  if (!prior) return fresh;
  const improved = s.mode === 'min' ? value < prior.value - s.minDelta : value > prior.value + s.minDelta;
  return improved ? fresh : { ...prior, sinceBest: prior.sinceBest + 1 };
}

/** Why the run stops after a version with this record, or null when it goes on (patience 0 never stops). */
export function stopReason(s: EarlyStoppingSettings, best: BestVersionRecord | undefined): string | null {
  if (s.patience === 0 || !best || best.metric !== s.metric || best.mode !== s.mode || best.sinceBest < s.patience) return null;
  const better = s.mode === 'min' ? 'fallen' : 'risen';
  const by = s.minDelta > 0 ? ` by more than ${s.minDelta}` : '';
  return `early stopping: ${s.metric} has not ${better}${by} for ${best.sinceBest} evaluated versions since v${best.version} (${s.metric} ${best.value}); patience ${s.patience}`;
}
