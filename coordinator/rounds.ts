// Where rounds are scheduled. One round, one or more attempts, each walking these phases:
//   WAITING_FOR_CLIENTS (rounds.minClients connected) → SELECTING (seeded) → TRAINING (tasks out; until every
//   selected client uploaded and reported, or the deadline) → AGGREGATING (strategy) → COMMITTING (optional
//   evaluator, then the store) → the next round.
// An attempt with fewer than rounds.minUpdates accepted updates fails cleanly: outstanding tasks are
// cancelled, nothing is committed, and the round is retried (attempt + 1) up to rounds.maxAttempts.
// No gRPC here: the service (service.ts) validates the wire and calls in; tasks go out through the registry.
import { EventEmitter } from 'node:events';
import { status } from '@grpc/grpc-js';
import { ProtocolError } from '../proto/tensor-stream';
import { PROTOCOL_VERSION } from '../proto/load';
import { sortByName, type NamedTensor, type TensorList } from '../proto/tensors';
import type { Checkpoint, CheckpointStore, Participant, SecureAggregationRecord } from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import { configForManifest } from './config';
import type { ClientRegistry } from './registry';
import { deriveSeed, selectClients } from './selection';
import type { Strategy } from './strategy/strategy';
import type { SealedBlob } from '../proto/crypto/sealed-upload';
import { decodeSum } from '../proto/secagg/encoding';
import { SecAggAttempt } from './secagg-attempt';
import type { ClientSelected, RoundCommitted, RoundEvents, RoundPhase } from './round-events';

export * from './round-events';

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
  /** Opens an accepted upload (kept sealed until aggregation) into tensors laid out like `like`. */
  readonly unseal: (blob: SealedBlob, like: TensorList) => NamedTensor[];
  readonly log: LogFn;
}

/** A client's assignment in one attempt. Kept after the attempt closes (without its delta) to explain refusals. */
export interface Task {
  readonly taskId: string;
  readonly clientId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseVersion: number;
  readonly seed: number;
  readonly deadline: number;
  state: 'assigned' | 'receiving' | 'uploaded';
  /** The accepted upload, still sealed: deltas stay encrypted in memory until they are aggregated. */
  upload?: { numExamples: number; sealed: SealedBlob };
  /** SHA-256 of the accepted ciphertext (kept after the attempt, to answer a resumed upload and spot replays). */
  acceptedSha256?: string;
  metrics?: { values: Record<string, number>; backend: string };
  /** Under SecAgg: this client's masked input is part of the committed sum. */
  inSum?: boolean;
}

type WaitFn = (cond: () => boolean, until: number) => Promise<void>;

interface Outcome {
  readonly adapter: NamedTensor[];
  readonly participants: Participant[];
  readonly seeds: Record<string, number | Record<string, number>>;
  readonly secureAggregation?: SecureAggregationRecord;
}

const outcomeIncludes = (t: Task): boolean => t.inSum === true;

interface Attempt {
  readonly round: number;
  readonly attempt: number;
  readonly base: Checkpoint;
  readonly selectionSeed: number;
  readonly tasks: Map<string, Task>;
  /** Present when this attempt runs under secure aggregation. */
  readonly secagg?: SecAggAttempt;
  open: boolean;
  wake: () => void;
}

const byClientId = (a: Task, b: Task): number => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0);

export class RoundEngine extends EventEmitter<RoundEvents> {
  private current: Attempt | null = null;
  private latestCk: Checkpoint | null = null;
  private stopping = false;
  private phaseNow: RoundPhase = 'IDLE';
  private wakeWaiters: (() => void) | null = null;
  /** Every task issued in this process, so a stale or forged task id gets a precise refusal. */
  private readonly issued = new Map<string, Task>();
  /** Ciphertext hash → the task that accepted it, for the life of this process. */
  private readonly accepted = new Map<string, Task>();
  /** Once the run ended, clients that (re)attach later are told at once instead of waiting forever. */
  private finished: { final_version: number; reason: string } | null = null;

  constructor(private readonly d: RoundEngineDeps) {
    super();
    d.registry.on('change', () => this.poke());
    d.registry.on('attached', (s: { clientId: string }) => {
      if (this.finished) d.registry.byId(s.clientId)?.sink?.write({ finished: this.finished });
      else this.resendTask(s.clientId);
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
    if (stored) {
      this.latestCk = { ...stored, adapter: sortByName(stored.adapter) };
      this.d.log('info', 'resuming from the latest version', { version: stored.manifest.version, round: stored.manifest.round });
    } else {
      this.setPhase('COMMITTING');
      // Sorted: every party sees tensors in name order (the client sorts too; checkLayout compares order).
      this.latestCk = await this.commit(sortByName(await this.d.initialAdapter()), 0, 0, [], {});
      this.d.log('info', 'committed the initial adapter', { version: 0 });
      this.emit('roundCommitted', { version: 0, round: 0, attempt: 0, participants: [], metrics: this.latestCk.manifest.metrics });
    }
    while (!this.stopping && this.latestCk.manifest.round < cfg.rounds.total) {
      const round = this.latestCk.manifest.round + 1;
      let committed = false;
      for (let attempt = 1; attempt <= cfg.rounds.maxAttempts && !this.stopping; attempt++) {
        committed = await this.runAttempt(round, attempt);
        if (committed) break;
      }
      if (!committed && !this.stopping) {
        const reason = `round ${round} failed ${cfg.rounds.maxAttempts} attempts`;
        this.finish(this.latestCk.manifest.version, reason);
        throw new Error(reason);
      }
    }
    if (this.stopping) {
      this.setPhase('STOPPED');
    } else {
      const version = this.latestCk.manifest.version;
      this.finish(version, 'all rounds committed');
      this.setPhase('FINISHED');
      this.emit('runFinished', { version, reason: 'all rounds committed' });
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

  private async runAttempt(round: number, attempt: number): Promise<boolean> {
    const cfg = this.d.config;
    this.setPhase('WAITING_FOR_CLIENTS');
    await this.waitUntil(() => this.d.registry.connected().length >= cfg.rounds.minClients);
    if (this.stopping) return false;

    this.setPhase('SELECTING');
    const base = this.latestCk!;
    const selectionSeed = deriveSeed(cfg.run.seed, 'select', round, attempt);
    const ids = selectClients(this.d.registry.connected().map((s) => s.clientId), cfg.rounds.clientsPerRound, cfg.rounds.minUpdates, selectionSeed);
    const trainingDeadline = Date.now() + cfg.rounds.deadlineMs;
    let secagg: SecAggAttempt | undefined;
    if (cfg.secagg.enabled) {
      try {
        const keys = Object.fromEntries(ids.map((id) => [id, this.d.registry.byId(id)!.publicKey]));
        secagg = new SecAggAttempt(cfg, `${cfg.run.id}/r${round}/a${attempt}`, base.manifestSha256, base.adapter, ids, keys, cfg.secagg.stageTimeoutMs);
      } catch (e) {
        return this.failAttempt(round, attempt, `secure aggregation cannot run: ${(e as Error).message}`);
      }
    }
    // Under SecAgg the four stages follow training, each with its own timeout.
    const deadline = secagg ? trainingDeadline + 3 * cfg.secagg.stageTimeoutMs : trainingDeadline;
    const tasks = new Map<string, Task>();
    const selected: ClientSelected[] = [];
    for (const clientId of ids) {
      const taskId = `r${round}-a${attempt}-${clientId}`;
      const seed = deriveSeed(cfg.run.seed, 'train', round, attempt, clientId);
      const t: Task = { taskId, clientId, round, attempt, baseVersion: base.manifest.version, seed, deadline, state: 'assigned' };
      tasks.set(taskId, t);
      this.issued.set(taskId, t);
      selected.push({ round, attempt, clientId, taskId, seed });
    }
    let wake!: () => void;
    let woken = new Promise<void>((r) => (wake = r));
    const cur: Attempt = { round, attempt, base, selectionSeed, tasks, open: true, secagg, wake: () => wake() };
    this.current = cur;

    this.setPhase('TRAINING');
    this.emit('roundStarted', { round, attempt, selected: [...ids], baseVersion: base.manifest.version, selectionSeed, deadline });
    for (const s of selected) this.emit('clientSelected', s);
    this.d.log('info', 'round started', { round, attempt, selected: ids.length, baseVersion: base.manifest.version, secureAggregation: secagg !== undefined });
    for (const t of tasks.values()) this.sendTask(t);

    const waitUntil = async (cond: () => boolean, until: number): Promise<void> => {
      const timer = setTimeout(() => cur.wake(), Math.max(0, until - Date.now()));
      try {
        while (!this.stopping && Date.now() < until && !cond()) {
          await woken;
          woken = new Promise<void>((r) => (wake = r));
        }
      } finally {
        clearTimeout(timer);
      }
    };
    try {
      let outcome: Outcome | string;
      try {
        outcome = secagg ? await this.secaggOutcome(cur, secagg, trainingDeadline, waitUntil) : await this.plainOutcome(cur, deadline, waitUntil);
      } finally {
        cur.open = false;
        for (const t of tasks.values()) {
          const finished = t.state === 'uploaded' && (secagg === undefined || outcomeIncludes(t));
          if (!finished) this.d.registry.byId(t.clientId)?.sink?.write({ cancel: { task_id: t.taskId, reason: 'round closed without this update' } });
        }
      }
      if (this.stopping) return false;
      if (typeof outcome === 'string') return this.failAttempt(round, attempt, outcome);
      this.setPhase('COMMITTING');
      const { adapter, participants, seeds, secureAggregation } = outcome;
      this.latestCk = await this.commit(adapter, round, attempt, participants, seeds, secureAggregation);
      const ev: RoundCommitted = { version: this.latestCk.manifest.version, round, attempt, participants, metrics: this.latestCk.manifest.metrics };
      this.d.log('info', 'round committed', { version: ev.version, round, attempt, participants: participants.length });
      this.emit('roundCommitted', ev);
      return true;
    } finally {
      // The attempt is over: drop the deltas (history keeps only what explains later refusals).
      for (const t of tasks.values()) t.upload = undefined;
      this.current = null;
    }
  }

  /** Plain FedAvg: wait for uploads, open them, aggregate. A string is the reason the attempt failed. */
  private async plainOutcome(cur: Attempt, deadline: number, waitUntil: WaitFn): Promise<Outcome | string> {
    const cfg = this.d.config;
    await waitUntil(() => this.allDone(cur), deadline);
    cur.open = false;
    // Arrival order must not matter: the strategy sees updates sorted by client id.
    const accepted = [...cur.tasks.values()].filter((t) => t.state === 'uploaded').sort(byClientId);
    if (this.stopping) return 'coordinator stopping';
    if (accepted.length < cfg.rounds.minUpdates) return `${accepted.length} of ${cur.tasks.size} updates arrived; ${cfg.rounds.minUpdates} needed`;
    this.setPhase('AGGREGATING');
    let result;
    try {
      result = this.d.strategy.aggregate(
        cur.base.adapter,
        accepted.map((t) => ({ clientId: t.clientId, numExamples: t.upload!.numExamples, delta: this.d.unseal(t.upload!.sealed, cur.base.adapter) })),
      );
    } catch (e) {
      return `aggregation failed: ${(e as Error).message}`;
    }
    const participants = accepted.map((t) => this.participant(t, t.upload!.numExamples, result.weights[t.clientId]));
    const seeds = { selection: cur.selectionSeed, clients: Object.fromEntries(accepted.map((t) => [t.clientId, t.seed])) };
    return { adapter: result.adapter, participants, seeds };
  }

  /** Secure aggregation: the four stages, then the decoded weighted mean of the survivors' updates. */
  private async secaggOutcome(cur: Attempt, sa: SecAggAttempt, trainingDeadline: number, waitUntil: WaitFn): Promise<Outcome | string> {
    const byClient = new Map([...cur.tasks.values()].map((t) => [t.clientId, t]));
    let out;
    try {
      out = await sa.drive(
        {
          live: (id) => this.d.registry.isLive(id),
          send: (id, ev) => this.d.registry.byId(id)?.sink?.write(ev),
          taskIdOf: (id) => byClient.get(id)!.taskId,
          waitUntil,
          stopping: () => this.stopping,
        },
        trainingDeadline,
      );
    } catch (e) {
      return `secure aggregation aborted: ${(e as Error).message}`;
    }
    this.setPhase('AGGREGATING');
    const { adapter, totalWeight } = decodeSum(out.sum, sa.config, cur.base.adapter);
    const survivors = out.survivors.map((id) => byClient.get(id)!);
    for (const t of survivors) t.inSum = true;
    // Individual weights stay hidden under SecAgg: participants carry none; only their sum is known.
    const participants = survivors.map((t) => this.participant(t, null, null));
    const seeds = { selection: cur.selectionSeed, clients: Object.fromEntries(survivors.map((t) => [t.clientId, t.seed])) };
    const secureAggregation: SecureAggregationRecord = {
      sessionId: out.sessionId,
      graph: sa.config.graph.kind === 'full' ? 'full' : `harary(k=${sa.config.graph.k})`,
      threshold: sa.config.threshold,
      selected: [...sa.config.selected],
      survivors: [...out.survivors],
      dropped: [...out.dropped],
      totalWeight,
      clipNorm: sa.config.clipNorm,
      weightCap: sa.config.weightCap,
      maxClients: sa.config.maxClients,
    };
    return { adapter, participants, seeds, secureAggregation };
  }

  private participant(t: Task, numExamples: number | null, weight: number | null): Participant {
    return {
      clientId: t.clientId,
      clientName: this.d.registry.byId(t.clientId)?.name ?? t.clientId,
      numExamples,
      weight,
      seed: t.seed,
      backend: t.metrics?.backend ?? this.d.registry.byId(t.clientId)?.backend ?? '',
      metrics: t.metrics?.values ?? {},
    };
  }

  private failAttempt(round: number, attempt: number, why: string): false {
    const reason = `round ${round} attempt ${attempt}: ${why}`;
    const final = attempt >= this.d.config.rounds.maxAttempts;
    this.d.log('warn', 'round failed', { round, attempt, reason, final });
    this.emit('roundFailed', { round, attempt, reason, final });
    return false;
  }

  private async commit(
    adapter: NamedTensor[],
    round: number,
    attempt: number,
    participants: Participant[],
    seeds: Record<string, number | Record<string, number>>,
    secureAggregation?: SecureAggregationRecord,
  ): Promise<Checkpoint> {
    const cfg = this.d.config;
    const metrics: Record<string, number> = clientMetricMeans(participants);
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
      },
    });
    return { ...ck, adapter: sortByName(ck.adapter) };
  }

  private allDone(a: Attempt): boolean {
    for (const t of a.tasks.values()) {
      const live = this.d.registry.isLive(t.clientId);
      const done = t.state === 'uploaded' && t.metrics !== undefined;
      // A selected client that disconnected is not waited for (it may still reconnect and finish in time).
      if (!done && !(live === false && t.state !== 'receiving')) return false;
    }
    return true;
  }

  private sendTask(t: Task): void {
    const tr = this.d.config.training;
    this.d.registry.byId(t.clientId)?.sink?.write({
      train: {
        task_id: t.taskId,
        round: t.round,
        attempt: t.attempt,
        base_version: t.baseVersion,
        base_manifest_sha256: this.current!.base.manifestSha256,
        deadline_unix_ms: t.deadline,
        seed: t.seed,
        secagg: this.current!.secagg?.settings,
        config: { local_steps: tr.localSteps, batch_size: tr.batchSize, learning_rate: tr.learningRate, weight_decay: tr.weightDecay, max_seq_len: tr.maxSeqLen },
      },
    });
  }

  /** A client that reconnects mid-round gets its open task again. */
  private resendTask(clientId: string): void {
    const cur = this.current;
    if (!cur?.open) return;
    for (const t of cur.tasks.values()) if (t.clientId === clientId && t.state === 'assigned') this.sendTask(t);
  }

  /** The open task `taskId` of `clientId`, or the specific reason it cannot take an upload or a report. */
  task(clientId: string, taskId: string, round: number): Task {
    const cur = this.current;
    const t = this.issued.get(taskId);
    if (!t || t.clientId !== clientId) {
      const name = this.d.registry.byId(clientId)?.name ?? clientId;
      const open = cur?.open ? `round ${cur.round} attempt ${cur.attempt} is open` : 'no round is open';
      throw new ProtocolError(status.PERMISSION_DENIED, `client ${name} was not selected for task ${taskId}: it is not assigned to client ${clientId} (${open})`);
    }
    if (round !== t.round) throw new ProtocolError(status.FAILED_PRECONDITION, `task ${taskId} belongs to round ${t.round}; the message says round ${round}`);
    const isOpen = cur !== null && cur.open && cur.tasks.get(taskId) === t;
    if (!isOpen || Date.now() > t.deadline) {
      if (Date.now() > t.deadline) {
        throw new ProtocolError(status.DEADLINE_EXCEEDED, `task ${taskId}: the deadline of round ${t.round} attempt ${t.attempt} passed at ${new Date(t.deadline).toISOString()}`);
      }
      const now = cur ? `round ${cur.round} attempt ${cur.attempt}` : 'no round';
      throw new ProtocolError(status.FAILED_PRECONDITION, `task ${taskId} is for round ${t.round} attempt ${t.attempt}, which is closed; expected ${now}`);
    }
    return t;
  }

  /** Whether the task's attempt is still open (a resumed upload is answered only then; later it is a replay). */
  isOpen(t: Task): boolean {
    const cur = this.current;
    return cur !== null && cur.open && cur.tasks.get(t.taskId) === t;
  }

  /** The SecAgg attempt a task belongs to, or undefined for a plain round (refuses closed tasks). */
  secaggOf(t: Task): SecAggAttempt | undefined {
    const cur = this.current;
    if (!cur || cur.tasks.get(t.taskId) !== t) throw new ProtocolError(status.FAILED_PRECONDITION, `task ${t.taskId} is closed`);
    return cur.secagg;
  }

  /** A masked input went into the SecAgg sum: the task is done (nothing of it is kept but the hash). */
  acceptMaskedUpload(t: Task, sha256: Buffer): void {
    t.state = 'uploaded';
    t.acceptedSha256 = sha256.toString('hex');
    this.accepted.set(t.acceptedSha256, t);
    this.emit('updateAccepted', { round: t.round, attempt: t.attempt, clientId: t.clientId, numExamples: 0 });
    this.current?.wake();
  }

  /** Something a SecAgg stage waits for arrived. */
  secaggProgress(): void {
    this.current?.wake();
  }

  /** The global adapter a task's update must match. */
  baseOf(t: Task): Checkpoint {
    const cur = this.current;
    if (!cur || cur.tasks.get(t.taskId) !== t) throw new ProtocolError(status.FAILED_PRECONDITION, `task ${t.taskId} is closed`);
    return cur.base;
  }

  beginUpload(t: Task): void {
    if (t.state === 'uploaded') throw new ProtocolError(status.ALREADY_EXISTS, `task ${t.taskId} already has an accepted update`);
    if (t.state === 'receiving') throw new ProtocolError(status.ALREADY_EXISTS, `an upload for task ${t.taskId} is already in progress`);
    t.state = 'receiving';
  }

  /** An upload that was refused or broke off: the task can take another one. */
  abortUpload(t: Task): void {
    if (t.state === 'receiving') t.state = 'assigned';
    this.current?.wake();
  }

  /** The task that already accepted this ciphertext, if any (replays and resumed uploads). */
  acceptedBy(sha256Hex: string): Task | undefined {
    return this.accepted.get(sha256Hex);
  }

  acceptUpload(t: Task, numExamples: number, sealed: SealedBlob): void {
    const cur = this.current;
    if (!cur?.open || cur.tasks.get(t.taskId) !== t || Date.now() > t.deadline) {
      t.state = 'assigned';
      throw new ProtocolError(status.DEADLINE_EXCEEDED, `task ${t.taskId}: the round closed before the upload completed`);
    }
    this.checkWithStrategy(cur, t, numExamples);
    t.upload = { numExamples, sealed };
    t.state = 'uploaded';
    t.acceptedSha256 = sealed.sha256.toString('hex');
    this.accepted.set(t.acceptedSha256, t);
    this.emit('updateAccepted', { round: t.round, attempt: t.attempt, clientId: t.clientId, numExamples });
    cur.wake();
  }

  /** The value range the strategy aggregates; the service's decoder enforces it while checking finiteness. */
  get updateBound(): { maxAbs: number; owner: string } {
    return { maxAbs: this.d.strategy.maxAbsDelta ?? Infinity, owner: `the ${this.d.strategy.name} strategy` };
  }

  /**
   * Refuses, at upload time, an update whose weight the strategy could not add to the others (e.g. FedAvg's
   * exact-sum bound), so one bad update cannot sink a whole round. Empty layouts: the check costs nothing.
   * (Values were already range-checked by the decoder against updateBound.)
   */
  private checkWithStrategy(cur: Attempt, t: Task, numExamples: number): void {
    const others = [...cur.tasks.values()].filter((x) => x !== t && x.upload);
    try {
      this.d.strategy.aggregate([], [...others.map((x) => ({ clientId: x.clientId, numExamples: x.upload!.numExamples, delta: [] })), { clientId: t.clientId, numExamples, delta: [] }]);
    } catch (e) {
      t.state = 'assigned';
      throw new ProtocolError(status.INVALID_ARGUMENT, `update refused by the ${this.d.strategy.name} strategy: ${(e as Error).message}`);
    }
  }

  recordMetrics(t: Task, values: Record<string, number>, backend: string): void {
    t.metrics = { values, backend };
    this.current?.wake();
  }

  private poke(): void {
    this.current?.wake();
    const w = this.wakeWaiters;
    this.wakeWaiters = null;
    w?.();
  }

  private async waitUntil(cond: () => boolean): Promise<void> {
    while (!this.stopping && !cond()) await new Promise<void>((r) => (this.wakeWaiters = r));
  }
}

/** Example-weighted mean (plain mean under SecAgg, where weights are hidden) of every metric the participants reported, as clients.<name>. */
function clientMetricMeans(ps: readonly Participant[]): Record<string, number> {
  const sums = new Map<string, { s: number; w: number }>();
  for (const p of ps) {
    for (const [k, v] of Object.entries(p.metrics)) {
      if (!Number.isFinite(v)) continue;
      const e = sums.get(k) ?? { s: 0, w: 0 };
      const w = p.numExamples ?? 1;
      e.s += v * w;
      e.w += w;
      sums.set(k, e);
    }
  }
  const out: Record<string, number> = {};
  for (const [k, { s, w }] of [...sums.entries()].sort()) out[`clients.${k}`] = s / w;
  return out;
}
