// Where rounds are scheduled. One round, one or more attempts, each walking these phases:
//   WAITING_FOR_CLIENTS (rounds.minClients connected) → SELECTING (seeded) → TRAINING (tasks out; until every
//   selected client uploaded and reported, or the deadline) → AGGREGATING (strategy) → COMMITTING (optional
//   evaluator, then the store) → the next round.
// An attempt with fewer than rounds.minUpdates accepted updates fails cleanly: outstanding tasks are
// cancelled, nothing is committed, and the round is retried (attempt + 1) up to rounds.maxAttempts.
// No gRPC here: the service (service.ts) validates the wire and calls in; tasks go out through the registry.
import { PROTOCOL_VERSION } from '../proto/constants';
import { sortByName, type NamedTensor, type TensorList } from '../proto/tensors';
import type { Checkpoint, CheckpointStore, Participant, SecureAggregationRecord } from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import { configForManifest } from './config';
import type { ClientRegistry } from './registry';
import { deriveSeed, selectClients } from './selection';
import type { Strategy } from './strategy/strategy';
import type { SealedBlob } from '../proto/crypto/sealed-upload';
import { aggregatePlain, aggregateSecAgg, clientMetricMeans, type Outcome, type OutcomeContext } from './round-outcome';
import { SecAggAttempt } from './secagg-attempt';
import { TaskDesk, type Attempt, type Task } from './task-desk';
import type { ClientSelected, RoundCommitted, RoundEvents, RoundPhase } from './round-events';

export * from './round-events';
export type { Task } from './task-desk';

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

type WaitFn = (cond: () => boolean, until: number) => Promise<void>;


const byClientId = (a: Task, b: Task): number => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0);

export class RoundEngine extends TaskDesk {
  private latestCk: Checkpoint | null = null;
  private stopping = false;
  private phaseNow: RoundPhase = 'IDLE';
  private wakeWaiters: (() => void) | null = null;
  /** Once the run ended, clients that (re)attach later are told at once instead of waiting forever. */
  private finished: { final_version: number; reason: string } | null = null;

  constructor(private readonly d: RoundEngineDeps) {
    super(d.registry, d.strategy);
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
    // Under SecAgg four stages follow training (share keys, masked input, consistency, unmask), each with its own timeout.
    const deadline = secagg ? trainingDeadline + 4 * cfg.secagg.stageTimeoutMs : trainingDeadline;
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
      // The timer, not Date.now(), ends the wait: a timer may fire a millisecond before Date.now() reaches
      // `until`, and a loop that re-checked the clock would then sleep with nobody left to wake it.
      let expired = false;
      const timer = setTimeout(() => {
        expired = true;
        cur.wake();
      }, Math.max(0, until - Date.now()));
      try {
        while (!this.stopping && !expired && !cond()) {
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
          const finished = t.state === 'uploaded' && (secagg === undefined || t.inSum === true);
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

  /** Plain FedAvg: wait for uploads, then open and aggregate them. A string is the reason the attempt failed. */
  private async plainOutcome(cur: Attempt, deadline: number, waitUntil: WaitFn): Promise<Outcome | string> {
    const cfg = this.d.config;
    await waitUntil(() => this.allDone(cur), deadline);
    cur.open = false;
    // Arrival order must not matter: the strategy sees updates sorted by client id.
    const accepted = [...cur.tasks.values()].filter((t) => t.state === 'uploaded').sort(byClientId);
    if (this.stopping) return 'coordinator stopping';
    if (accepted.length < cfg.rounds.minUpdates) return `${accepted.length} of ${cur.tasks.size} updates arrived; ${cfg.rounds.minUpdates} needed`;
    this.setPhase('AGGREGATING');
    return aggregatePlain(this.outcomeContext(cur), accepted);
  }

  /** Secure aggregation: the four stages over the task streams, then the decoded weighted mean. */
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
    return aggregateSecAgg(this.outcomeContext(cur), sa, out);
  }

  private outcomeContext(cur: Attempt): OutcomeContext {
    return { registry: this.d.registry, strategy: this.d.strategy, unseal: this.d.unseal, base: cur.base, selectionSeed: cur.selectionSeed, tasks: cur.tasks };
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
