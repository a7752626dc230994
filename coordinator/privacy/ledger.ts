// The run's privacy ledger: what every noised round cost, ε at δ so far, the budget check before a round, and the
// record stamped into each manifest. Resumed from the latest manifest's record after a restart, so ε never resets.
import type { Manifest, PrivacyRecord, PrivacySegment } from '../checkpoints/types';
import { epsilonSpent } from './accountant';
import type { SampledCohort } from './sampling';
import type { AdaptiveClipRound } from './adaptive-clip';

export interface PrivacyConfig {
  readonly clipNorm: number;
  readonly noiseMultiplier: number;
  readonly delta: number;
  readonly epsilonBudget: number;
}

/**
 * Sampling rate of a round under privacy.sampling 'selection': a fixed-size draw whose participants the manifest
 * names, so whether a site took part is not secret: amplification by subsampling does not apply, q = 1. Only a
 * Poisson-sampled round (privacy/sampling.ts: secret coins, fixed denominator, no names published) is charged q < 1.
 */
export const SAMPLING_RATE = 1;

export class PrivacyLedger {
  private history: PrivacySegment[];
  /** Rounds committed without noise before privacy was enabled: nothing bounds what they reveal. */
  private readonly unprotected: boolean;

  constructor(
    readonly cfg: PrivacyConfig,
    latest: Manifest | null,
  ) {
    this.history = latest?.privacy ? latest.privacy.history.map((s) => ({ ...s })) : [];
    this.unprotected = latest !== null && latest.round > 0 && !latest.privacy;
  }

  get rounds(): number {
    return this.history.reduce((s, h) => s + h.rounds, 0);
  }

  /** ε at δ after the history plus `extra` (null when unbounded). */
  epsilon(extra: readonly PrivacySegment[] = []): number | null {
    if (this.unprotected) return null;
    const segs = [...this.history, ...extra].map((s) => ({ q: s.samplingRate, z: s.noiseMultiplier, steps: s.rounds }));
    const e = epsilonSpent(segs, this.cfg.delta);
    return Number.isFinite(e) ? e : null;
  }

  /**
   * Why the next round must not run (null when it may): its worst case (noise multiplier `worstZ`, the least the
   * round can end with) would take ε past the budget.
   */
  budgetStop(round: number, worstZ: number, q = SAMPLING_RATE): string | null {
    const budget = this.cfg.epsilonBudget;
    if (!(budget > 0)) return null;
    const next = this.epsilon([{ samplingRate: q, noiseMultiplier: worstZ, rounds: 1 }]);
    if (next !== null && next <= budget) return null;
    const now = this.epsilon();
    const fmt = (e: number | null): string => (e === null ? 'unbounded' : e.toFixed(4));
    return `privacy budget: round ${round} would take ε from ${fmt(now)} to ${fmt(next)} at δ = ${this.cfg.delta}, past the budget ${budget}`;
  }

  /**
   * Charges one committed round that had noise multiplier `z` and returns its manifest record: at the sample's rate
   * q for a Poisson-sampled round (`sampled`), else at q = 1. Under adaptive clipping (`clip`) z is still what is
   * charged; the record's C and σ are the round's own (C_t, z_Δ·C_t).
   */
  charge(z: number, addedBy: 'coordinator' | 'sites', sampled?: SampledCohort, clip?: AdaptiveClipRound): PrivacyRecord {
    const q = sampled?.rate ?? SAMPLING_RATE;
    const last = this.history[this.history.length - 1];
    if (last && last.noiseMultiplier === z && last.samplingRate === q) this.history[this.history.length - 1] = { ...last, rounds: last.rounds + 1 };
    else this.history.push({ samplingRate: q, noiseMultiplier: z, rounds: 1 });
    return this.record(addedBy, z, sampled, clip);
  }

  /** The record of a version that added no noise (version 0). */
  record(addedBy: 'coordinator' | 'sites' | 'none' = 'none', z = 0, sampled?: SampledCohort, clip?: AdaptiveClipRound): PrivacyRecord {
    return {
      mechanism: 'dp-fedavg-gaussian',
      noiseAddedBy: addedBy,
      clipNorm: clip?.clipNorm ?? this.cfg.clipNorm,
      noiseMultiplier: this.cfg.noiseMultiplier,
      effectiveNoiseMultiplier: z,
      // Under SecAgg with k of n surviving, z here is z·√(k/n), and so is the update's share of it.
      sigma: clip ? (z / this.cfg.noiseMultiplier) * clip.updateNoiseMultiplier * clip.clipNorm : z * this.cfg.clipNorm,
      ...(clip ? { adaptiveClipping: { ...clip } } : {}),
      samplingRate: sampled?.rate ?? SAMPLING_RATE,
      ...(sampled ? { sampling: { ...sampled } } : {}),
      rounds: this.rounds,
      delta: this.cfg.delta,
      epsilon: this.epsilon(),
      epsilonBudget: this.cfg.epsilonBudget,
      history: this.history.map((s) => ({ ...s })),
    };
  }
}
