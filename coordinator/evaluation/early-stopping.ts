// Early stopping over the manifest chain: each version's manifest records the best version so far by the
// configured metric (BestVersionRecord), so the decision is a pure function of the parent's record and the new
// version's metrics. A restarted coordinator reads the same record from the latest manifest and decides the same.
//
// earlyStopping.window w > 1 compares the mean of the metric over the last w versions carrying it, and a new best
// names the middle version of that window (a centred moving average, so the pick does not lag). Why: one
// evaluation is a sample of a few hundred validation examples, and a smooth run's figures jitter by an example or
// two between evaluations; the best single figure is then partly the luckiest sample. Measured (bench/QUALITY.md,
// run 19): on 9 fresh runs a window of 5 released within 0.5 point of the best held-out score as often as 1 did.
// The record carries the window's raw figures, so the decision still needs nothing but the parent's manifest.
import type { BestVersionRecord } from '../checkpoints/types';

export interface EarlyStoppingSettings {
  readonly metric: string;
  readonly mode: 'min' | 'max';
  readonly patience: number;
  readonly minDelta: number;
  /** Versions carrying the metric whose mean is compared (absent or 1: each version's own figure). */
  readonly window?: number;
}

const windowOf = (w: number | undefined): number => (w !== undefined && w > 1 ? w : 1);

/**
 * The best record after committing `version` with `metrics`, given the parent's record. A version without the
 * metric keeps the parent's record as it is (it neither improves nor counts against patience). A parent record
 * kept under another metric, mode or window is not comparable: tracking starts again.
 */
export function nextBest(
  s: EarlyStoppingSettings,
  parent: BestVersionRecord | undefined,
  version: number,
  metrics: Readonly<Record<string, number>>,
): BestVersionRecord | undefined {
  const w = windowOf(s.window);
  const prior = parent && parent.metric === s.metric && parent.mode === s.mode && windowOf(parent.window) === w ? parent : undefined;
  const raw = metrics[s.metric];
  if (raw === undefined || !Number.isFinite(raw)) return prior;
  let value = raw;
  let named = version;
  let smoothing: Pick<BestVersionRecord, 'window' | 'recent'> = {};
  if (w > 1) {
    // The last w figures, this one included; while fewer have been seen (the run's start), those there are.
    const recent = [...(prior?.recent ?? []), { version, value: raw }].slice(-w);
    value = recent.reduce((a, r) => a + r.value, 0) / recent.length;
    named = recent[Math.floor((recent.length - 1) / 2)].version;
    smoothing = { window: w, recent };
  }
  const fresh: BestVersionRecord = { metric: s.metric, mode: s.mode, version: named, value, sinceBest: 0, ...smoothing };
  if (!prior) return fresh;
  const improved = s.mode === 'min' ? value < prior.value - s.minDelta : value > prior.value + s.minDelta;
  return improved ? fresh : { ...prior, sinceBest: prior.sinceBest + 1, ...(w > 1 ? { recent: smoothing.recent } : {}) };
}

/**
 * Whether the commit of `version` set this record (the release pointer then follows it). Under a window the best
 * names an earlier version, so "set by this commit" is read off the record's newest figure, not its version.
 */
export function bestSetBy(best: BestVersionRecord | undefined, version: number): boolean {
  if (!best || best.sinceBest !== 0) return false;
  return best.recent ? best.recent[best.recent.length - 1]?.version === version : best.version === version;
}

/** Why the run stops after a version with this record, or null when it goes on (patience 0 never stops). */
export function stopReason(s: EarlyStoppingSettings, best: BestVersionRecord | undefined): string | null {
  if (s.patience === 0 || !best || best.metric !== s.metric || best.mode !== s.mode || windowOf(best.window) !== windowOf(s.window)) return null;
  if (best.sinceBest < s.patience) return null;
  const better = s.mode === 'min' ? 'fallen' : 'risen';
  const by = s.minDelta > 0 ? ` by more than ${s.minDelta}` : '';
  const what = best.window ? `the mean of ${s.metric} over ${best.window} evaluated versions` : s.metric;
  const mean = best.window ? `mean ${best.value} centred on v${best.version}` : `${s.metric} ${best.value}`;
  return `early stopping: ${what} has not ${better}${by} for ${best.sinceBest} evaluated versions since v${best.version} (${mean}); patience ${s.patience}`;
}
