// Prometheus metrics of one coordinator (prom-client), fed by the coordinator's round events and by a gRPC
// server interceptor (grpc-observer.ts). One registry per coordinator, so several coordinators in one process
// (tests) never share counters. Labels are bounded sets: phase, outcome, gRPC method and status name, metric
// name of the latest version; never a site name or id. Under Poisson sampling nothing counts a round's sample
// (ops/sample-secrecy.ts): the per-round selection and update series are not registered, and the gRPC series of
// the methods only sampled sites call are not kept. Under privacy.enabled the fedtune_privacy_* series show ε, the
// budget and what the next round runs at (ops/privacy-status.ts): public figures, never a count of a round's sites.
import * as client from 'prom-client';
import type { Checkpoint } from '../checkpoints/types';
import type { PrivacyStatus } from './privacy-status';
import type { RoundEvents, RoundPhase } from '../round-events';
import { SAMPLE_METHODS } from './sample-secrecy';

const PHASES: readonly RoundPhase[] = ['IDLE', 'WAITING_FOR_CLIENTS', 'SELECTING', 'TRAINING', 'AGGREGATING', 'COMMITTING', 'FINISHED', 'FAILED', 'STOPPED'];
const FINAL: ReadonlySet<RoundPhase> = new Set(['FINISHED', 'FAILED', 'STOPPED']);
/** Rounds take seconds to tens of minutes. */
const ROUND_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/** Phases (aggregating, committing) also take milliseconds. */
const PHASE_BUCKETS = [0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

/** What the metrics read from the coordinator at scrape time. */
export interface MetricsSource {
  on<K extends keyof RoundEvents>(event: K, listener: (...args: RoundEvents[K]) => void): unknown;
  connectedSites(): number;
  latestCheckpoint(): Checkpoint | null;
  readonly roundsTotal: number;
  /** Rounds are Poisson-sampled (privacy.sampling 'poisson'): no series may count a round's sample. */
  readonly sampled?: boolean;
  /** Under privacy.enabled: the privacy status after a version. */
  readonly privacy?: (latest: Checkpoint) => PrivacyStatus | undefined;
  /** secagg.enabled: the rounds the budget allows at the SecAgg threshold have a series too. */
  readonly secureAggregation?: boolean;
}

export class CoordinatorMetrics {
  readonly registry = new client.Registry();
  readonly grpcHandled: client.Counter<'method' | 'code'>;
  readonly grpcRejections: client.Counter<'method' | 'code'>;
  readonly grpcReceivedBytes: client.Counter<'method'>;
  readonly grpcSentBytes: client.Counter<'method'>;
  /** gRPC methods whose calls and bytes are not counted (their counts would tell the sample's size). */
  readonly uncountedMethods: ReadonlySet<string>;
  private phaseSince = Date.now();
  private phaseNow: RoundPhase = 'IDLE';
  /** Start of a round's first attempt, so a retried round's duration covers all its attempts. */
  private roundStart = new Map<number, number>();
  private attemptStart = 0;

  constructor(
    private readonly src: MetricsSource,
    withProcessMetrics = true,
  ) {
    const r = this.registry;
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[] = []): client.Counter<L> =>
      new client.Counter<L>({ name, help, labelNames, registers: [r] });
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[] = [], collect?: (this: client.Gauge<L>) => void): client.Gauge<L> =>
      new client.Gauge<L>({ name, help, labelNames, registers: [r], ...(collect ? { collect } : {}) });

    const committed = counter('fedtune_rounds_committed_total', 'Rounds committed as a new version (version 0 not counted).');
    const aborted = counter('fedtune_round_attempts_aborted_total', 'Round attempts that failed (too few updates, SecAgg abort, stop) and committed nothing.', [
      'final',
    ]);
    const roundDuration = new client.Histogram({
      name: 'fedtune_round_duration_seconds',
      help: 'From the start of a round’s first attempt to its commit.',
      buckets: ROUND_BUCKETS,
      registers: [r],
    });
    const attemptDuration = new client.Histogram({
      name: 'fedtune_round_attempt_duration_seconds',
      help: 'From task issue to commit or failure, per attempt.',
      labelNames: ['outcome'],
      buckets: ROUND_BUCKETS,
      registers: [r],
    });
    const phaseDuration = new client.Histogram({
      name: 'fedtune_round_phase_duration_seconds',
      help: 'Time spent in each round phase.',
      labelNames: ['phase'],
      buckets: PHASE_BUCKETS,
      registers: [r],
    });
    // Counts of a round's sites: not registered at all under sampling (an absent series, not a zero that lies).
    const sampleCounts = !src.sampled;
    this.uncountedMethods = src.sampled ? SAMPLE_METHODS : new Set();
    const selections = sampleCounts ? counter('fedtune_site_selections_total', 'Tasks issued to selected sites.') : undefined;
    const accepted = sampleCounts ? counter('fedtune_updates_accepted_total', 'Site updates accepted (uploads that validated).') : undefined;
    const declined = sampleCounts
      ? counter('fedtune_tasks_declined_total', 'Tasks a selected site declined (DeclineTask: its training failed), by reason.', ['reason'])
      : undefined;
    const dropped = counter('fedtune_secagg_dropped_sites_total', 'Sites that shared SecAgg keys but whose masked input was missing from a committed sum.');
    const selectedNow = sampleCounts ? gauge('fedtune_round_sites_selected', 'Sites selected in the current (or last) attempt.') : undefined;
    const acceptedNow = sampleCounts ? gauge('fedtune_round_updates_accepted', 'Updates accepted so far in the current (or last) attempt.') : undefined;
    gauge('fedtune_sites_connected', 'Sites with an open task stream.', [], function () {
      this.set(src.connectedSites());
    });
    gauge('fedtune_rounds_planned', 'rounds.total: versions the run commits after version 0.', [], function () {
      this.set(src.roundsTotal);
    });
    const version = gauge('fedtune_latest_version', 'Latest committed version.');
    const round = gauge('fedtune_latest_round', 'Round of the latest committed version.');
    const versionMetric = gauge(
      'fedtune_latest_version_metric',
      'Metrics of the latest version (clients.* weighted means, heldout.* server evaluation), by manifest name.',
      ['metric'],
    );
    const phase = gauge('fedtune_round_phase', 'Current round phase (1 for the current one).', ['phase']);
    for (const p of PHASES) phase.set({ phase: p }, p === 'IDLE' ? 1 : 0);
    this.grpcHandled = counter('fedtune_grpc_server_handled_total', 'gRPC calls finished, by method and status.', ['method', 'code']);
    this.grpcRejections = counter('fedtune_grpc_rejections_total', 'gRPC calls refused with a status other than OK or CANCELLED, by method and status name.', [
      'method',
      'code',
    ]);
    this.grpcReceivedBytes = counter('fedtune_grpc_received_bytes_total', 'Serialized bytes of gRPC messages received, by method.', ['method']);
    this.grpcSentBytes = counter('fedtune_grpc_sent_bytes_total', 'Serialized bytes of gRPC messages sent, by method.', ['method']);
    // Set with the latest version (at start-up from the restored one, then on each commit); NaN until the run
    // directory is read: nothing is known yet, and 0 would claim ε = 0.
    const privacySeries: [client.Gauge, (s: PrivacyStatus) => number][] = src.privacy
      ? [
          [
            gauge(
              'fedtune_privacy_epsilon',
              'ε spent at fedtune_privacy_delta after the latest version (RDP accountant, as its manifest records it; +Inf when unbounded).',
            ),
            (s) => s.epsilon ?? Infinity,
          ],
          [
            gauge('fedtune_privacy_epsilon_budget', 'privacy.epsilonBudget: the run stops before a round that would take ε past it (0: none).'),
            (s) => s.epsilonBudget,
          ],
          [gauge('fedtune_privacy_delta', 'privacy.delta: the δ ε is reported at.'), (s) => s.delta],
          [
            gauge(
              'fedtune_privacy_budget_rounds_left',
              'Further rounds the budget allows at the run’s q and z, every site surviving (the accountant’s largest k with ε ≤ budget; under SecAgg the last one charged its worst case, as the check before a round does; +Inf without a budget).',
            ),
            (s) => s.roundsLeft ?? Infinity,
          ],
          [gauge('fedtune_privacy_clip_norm', 'C the next round clips each update to (adaptive clipping’s C_t+1, else privacy.clipNorm).'), (s) => s.clipNorm],
          [
            gauge('fedtune_privacy_noise_multiplier', 'z: the noise multiplier the accountant charges each round (privacy.noiseMultiplier).'),
            (s) => s.noiseMultiplier,
          ],
        ]
      : [];
    if (src.privacy && src.secureAggregation)
      privacySeries.push([
        gauge(
          'fedtune_privacy_budget_rounds_left_at_threshold',
          'Further rounds the budget allows if every round ends with only the SecAgg threshold’s t of its n sites (each charged z·√(t/n), the latest round’s t and n; NaN before the first SecAgg version, +Inf without a budget).',
        ),
        (s) => s.roundsLeftAtThreshold ?? (s.epsilonBudget > 0 ? NaN : Infinity),
      ]);
    for (const [g] of privacySeries) g.set(NaN);
    if (withProcessMetrics) client.collectDefaultMetrics({ register: r });

    const setLatest = (ck: Checkpoint | null): void => {
      if (!ck) return;
      version.set(ck.manifest.version);
      round.set(ck.manifest.round);
      // Only the latest version's names: the label set stays bounded even if sites report changing names.
      versionMetric.reset();
      for (const [k, v] of Object.entries(ck.manifest.metrics)) if (Number.isFinite(v)) versionMetric.set({ metric: k }, v);
      const p = src.privacy?.(ck);
      if (p) for (const [g, value] of privacySeries) g.set(value(p));
    };

    src.on('phase', (p) => {
      const now = Date.now();
      if (this.phaseNow !== 'IDLE' && !FINAL.has(this.phaseNow)) phaseDuration.observe({ phase: this.phaseNow }, (now - this.phaseSince) / 1000);
      phase.set({ phase: this.phaseNow }, 0);
      phase.set({ phase: p }, 1);
      this.phaseNow = p;
      this.phaseSince = now;
      // A resumed run commits nothing at start, and one whose rounds or ε budget are spent goes straight to FINISHED.
      if (p === 'WAITING_FOR_CLIENTS' || FINAL.has(p)) setLatest(src.latestCheckpoint());
    });
    src.on('roundStarted', (e) => {
      const now = Date.now();
      if (!this.roundStart.has(e.round)) this.roundStart.set(e.round, now);
      this.attemptStart = now;
      selectedNow?.set(e.selected.length);
      acceptedNow?.set(0);
    });
    src.on('clientSelected', () => selections?.inc());
    src.on('taskDeclined', (e) => declined?.inc({ reason: e.reason }));
    src.on('updateAccepted', () => {
      accepted?.inc();
      acceptedNow?.inc();
    });
    src.on('roundCommitted', (e) => {
      const ck = src.latestCheckpoint();
      setLatest(ck);
      if (e.round === 0) return; // version 0 is the initial adapter, not a round
      const now = Date.now();
      committed.inc();
      attemptDuration.observe({ outcome: 'committed' }, (now - this.attemptStart) / 1000);
      const start = this.roundStart.get(e.round);
      if (start !== undefined) roundDuration.observe((now - start) / 1000);
      this.roundStart.delete(e.round);
      const sa = ck?.manifest.version === e.version ? ck.manifest.secureAggregation : undefined;
      if (sa) dropped.inc(sa.dropped.length);
    });
    src.on('roundFailed', (e) => {
      aborted.inc({ final: String(e.final) });
      attemptDuration.observe({ outcome: 'aborted' }, (Date.now() - this.attemptStart) / 1000);
    });
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  async scrape(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
