// The round's DP-FedAvg hooks (privacy.enabled): the ledger resumed from the latest manifest, the ε-budget check
// before a round (and again once a SecAgg attempt knows how few survivors it may end with), the Poisson draw of a
// sampled round (privacy.sampling 'poisson', privacy/sampling.ts) and the charge of a committed round at its q.
// Without privacy every hook is a no-op and `stop` stays null.
import { createHmac } from 'node:crypto';
import type { Manifest, PrivacyRecord, SecureAggregationRecord } from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import { PrivacyLedger } from './privacy/ledger';
import type { AdaptiveClipRound } from './privacy/adaptive-clip';
import {
  chargedSamplingRate,
  isSampled,
  loadOrCreateSamplingSecret,
  minConnected,
  poissonSample,
  sampledCohort,
  samplingKeyFile,
  type SampledCohort,
} from './privacy/sampling';

export class RoundPrivacy {
  private ledger: PrivacyLedger | null = null;
  /** The run's sampling secret (Poisson-sampled runs only): never logged, never in a manifest. */
  private secret: Buffer | null = null;
  /** Why the run ends before the next round (its worst case would exceed the budget), once it does. */
  stop: string | null = null;

  constructor(private readonly cfg: CoordinatorConfig) {}

  /** Rounds are Poisson-sampled. */
  get sampled(): boolean {
    return isSampled(this.cfg);
  }

  /** Starts (or resumes from the latest manifest's record) the run's ledger; loads or creates the sampling secret before any draw. */
  async load(latest: Manifest | null): Promise<void> {
    this.ledger = this.cfg.privacy.enabled ? new PrivacyLedger(this.cfg.privacy, latest) : null;
    if (this.sampled) this.secret = await loadOrCreateSamplingSecret(samplingKeyFile(this.cfg.run.dir));
  }

  /** Connected sites a round waits for before it selects (privacy/sampling.ts minConnected). */
  minConnected(): number {
    return minConnected(this.cfg);
  }

  /** Round `round`'s Poisson sample of the eligible connected sites `ids`, and its public description. */
  draw(round: number, ids: readonly string[]): { ids: string[]; cohort: SampledCohort } {
    if (!this.secret) throw new Error('privacy sampling: the secret is not loaded');
    const pool = [...new Set(ids)];
    const q = this.cfg.privacy.samplingRate;
    return { ids: poissonSample(this.secret, this.cfg.run.id, round, pool, q), cohort: sampledCohort(q, pool.length) };
  }

  /** The site part of a task id: its client id, or under sampling an opaque tag keyed by the secret (unique per site). */
  taskTag(round: number, attempt: number, clientId: string): string {
    if (!this.sampled || !this.secret) return clientId;
    return createHmac('sha256', this.secret)
      .update(JSON.stringify(['task', round, attempt, clientId]))
      .digest('hex')
      .slice(0, 24);
  }

  /** The record of a version that added no noise (version 0); undefined without privacy. */
  initialRecord(): PrivacyRecord | undefined {
    return this.ledger?.record();
  }

  /** Before anything of the round happens: even with every site surviving, would it exceed the ε budget? */
  beforeRound(round: number): string | null {
    const q = chargedSamplingRate(this.cfg);
    this.stop = this.ledger?.budgetStop(round, this.cfg.privacy.noiseMultiplier, q) ?? null;
    return this.stop;
  }

  /** Under SecAgg a round may end with as few as t survivors (fewer aborts it), each holding a 1/n share of the noise. */
  beforeSecAgg(round: number, threshold: number, selected: number): string | null {
    const worst = threshold / selected;
    this.stop = this.ledger?.budgetStop(round, this.cfg.privacy.noiseMultiplier * Math.sqrt(Math.min(1, worst))) ?? null;
    return this.stop;
  }

  /**
   * What the round's noise was: σ = z·C from the coordinator; from the sites, z·C·√(survivors/selected). A sampled
   * round (`sampled`) is charged at its q. Under adaptive clipping (`clip`) it is still charged z: the count's noise
   * and the update's (σ = z_Δ·C_t) together are the Gaussian mechanism at z (privacy/adaptive-clip.ts).
   */
  charge(secureAggregation: SecureAggregationRecord | undefined, sampled?: SampledCohort, clip?: AdaptiveClipRound): PrivacyRecord | undefined {
    const z = this.cfg.privacy.noiseMultiplier;
    return secureAggregation
      ? this.ledger?.charge(z * Math.sqrt(secureAggregation.survivors.length / secureAggregation.selected.length), 'sites', undefined, clip)
      : this.ledger?.charge(z, 'coordinator', sampled, clip);
  }
}
