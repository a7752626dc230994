// The round's DP-FedAvg hooks (privacy.enabled): the ledger resumed from the latest manifest, the ε-budget check
// before a round (and again once a SecAgg attempt knows how few survivors it may end with), and the charge of a
// committed round. Without privacy every hook is a no-op and `stop` stays null.
import type { Manifest, PrivacyRecord, SecureAggregationRecord } from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import { PrivacyLedger } from './privacy/ledger';

export class RoundPrivacy {
  private ledger: PrivacyLedger | null = null;
  /** Why the run ends before the next round (its worst case would exceed the budget), once it does. */
  stop: string | null = null;

  constructor(private readonly cfg: CoordinatorConfig) {}

  /** Starts (or resumes from the latest manifest's record) the run's ledger. */
  load(latest: Manifest | null): void {
    this.ledger = this.cfg.privacy.enabled ? new PrivacyLedger(this.cfg.privacy, latest) : null;
  }

  /** The record of a version that added no noise (version 0); undefined without privacy. */
  initialRecord(): PrivacyRecord | undefined {
    return this.ledger?.record();
  }

  /** Before anything of the round happens: even with every site surviving, would it exceed the ε budget? */
  beforeRound(round: number): string | null {
    this.stop = this.ledger?.budgetStop(round, this.cfg.privacy.noiseMultiplier) ?? null;
    return this.stop;
  }

  /** Under SecAgg a round may end with as few as t survivors (fewer aborts it), each holding a 1/n share of the noise. */
  beforeSecAgg(round: number, threshold: number, selected: number): string | null {
    const worst = threshold / selected;
    this.stop = this.ledger?.budgetStop(round, this.cfg.privacy.noiseMultiplier * Math.sqrt(Math.min(1, worst))) ?? null;
    return this.stop;
  }

  /** What the round's noise was: σ = z·C from the coordinator; from the sites, z·C·√(survivors/selected). */
  charge(secureAggregation: SecureAggregationRecord | undefined): PrivacyRecord | undefined {
    const z = this.cfg.privacy.noiseMultiplier;
    return secureAggregation
      ? this.ledger?.charge(z * Math.sqrt(secureAggregation.survivors.length / secureAggregation.selected.length), 'sites')
      : this.ledger?.charge(z, 'coordinator');
  }
}
