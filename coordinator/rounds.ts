// Where rounds are scheduled. One round, one or more attempts:
//   wait for rounds.minClients → select (seeded) → send tasks → collect uploads until all selected clients
//   are done or the deadline passes → aggregate (strategy) → evaluate (optional hook) → commit a version.
// An attempt with fewer than rounds.minUpdates accepted updates fails cleanly: outstanding tasks are
// cancelled, nothing is committed, and the round is retried (attempt + 1) up to rounds.maxAttempts.
// No gRPC here: the service (service.ts) validates the wire and calls in; tasks go out through the registry.
import { EventEmitter } from 'node:events';
import { status } from '@grpc/grpc-js';
import { ProtocolError } from '../proto/tensor-stream';
import { PROTOCOL_VERSION } from '../proto/load';
import type { NamedTensor, TensorList } from '../proto/tensors';
import type { Checkpoint, CheckpointStore, Participant } from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import { configForManifest } from './config';
import type { ClientRegistry } from './registry';
import { deriveSeed, selectClients } from './selection';
import type { Strategy } from './strategy/strategy';

export type Evaluator = (adapter: TensorList, version: number) => Promise<Record<string, number>>;

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
  readonly log: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
}

/** A client's assignment in the current attempt. */
export interface Task {
  readonly taskId: string;
  readonly clientId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseVersion: number;
  readonly seed: number;
  readonly deadline: number;
  state: 'assigned' | 'receiving' | 'uploaded';
  upload?: { numExamples: number; delta: NamedTensor[] };
  metrics?: { values: Record<string, number>; backend: string };
}

interface Attempt {
  readonly round: number;
  readonly attempt: number;
  readonly base: Checkpoint;
  readonly selectionSeed: number;
  readonly tasks: Map<string, Task>;
  open: boolean;
  wake: () => void;
}

export interface RoundCommitted {
  readonly version: number;
  readonly round: number;
  readonly attempt: number;
  readonly participants: readonly Participant[];
  readonly metrics: Record<string, number>;
}

export class RoundEngine extends EventEmitter {
  private current: Attempt | null = null;
  private latestCk: Checkpoint | null = null;
  private stopping = false;
  private wakeWaiters: (() => void) | null = null;

  constructor(private readonly d: RoundEngineDeps) {
    super();
    d.registry.on('change', () => this.poke());
    d.registry.on('attached', (s: { clientId: string }) => this.resendTask(s.clientId));
  }

  /** The checkpoint tasks currently start from. */
  get latest(): Checkpoint | null {
    return this.latestCk;
  }

  /** Runs rounds until rounds.total are committed; resumes from the store's latest version. */
  async run(): Promise<Checkpoint> {
    const cfg = this.d.config;
    this.latestCk = await this.d.store.latest();
    if (!this.latestCk) {
      this.latestCk = await this.commit(await this.d.initialAdapter(), 0, 0, [], {});
      this.d.log('info', 'committed the initial adapter', { version: 0 });
      const ev: RoundCommitted = { version: 0, round: 0, attempt: 0, participants: [], metrics: this.latestCk.manifest.metrics };
      this.emit('roundCommitted', ev);
    } else {
      this.d.log('info', 'resuming from the latest version', { version: this.latestCk.manifest.version, round: this.latestCk.manifest.round });
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
        this.d.registry.broadcast({ finished: { final_version: this.latestCk.manifest.version, reason } });
        throw new Error(reason);
      }
    }
    if (!this.stopping) {
      this.d.registry.broadcast({ finished: { final_version: this.latestCk.manifest.version, reason: 'all rounds committed' } });
      this.emit('runFinished', { version: this.latestCk.manifest.version });
    }
    return this.latestCk;
  }

  stop(): void {
    this.stopping = true;
    this.current?.wake();
    this.poke();
  }

  private async runAttempt(round: number, attempt: number): Promise<boolean> {
    const cfg = this.d.config;
    await this.waitUntil(() => this.d.registry.connected().length >= cfg.rounds.minClients);
    if (this.stopping) return false;
    const base = this.latestCk!;
    const selectionSeed = deriveSeed(cfg.run.seed, 'select', round, attempt);
    const ids = selectClients(this.d.registry.connected().map((s) => s.clientId), cfg.rounds.clientsPerRound, cfg.rounds.minUpdates, selectionSeed);
    const deadline = Date.now() + cfg.rounds.deadlineMs;
    const tasks = new Map<string, Task>();
    for (const clientId of ids) {
      const taskId = `r${round}-a${attempt}-${clientId}`;
      const seed = deriveSeed(cfg.run.seed, 'train', round, attempt, clientId);
      tasks.set(taskId, { taskId, clientId, round, attempt, baseVersion: base.manifest.version, seed, deadline, state: 'assigned' });
    }
    let wake!: () => void;
    let woken = new Promise<void>((r) => (wake = r));
    const cur: Attempt = { round, attempt, base, selectionSeed, tasks, open: true, wake: () => wake() };
    this.current = cur;
    this.emit('roundStarted', { round, attempt, selected: ids, baseVersion: base.manifest.version });
    this.d.log('info', 'round started', { round, attempt, selected: ids.length, baseVersion: base.manifest.version });
    for (const t of tasks.values()) this.sendTask(t);

    const timer = setTimeout(() => cur.wake(), Math.max(0, deadline - Date.now()));
    try {
      while (!this.stopping && Date.now() < deadline && !this.allDone(cur)) {
        await woken;
        woken = new Promise<void>((r) => (wake = r));
      }
    } finally {
      clearTimeout(timer);
      cur.open = false;
    }
    const accepted = [...tasks.values()].filter((t) => t.state === 'uploaded').sort((a, b) => (a.clientId < b.clientId ? -1 : 1));
    for (const t of tasks.values()) {
      if (t.state !== 'uploaded') this.d.registry.byId(t.clientId)?.sink?.write({ cancel: { task_id: t.taskId, reason: 'round closed without this update' } });
    }
    if (this.stopping) return false;
    if (accepted.length < cfg.rounds.minUpdates) {
      const reason = `round ${round} attempt ${attempt}: ${accepted.length} of ${ids.length} updates arrived; ${cfg.rounds.minUpdates} needed`;
      this.d.log('warn', 'round failed', { round, attempt, reason });
      this.emit('roundFailed', { round, attempt, reason });
      this.current = null;
      return false;
    }
    const result = this.d.strategy.aggregate(
      base.adapter,
      accepted.map((t) => ({ clientId: t.clientId, numExamples: t.upload!.numExamples, delta: t.upload!.delta })),
    );
    const participants: Participant[] = accepted.map((t) => ({
      clientId: t.clientId,
      clientName: this.d.registry.byId(t.clientId)?.name ?? t.clientId,
      numExamples: t.upload!.numExamples,
      weight: result.weights[t.clientId],
      seed: t.seed,
      backend: t.metrics?.backend ?? this.d.registry.byId(t.clientId)?.backend ?? '',
      metrics: t.metrics?.values ?? {},
    }));
    const seeds = { selection: selectionSeed, clients: Object.fromEntries(accepted.map((t) => [t.clientId, t.seed])) };
    this.latestCk = await this.commit(result.adapter, round, attempt, participants, seeds);
    this.current = null;
    const ev: RoundCommitted = { version: this.latestCk.manifest.version, round, attempt, participants, metrics: this.latestCk.manifest.metrics };
    this.d.log('info', 'round committed', { version: ev.version, round, attempt, participants: participants.length });
    this.emit('roundCommitted', ev);
    return true;
  }

  private async commit(
    adapter: NamedTensor[],
    round: number,
    attempt: number,
    participants: Participant[],
    seeds: Record<string, number | Record<string, number>>,
  ): Promise<Checkpoint> {
    const cfg = this.d.config;
    const metrics: Record<string, number> = clientMetricMeans(participants);
    if (this.d.evaluator) {
      const version = this.latestCk ? this.latestCk.manifest.version + 1 : 0;
      for (const [k, v] of Object.entries(await this.d.evaluator(adapter, version))) metrics[`heldout.${k}`] = v;
    }
    return this.d.store.commit({
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
      },
    });
  }

  private allDone(a: Attempt): boolean {
    for (const t of a.tasks.values()) {
      const live = this.d.registry.byId(t.clientId)?.sink != null;
      const done = t.state === 'uploaded' && t.metrics !== undefined;
      // A selected client that disconnected is not waited for (it may still reconnect and finish).
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

  /** The open task `taskId` of `clientId`, or the specific reason it cannot take an upload/report. */
  task(clientId: string, taskId: string, round: number): Task {
    const cur = this.current;
    const t = cur?.tasks.get(taskId);
    if (!cur || !t) {
      if (cur && round !== cur.round) throw new ProtocolError(status.FAILED_PRECONDITION, `round ${round} is not open; the current round is ${cur.round}`);
      throw new ProtocolError(status.FAILED_PRECONDITION, `task ${taskId} is not open${cur ? ` (round ${cur.round} attempt ${cur.attempt} is)` : ' (no round is in progress)'}`);
    }
    if (t.clientId !== clientId) throw new ProtocolError(status.PERMISSION_DENIED, `task ${taskId} was not assigned to client ${clientId}`);
    if (round !== t.round) throw new ProtocolError(status.FAILED_PRECONDITION, `task ${taskId} belongs to round ${t.round}; the message says round ${round}`);
    if (!cur.open || Date.now() > t.deadline) throw new ProtocolError(status.DEADLINE_EXCEEDED, `task ${taskId}: the round's deadline has passed`);
    return t;
  }

  /** The global adapter a task's update must match. */
  baseOf(t: Task): Checkpoint {
    return this.current!.base;
  }

  beginUpload(t: Task): void {
    if (t.state === 'uploaded') throw new ProtocolError(status.ALREADY_EXISTS, `task ${t.taskId} already has an accepted update`);
    if (t.state === 'receiving') throw new ProtocolError(status.ALREADY_EXISTS, `an upload for task ${t.taskId} is already in progress`);
    t.state = 'receiving';
  }

  abortUpload(t: Task): void {
    if (t.state === 'receiving') t.state = 'assigned';
    this.current?.wake();
  }

  acceptUpload(t: Task, numExamples: number, delta: NamedTensor[]): void {
    if (!this.current?.open || this.current.tasks.get(t.taskId) !== t || Date.now() > t.deadline) {
      t.state = 'assigned';
      throw new ProtocolError(status.DEADLINE_EXCEEDED, `task ${t.taskId}: the round closed before the upload completed`);
    }
    t.upload = { numExamples, delta };
    t.state = 'uploaded';
    this.emit('updateAccepted', { round: t.round, attempt: t.attempt, clientId: t.clientId, numExamples });
    this.current.wake();
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

/** Example-weighted mean of every metric the participants reported, as clients.<name>. */
function clientMetricMeans(ps: readonly Participant[]): Record<string, number> {
  const sums = new Map<string, { s: number; w: number }>();
  for (const p of ps) {
    for (const [k, v] of Object.entries(p.metrics)) {
      if (!Number.isFinite(v)) continue;
      const e = sums.get(k) ?? { s: 0, w: 0 };
      e.s += v * p.numExamples;
      e.w += p.numExamples;
      sums.set(k, e);
    }
  }
  const out: Record<string, number> = {};
  for (const [k, { s, w }] of [...sums.entries()].sort()) out[`clients.${k}`] = s / w;
  return out;
}
