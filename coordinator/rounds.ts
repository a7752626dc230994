// Where rounds are scheduled. One round, one or more attempts (attempt.ts), each walking these phases:
//   WAITING_FOR_CLIENTS (rounds.minClients connected) → SELECTING (seeded) → TRAINING (tasks out; until every
//   selected client uploaded and reported, or the deadline) → AGGREGATING (strategy) → COMMITTING (optional
//   evaluator, then the store) → the next round.
// An attempt with fewer than rounds.minUpdates accepted updates fails cleanly: outstanding tasks are
// cancelled, nothing is committed, and the round is retried (attempt + 1) up to rounds.maxAttempts failures.
// Across restarts (round-spool.ts): attempt numbers continue where the last process left them and every task id
// carries this process's epoch, so no task id is ever issued twice; updates accepted before a crash are
// reloaded and count; an attempt cut short by a crash is not a failure.
// No gRPC here: the service (service.ts) validates the wire and calls in; tasks go out through the registry.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { PROTOCOL_VERSION } from '../proto/constants';
import { ProtocolError, status } from '../proto/errors';
import type { CoordinatorBoxSecret } from '../proto/crypto/sealed-upload';
import { sortByName, type NamedTensor, type TensorList } from '../proto/tensors';
import type {
  Checkpoint,
  CheckpointStore,
  ClientTrainingRecord,
  FederatedEvaluationRecord,
  Participant,
  PrivacyRecord,
  SecureAggregationRecord,
} from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import { configForManifest } from './config';
import type { ClientRegistry } from './registry';
import { deriveSeed, selectClients } from './selection';
import { clientTrainingFor, optimizerWire } from './client-training';
import type { Strategy } from './strategy/strategy';
import { Attempt, type Task } from './attempt';
import { clientMetricMeans, plainOutcome, secaggOutcome, type Outcome } from './round-outcome';
import { RoundSpool, type SpoolState, type SpooledRound } from './round-spool';
import type { SealedUpdate, SpoolHeadFields } from './sealed-update';
import type { SpoolUpload } from './spool-upload';
import { reopenSpooled } from './spool-reopen';
import { SecAggAttempt } from './secagg-attempt';
import { roundAggregation, uploadLayout } from './lora-aggregation';
import { PrivacyLedger } from './privacy/ledger';
import type { ClientSelected, RoundCommitted, RoundEvents, RoundPhase } from './round-events';
import { Evaluations } from './evaluation/evaluations';
import { nextBest, stopReason } from './evaluation/early-stopping';
import { reconcileRelease, writeRelease } from './checkpoints/release';

export * from './round-events';
export type { Task } from './attempt';

export type Evaluator = (adapter: TensorList, version: number) => Promise<Record<string, number>>;
export type LogFn = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface RoundEngineDeps {
  readonly config: CoordinatorConfig;
  readonly store: CheckpointStore;
  readonly strategy: Strategy;
  readonly registry: ClientRegistry;
  readonly initialAdapter: () => NamedTensor[] | Promise<NamedTensor[]>;
  readonly adapterConfig: Record<string, unknown>;
  readonly baseModel: { readonly name: string; readonly sha256: string };
  readonly evaluator?: Evaluator;
  /** Seeds decided outside the coordinator (e.g. the data split), recorded in every manifest. */
  readonly extraSeeds?: Record<string, number>;
  /** The coordinator's box key: reopens spooled updates after a restart. */
  readonly boxKey: CoordinatorBoxSecret;
  /** Whether a site's key is still enrolled; a revoked site's spooled or accepted update is dropped (default: all are). */
  readonly enrolled?: (name: string, publicKey: Uint8Array) => boolean;
  readonly log: LogFn;
}

/** Where the next attempt of a round starts: its number, failures so far, and what a crashed process left. */
interface RoundResume {
  attempt: number;
  failed: number;
  spooled: SpooledRound | null;
}

export class RoundEngine extends EventEmitter<RoundEvents> {
  private latestCk: Checkpoint | null = null;
  private stopping = false;
  private phaseNow: RoundPhase = 'IDLE';
  private current: Attempt | null = null;
  private clientsChanged: (() => void) | null = null;
  /** Once the run ended, clients that (re)attach later are told at once instead of waiting forever. */
  private finished: { final_version: number; reason: string } | null = null;
  /** Every task issued in this process, so a stale or forged task id gets a precise refusal. */
  private readonly issued = new Map<string, Task>();
  /** Ciphertext hash → the task that accepted it, for the life of this process. */
  private readonly accepted = new Map<string, Task>();
  /** This process's share of every task id: a restarted coordinator never re-issues an id a site completed. */
  readonly epoch = randomBytes(4).toString('hex');
  private readonly spool: RoundSpool;
  /** What the spool says about the round in progress (the attempt last started, failures so far). */
  private roundState: SpoolState | null = null;
  /** Federated evaluation of each candidate version (evaluation.*). */
  readonly evaluations: Evaluations;
  /** Why early stopping ended the run (earlyStopping.*), once it did. */
  private earlyStop: string | null = null;
  /** DP-FedAvg's ledger (privacy.enabled), and why the run ended early when its budget ran out. */
  private privacy: PrivacyLedger | null = null;
  private budgetStop: string | null = null;

  constructor(private readonly d: RoundEngineDeps) {
    super();
    this.spool = new RoundSpool(d.config.run.dir);
    this.evaluations = new Evaluations({ config: d.config, registry: d.registry, log: d.log, stopping: () => this.stopping, epoch: this.epoch });
    d.registry.on('change', () => this.poke());
    d.registry.on('attached', (s: { clientId: string }) => {
      if (this.finished) d.registry.byId(s.clientId)?.sink?.write({ finished: this.finished });
      else {
        this.resendTask(s.clientId);
        this.evaluations.resend(s.clientId);
      }
    });
  }

  /** The checkpoint tasks currently start from. */
  get latest(): Checkpoint | null {
    return this.latestCk;
  }

  get phase(): RoundPhase {
    return this.phaseNow;
  }

  /** Runs rounds until rounds.total are committed; resumes from the store's latest version. */
  async run(): Promise<Checkpoint> {
    try {
      return await this.runRounds();
    } catch (e) {
      this.setPhase(this.stopping ? 'STOPPED' : 'FAILED');
      throw e;
    }
  }

  private async runRounds(): Promise<Checkpoint> {
    const cfg = this.d.config;
    const stored = await this.d.store.latest();
    this.privacy = cfg.privacy.enabled ? new PrivacyLedger(cfg.privacy, stored?.manifest ?? null) : null;
    if (stored) {
      this.latestCk = { ...stored, adapter: sortByName(stored.adapter) };
      this.d.log('info', 'resuming from the latest version', { version: stored.manifest.version, round: stored.manifest.round });
      if (await reconcileRelease(cfg.run.dir, stored.manifest))
        this.d.log('warn', 'moved the release pointer to the best version, which committed just before the last process stopped', {
          version: stored.manifest.version,
        });
      this.earlyStop = stopReason(cfg.earlyStopping, stored.manifest.best);
    } else {
      this.setPhase('COMMITTING');
      // Sorted: every party sees tensors in name order (the client sorts too; checkLayout compares order).
      this.latestCk = await this.commit(sortByName(await this.d.initialAdapter()), 0, 0, [], {}, undefined, this.privacy?.record());
      this.d.log('info', 'committed the initial adapter', { version: 0 });
      await this.afterCommit(this.latestCk);
      this.emit('roundCommitted', { version: 0, round: 0, attempt: 0, participants: [], metrics: this.latestCk.manifest.metrics });
    }
    while (!this.stopping && !this.earlyStop && !this.budgetStop && this.latestCk.manifest.round < cfg.rounds.total) {
      const round = this.latestCk.manifest.round + 1;
      // Before anything of the round happens: even with every site surviving, would it exceed the ε budget?
      this.budgetStop = this.privacy?.budgetStop(round, cfg.privacy.noiseMultiplier) ?? null;
      if (this.budgetStop) break;
      const spooled = await this.spool.load(round, this.latestCk.manifestSha256);
      const r: RoundResume = { attempt: (spooled?.state.attempt ?? 0) + 1, failed: spooled?.state.failed ?? 0, spooled };
      if (spooled)
        this.d.log('info', 'resuming an interrupted round', { round, attempt: r.attempt, failedAttempts: r.failed, spooledUpdates: spooled.updates.size });
      let committed = false;
      while (!committed && !this.stopping && !this.budgetStop && r.failed < cfg.rounds.maxAttempts) {
        committed = (await this.runAttempt(round, r)) === 'committed';
        r.attempt++;
        r.spooled = null; // what a crashed process left counts for the first attempt after it only
      }
      if (!committed && !this.stopping && !this.budgetStop) {
        const reason = `round ${round} failed ${cfg.rounds.maxAttempts} attempts`;
        this.finish(this.latestCk.manifest.version, reason);
        throw new Error(reason);
      }
    }
    if (this.stopping) {
      this.setPhase('STOPPED');
    } else {
      const version = this.latestCk.manifest.version;
      const reason = this.earlyStop ?? this.budgetStop ?? 'all rounds committed';
      if (this.budgetStop) this.d.log('warn', 'stopping before the round that would exceed the privacy budget', { reason, version });
      this.finish(version, reason);
      this.setPhase('FINISHED');
      this.emit('runFinished', { version, reason });
    }
    return this.latestCk;
  }

  stop(): void {
    this.stopping = true;
    this.current?.wake();
    this.poke();
  }

  private finish(version: number, reason: string): void {
    this.finished = { final_version: version, reason };
    this.d.registry.broadcast({ finished: this.finished });
  }

  private setPhase(p: RoundPhase): void {
    if (p === this.phaseNow) return;
    this.phaseNow = p;
    this.emit('phase', p);
  }

  /**
   * Reopens one spooled update (read from disk now, not before: one at a time, so memory does not grow with the
   * number of spooled updates); null, logged, when it no longer counts for this round (spool-reopen.ts).
   */
  private reopen(round: number, file: string, base: Checkpoint, clientId: string): Promise<(SealedUpdate & { seed: number }) | null> {
    return reopenSpooled(
      {
        spool: this.spool,
        boxKey: this.d.boxKey,
        maxUploadBytes: this.d.config.transport.maxUploadBytes,
        runId: this.d.config.run.id,
        enrolled: this.d.enrolled ?? (() => true),
        log: this.d.log,
      },
      file,
      round,
      base,
      clientId,
    );
  }

  private async runAttempt(round: number, r: RoundResume): Promise<'committed' | 'failed' | 'stopped'> {
    const cfg = this.d.config;
    const attempt = r.attempt;
    const base = this.latestCk!;
    const spooled = r.spooled && !cfg.secagg.enabled ? r.spooled : null;
    const resumeSelection = spooled ? spooled.state : null;
    // Which spooled updates still verify (opened and dropped again here, one at a time; the restart path only).
    const valid = new Set<string>();
    if (spooled)
      for (const id of spooled.state.selected) if (spooled.updates.has(id) && (await this.reopen(round, spooled.updates.get(id)!, base, id))) valid.add(id);
    // A resumed round whose selected clients all uploaded before the crash needs nobody: it commits at once.
    const outstanding = resumeSelection ? resumeSelection.selected.filter((id) => !valid.has(id)) : null;
    if (outstanding === null || outstanding.length > 0) {
      this.setPhase('WAITING_FOR_CLIENTS');
      await this.waitForClients(() => this.d.registry.connected().length >= cfg.rounds.minClients);
      if (this.stopping) return 'stopped';
    }

    this.setPhase('SELECTING');
    const selectionSeed = resumeSelection?.selectionSeed ?? deriveSeed(cfg.run.seed, 'select', round, attempt);
    const ids = resumeSelection
      ? [...resumeSelection.selected]
      : selectClients(
          this.d.registry.connected().map((s) => s.clientId),
          cfg.rounds.clientsPerRound,
          cfg.rounds.minUpdates,
          selectionSeed,
        );
    this.roundState = { round, baseManifestSha256: base.manifestSha256, attempt, failed: r.failed, selected: ids, selectionSeed };
    await this.spool.saveState(this.roundState);
    const trainingDeadline = Date.now() + cfg.rounds.deadlineMs;
    let secagg: SecAggAttempt | undefined;
    if (cfg.secagg.enabled) {
      try {
        const keys = Object.fromEntries(ids.map((id) => [id, this.d.registry.byId(id)!.publicKey]));
        // The masked vector covers the tensors an update carries: only lora_B under 'ffa'.
        const layout = uploadLayout(base.adapter, roundAggregation(cfg));
        secagg = new SecAggAttempt(cfg, `${cfg.run.id}/r${round}/a${attempt}`, base.manifestSha256, layout, ids, keys, cfg.secagg.stageTimeoutMs);
      } catch (e) {
        return this.failAttempt(r, round, `secure aggregation cannot run: ${(e as Error).message}`);
      }
      // Under SecAgg a round may end with as few as t survivors (fewer aborts it), each holding a 1/n share of the noise.
      const worst = secagg.config.threshold / ids.length;
      this.budgetStop = this.privacy?.budgetStop(round, cfg.privacy.noiseMultiplier * Math.sqrt(Math.min(1, worst))) ?? null;
      if (this.budgetStop) return 'stopped';
    }
    // Under SecAgg four stages follow training (share keys, masked input, consistency, unmask), each with its own timeout.
    const deadline = secagg ? trainingDeadline + 4 * cfg.secagg.stageTimeoutMs : trainingDeadline;
    const cur = new Attempt(
      round,
      attempt,
      base,
      selectionSeed,
      deadline,
      {
        registry: this.d.registry,
        strategy: this.d.strategy,
        aggregation: roundAggregation(cfg),
        spool: secagg ? undefined : this.spool,
        stopping: () => this.stopping,
        onAccepted: (t, numExamples) => {
          if (t.acceptedSha256) this.accepted.set(t.acceptedSha256, t);
          this.emit('updateAccepted', { round: t.round, attempt: t.attempt, clientId: t.clientId, numExamples });
        },
        log: this.d.log,
      },
      secagg,
    );
    const selected: ClientSelected[] = [];
    let carried = 0;
    for (const clientId of ids) {
      const prior = spooled && valid.has(clientId) ? await this.reopen(round, spooled.updates.get(clientId)!, base, clientId) : null;
      // A carried update keeps the task it was signed for (a site resuming that upload is answered from it).
      const taskId = prior ? prior.binding.taskId : `r${round}-a${attempt}-${this.epoch}-${clientId}`;
      const seed = prior ? prior.seed : deriveSeed(cfg.run.seed, 'train', round, attempt, clientId);
      const t: Task = {
        taskId,
        clientId,
        round,
        attempt: prior ? prior.binding.attempt : attempt,
        baseVersion: base.manifest.version,
        seed,
        deadline,
        owner: cur,
        state: 'assigned',
        clientName: prior?.clientName,
        wire: this.trainTask(taskId, round, prior ? prior.binding.attempt : attempt, base, deadline, seed, secagg),
      };
      cur.tasks.set(taskId, t);
      this.issued.set(taskId, t);
      if (prior) {
        try {
          cur.carry(t, prior); // admitted and added; its plaintext is dropped here
          carried++;
          const m = spooled?.metrics.get(clientId);
          if (m) t.metrics = m;
        } catch (e) {
          this.d.log('warn', 'spooled update not admitted', { round, clientId, error: (e as Error).message });
        }
      }
      if (!t.carried) selected.push({ round, attempt, clientId, taskId, seed });
    }
    this.current = cur;

    this.setPhase('TRAINING');
    this.emit('roundStarted', { round, attempt, selected: [...ids], baseVersion: base.manifest.version, selectionSeed, deadline });
    for (const s of selected) this.emit('clientSelected', s);
    this.d.log('info', 'round started', {
      round,
      attempt,
      selected: ids.length,
      carried,
      baseVersion: base.manifest.version,
      secureAggregation: secagg !== undefined,
    });
    for (const t of cur.tasks.values()) if (!t.carried) this.sendTask(t);

    try {
      let outcome: Outcome | string;
      try {
        outcome = secagg ? await this.secaggStages(cur, secagg, trainingDeadline) : await this.plainStages(cur);
      } finally {
        await cur.close();
        cur.cancelUnfinished();
      }
      if (this.stopping) return 'stopped';
      if (typeof outcome === 'string') return this.failAttempt(r, round, outcome);
      const { adapter, participants, seeds, secureAggregation, serverState } = outcome;
      // Sites evaluate the candidate before it commits, so the figures are signed into its own manifest.
      const evaluation = this.evaluations.due(round)
        ? await this.evaluations.run(sortByName(adapter), round, base.manifest.version + 1, participants)
        : undefined;
      if (this.stopping) return 'stopped';
      this.setPhase('COMMITTING');
      // What the round's noise was: σ = z·C from the coordinator; from the sites, z·C·√(survivors/selected).
      const z = cfg.privacy.noiseMultiplier;
      const privacy = secureAggregation
        ? this.privacy?.charge(z * Math.sqrt(secureAggregation.survivors.length / secureAggregation.selected.length), 'sites')
        : this.privacy?.charge(z, 'coordinator');
      this.latestCk = await this.commit(adapter, round, attempt, participants, seeds, secureAggregation, privacy, evaluation, serverState);
      await this.afterCommit(this.latestCk);
      await this.spool.drop(round);
      const ev: RoundCommitted = { version: this.latestCk.manifest.version, round, attempt, participants, metrics: this.latestCk.manifest.metrics };
      this.d.log('info', 'round committed', { version: ev.version, round, attempt, participants: participants.length });
      this.emit('roundCommitted', ev);
      return 'committed';
    } finally {
      cur.retire();
      this.current = null;
    }
  }

  /** Plain rounds: wait for uploads (each already in the running sum), then hand the sum to the strategy. */
  private async plainStages(cur: Attempt): Promise<Outcome | string> {
    const cfg = this.d.config;
    await cur.waitFor(() => cur.allDone(), cur.deadline);
    await cur.close();
    if (this.stopping) return 'coordinator stopping';
    // A site revoked before the round closed does not count, though its update was accepted: the sum is rebuilt
    // from the spool without it (exact integer sums: the same bytes as a round it never uploaded to).
    const enrolled = this.d.enrolled;
    if (enrolled) await cur.dropRevoked(enrolled, (id) => this.reopen(cur.round, this.spool.updateFile(cur.round, id), cur.base, id));
    const n = cur.aggregation!.count;
    if (n < cfg.rounds.minUpdates) return `${n} of ${cur.tasks.size} updates arrived; ${cfg.rounds.minUpdates} needed`;
    this.setPhase('AGGREGATING');
    return plainOutcome(this.d.registry, this.d.strategy, cur);
  }

  /** Secure aggregation: the four stages over the task streams, then the unmasked sum to the strategy. */
  private async secaggStages(cur: Attempt, sa: SecAggAttempt, trainingDeadline: number): Promise<Outcome | string> {
    const byClient = new Map([...cur.tasks.values()].map((t) => [t.clientId, t]));
    let out;
    try {
      out = await sa.drive(
        {
          live: (id) => this.d.registry.isLive(id),
          send: (id, ev) => this.d.registry.byId(id)?.sink?.write(ev),
          taskIdOf: (id) => byClient.get(id)!.taskId,
          waitFor: (cond, until) => cur.waitFor(cond, until),
          stopping: () => this.stopping,
        },
        trainingDeadline,
      );
    } catch (e) {
      return `secure aggregation aborted: ${(e as Error).message}`;
    }
    this.setPhase('AGGREGATING');
    return secaggOutcome(this.d.registry, this.d.strategy, cur, out);
  }

  /** A failed attempt: counted in the spool (its updates do not carry into the next attempt, which trains again). */
  private async failAttempt(r: RoundResume, round: number, why: string): Promise<'failed'> {
    const reason = `round ${round} attempt ${r.attempt}: ${why}`;
    r.failed++;
    const final = r.failed >= this.d.config.rounds.maxAttempts;
    if (this.roundState?.round === round) {
      this.roundState = { ...this.roundState, failed: r.failed };
      await this.spool.saveState(this.roundState);
    }
    await this.spool.dropUpdates(round);
    this.d.log('warn', 'round failed', { round, attempt: r.attempt, reason, final });
    this.emit('roundFailed', { round, attempt: r.attempt, reason, final });
    return 'failed';
  }

  private async commit(
    adapter: NamedTensor[],
    round: number,
    attempt: number,
    participants: Participant[],
    seeds: Record<string, number | Record<string, number>>,
    secureAggregation?: SecureAggregationRecord,
    privacy?: PrivacyRecord,
    evaluation?: FederatedEvaluationRecord,
    serverState?: readonly NamedTensor[],
  ): Promise<Checkpoint> {
    const cfg = this.d.config;
    const metrics: Record<string, number> = clientMetricMeans(participants);
    if (evaluation) {
      metrics['eval.loss'] = evaluation.loss;
      if (evaluation.accuracy !== undefined) metrics['eval.accuracy'] = evaluation.accuracy;
    }
    if (this.d.evaluator) {
      const version = this.latestCk ? this.latestCk.manifest.version + 1 : 0;
      try {
        for (const [k, v] of Object.entries(await this.d.evaluator(adapter, version))) metrics[`heldout.${k}`] = v;
      } catch (e) {
        // Server-side evaluation is a record, not a gate: the version commits without heldout.* metrics.
        this.d.log('error', 'evaluator failed; committing without held-out metrics', { version, error: (e as Error).message });
      }
    }
    const ck = await this.d.store.commit({
      adapter,
      adapterConfig: this.d.adapterConfig,
      manifest: {
        runId: cfg.run.id,
        round,
        attempt,
        strategy: this.d.strategy.name,
        participants,
        metrics,
        config: configForManifest(cfg),
        seeds: { run: cfg.run.seed, loraInit: deriveSeed(cfg.run.seed, 'lora-init'), ...this.d.extraSeeds, ...seeds },
        baseModel: this.d.baseModel,
        protocolVersion: PROTOCOL_VERSION,
        ...(secureAggregation ? { secureAggregation } : {}),
        ...(privacy ? { privacy } : {}),
        ...(this.d.strategy.hyperParameters ? { serverOptimizer: { ...this.d.strategy.hyperParameters } } : {}),
        ...(round > 0 ? { clientTraining: this.clientTraining(round) } : {}),
        ...(evaluation ? { evaluation } : {}),
        ...this.bestField(metrics),
      },
      serverState,
    });
    return { ...ck, adapter: sortByName(ck.adapter) };
  }

  /** The manifest's early-stopping record for the version being committed (evaluation/early-stopping.ts). */
  private bestField(metrics: Record<string, number>): { best?: NonNullable<Checkpoint['manifest']['best']> } {
    const version = this.latestCk ? this.latestCk.manifest.version + 1 : 0;
    const best = nextBest(this.d.config.earlyStopping, this.latestCk?.manifest.best, version, metrics);
    return best ? { best } : {};
  }

  /** After a commit: the release pointer follows a new best version; early stopping may end the run. */
  private async afterCommit(ck: Checkpoint): Promise<void> {
    const m = ck.manifest;
    if (m.best?.version === m.version) {
      await writeRelease(this.d.config.run.dir, m.version);
      this.d.log('info', 'release pointer moved to the new best version', { version: m.version, metric: m.best.metric, value: m.best.value });
    }
    this.earlyStop = stopReason(this.d.config.earlyStopping, m.best);
    if (this.earlyStop) this.d.log('info', this.earlyStop, { version: m.version, best: m.best?.version });
  }

  private trainTask(
    taskId: string,
    round: number,
    attempt: number,
    base: Checkpoint,
    deadline: number,
    seed: number,
    secagg: SecAggAttempt | undefined,
  ): Task['wire'] {
    const tr = this.d.config.training;
    const lora = this.d.config.lora;
    const plan = this.clientTraining(round);
    return {
      task_id: taskId,
      round,
      attempt,
      base_version: base.manifest.version,
      base_manifest_sha256: base.manifestSha256,
      deadline_unix_ms: deadline,
      seed,
      secagg: secagg?.settings,
      config: {
        local_steps: tr.localSteps,
        batch_size: tr.batchSize,
        learning_rate: plan.learningRate,
        weight_decay: tr.weightDecay,
        max_seq_len: tr.maxSeqLen,
        proximal_mu: plan.proximalMu,
        ...optimizerWire(plan),
        lora_aggregation: roundAggregation(this.d.config),
        lora_alpha: typeof this.d.adapterConfig.lora_alpha === 'number' ? this.d.adapterConfig.lora_alpha : lora.alpha,
        lora_dropout: plan.loraDropout,
        lora_dropout_stated: true,
      },
    };
  }

  /** What a round's sites train with: the scheduled learning rate (lr-schedule.ts) and FedProx's μ. */
  private clientTraining(round: number): ClientTrainingRecord {
    return clientTrainingFor(this.d.config, round);
  }

  private sendTask(t: Task): void {
    this.d.registry.byId(t.clientId)?.sink?.write({ train: t.wire });
  }

  /** A client that reconnects mid-round gets its open task again. */
  private resendTask(clientId: string): void {
    const cur = this.current;
    if (!cur?.open) return;
    for (const t of cur.tasks.values()) if (t.clientId === clientId && t.state === 'assigned') this.sendTask(t);
  }

  private poke(): void {
    this.current?.wake();
    this.evaluations.wake();
    const w = this.clientsChanged;
    this.clientsChanged = null;
    w?.();
  }

  /** Waits (with no deadline) until enough clients are connected; woken by every registry change. */
  private async waitForClients(cond: () => boolean): Promise<void> {
    while (!this.stopping && !cond()) await new Promise<void>((r) => (this.clientsChanged = r));
  }

  // ——— the service's view: tasks looked up with a precise refusal for every way a message can be out of place ———

  /** The open task `taskId` of `clientId`, or the specific reason it cannot take an upload or a report. */
  task(clientId: string, taskId: string, round: number): Task {
    const cur = this.current;
    const t = this.issued.get(taskId);
    if (!t || t.clientId !== clientId) {
      const name = this.d.registry.byId(clientId)?.name ?? clientId;
      const open = cur?.open ? `round ${cur.round} attempt ${cur.attempt} is open` : 'no round is open';
      throw new ProtocolError(
        status.PERMISSION_DENIED,
        `client ${name} was not selected for task ${taskId}: it is not assigned to client ${clientId} (${open})`,
      );
    }
    if (round !== t.round) throw new ProtocolError(status.FAILED_PRECONDITION, `task ${taskId} belongs to round ${t.round}; the message says round ${round}`);
    if (Date.now() > t.deadline) {
      throw new ProtocolError(
        status.DEADLINE_EXCEEDED,
        `task ${taskId}: the deadline of round ${t.round} attempt ${t.owner.attempt} passed at ${new Date(t.deadline).toISOString()}`,
      );
    }
    if (!t.owner.holds(t)) {
      const now = cur ? `round ${cur.round} attempt ${cur.attempt}` : 'no round';
      throw new ProtocolError(
        status.FAILED_PRECONDITION,
        `task ${taskId} is for round ${t.round} attempt ${t.owner.attempt}, which is closed; expected ${now}`,
      );
    }
    return t;
  }

  /** Whether the task's attempt is still open (a resumed upload is answered only then; later it is a replay). */
  isOpen(t: Task): boolean {
    return t.owner.holds(t);
  }

  /** The task that already accepted this ciphertext, if any (replays and resumed uploads). */
  acceptedBy(sha256Hex: string): Task | undefined {
    return this.accepted.get(sha256Hex);
  }

  /** The SecAgg session a task belongs to, or undefined for a plain round (refuses closed tasks). */
  secaggOf(t: Task): SecAggAttempt | undefined {
    if (!t.owner.holds(t)) throw new ProtocolError(status.FAILED_PRECONDITION, `task ${t.taskId} is closed`);
    return t.owner.secagg;
  }

  /** The global adapter a task's update must match. */
  baseOf(t: Task): Checkpoint {
    if (!t.owner.holds(t)) throw new ProtocolError(status.FAILED_PRECONDITION, `task ${t.taskId} is closed`);
    return t.owner.base;
  }

  /** The tensors a task's update must carry (the whole base adapter, or its lora_B tensors under 'ffa'). */
  uploadLayoutOf(t: Task): NamedTensor[] {
    if (!t.owner.holds(t)) throw new ProtocolError(status.FAILED_PRECONDITION, `task ${t.taskId} is closed`);
    return t.owner.uploadLayout;
  }

  beginUpload(t: Task): void {
    t.owner.beginUpload(t);
  }

  abortUpload(t: Task): void {
    t.owner.abortUpload(t);
  }

  /** Where a plain upload's sealed chunks go as they arrive (see Attempt.spoolUpload). */
  spoolUpload(t: Task, u: SpoolHeadFields): SpoolUpload | undefined {
    return t.owner.spoolUpload(t, u);
  }

  /** An opened plain upload: admitted, spooled, added to the sum (see Attempt.accept). */
  acceptUpload(t: Task, u: SealedUpdate): Promise<void> {
    return t.owner.accept(t, u);
  }

  acceptMaskedUpload(t: Task, sha256: Buffer): void {
    t.owner.acceptMasked(t, sha256);
  }

  /** Something a SecAgg stage waits for arrived. */
  secaggProgress(t: Task): void {
    t.owner.wake();
  }

  recordMetrics(t: Task, values: Record<string, number>, backend: string, loraRank = 0): Promise<void> {
    return t.owner.recordMetrics(t, values, backend, loraRank);
  }
}
