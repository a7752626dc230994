// The round engine's federated evaluation (federated.ts holds one evaluation): which sites are asked, the
// EvaluateTask each receives on its task stream, and the service's lookups for DownloadAdapter and
// ReportEvaluation, each fault with its own status. No gRPC here.
import { ProtocolError, status } from '../../proto/errors';
import type { NamedTensor } from '../../proto/tensors';
import type { FederatedEvaluationRecord, Participant } from '../checkpoints/types';
import type { CoordinatorConfig } from '../config-types';
import type { ClientRegistry } from '../registry';
import { ReconnectGrace } from '../reconnect-grace';
import { deriveSeed, selectClients } from '../selection';
import { FederatedEvaluation, adapterStreamSha256, aggregateReports, closedTask, type EvaluationReportIn, type EvaluationTask } from './federated';

type Log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface EvaluationsDeps {
  readonly config: CoordinatorConfig;
  readonly registry: ClientRegistry;
  readonly log: Log;
  readonly stopping: () => boolean;
  /** The engine's per-process epoch: task ids are never reissued across restarts. */
  readonly epoch: string;
}

export class Evaluations {
  private current: FederatedEvaluation | null = null;
  /** Every evaluation task issued in this process, so a stale or forged id gets a precise refusal. */
  private readonly issued = new Map<string, EvaluationTask>();

  constructor(private readonly d: EvaluationsDeps) {}

  /** Whether round `round`'s candidate is evaluated by sites. */
  due(round: number): boolean {
    const e = this.d.config.evaluation;
    return e.enabled && round % e.everyRounds === 0;
  }

  /**
   * Asks the selected sites to evaluate the candidate that will be committed as `version`, waits (bounded), and
   * returns the aggregate, or undefined when too few sites could be asked or reported with examples.
   */
  async run(
    adapter: readonly NamedTensor[],
    round: number,
    version: number,
    participants: readonly Participant[],
  ): Promise<FederatedEvaluationRecord | undefined> {
    const cfg = this.d.config;
    const e = cfg.evaluation;
    const connected = new Set(this.d.registry.connected().map((s) => s.clientId));
    // A participant whose stream dropped a moment ago (its report may have come on a reconnected channel before its
    // stream did) is asked too, as the round waited for it: it gets its task when its stream attaches (resend).
    const back = (id: string): boolean => connected.has(id) || this.d.registry.awayMs(id) < cfg.rounds.reconnectGraceMs;
    const pool = e.sites === 'participants' ? participants.map((p) => p.clientId).filter(back) : [...connected];
    if (pool.length < e.minSites) {
      this.d.log('warn', 'federated evaluation skipped: too few sites to ask', { round, version, available: pool.length, minSites: e.minSites });
      return undefined;
    }
    const ids = selectClients(pool, e.fraction < 1 ? e.fraction : pool.length, e.minSites, deriveSeed(cfg.run.seed, 'evaluate', round));
    const ev = new FederatedEvaluation(round, version, adapter, adapterStreamSha256(adapter, cfg.transport.chunkBytes), Date.now() + e.deadlineMs);
    for (const id of ids) this.issued.set(`e${round}-v${version}-${this.d.epoch}-${id}`, ev.add(`e${round}-v${version}-${this.d.epoch}-${id}`, id));
    this.current = ev;
    try {
      this.d.log('info', 'federated evaluation started', { round, version, selected: ids.length });
      for (const t of ev.tasks.values()) this.send(t);
      // A site whose stream dropped while it evaluates is waited for as a round waits for its update.
      const grace = new ReconnectGrace(this.d.registry, cfg.rounds.reconnectGraceMs, () => ev.wake());
      try {
        await ev.waitFor((ids) => grace.anyAwaited(ids), this.d.stopping);
      } finally {
        grace.clear();
      }
    } finally {
      ev.close();
      this.current = null;
    }
    const reports = ev.counted();
    const answered = [...ev.tasks.values()].filter((t) => t.report).length;
    if (reports.length < e.minSites) {
      this.d.log('warn', 'federated evaluation without figures: too few reports with examples', {
        round,
        version,
        selected: ids.length,
        answered,
        withExamples: reports.length,
        minSites: e.minSites,
      });
      return undefined;
    }
    const record = aggregateReports(reports, ids.length);
    this.d.log('info', 'federated evaluation done', { round, version, ...record, answered });
    return record;
  }

  private send(t: EvaluationTask): void {
    this.d.registry.byId(t.clientId)?.sink?.write({
      evaluate: {
        task_id: t.taskId,
        round: t.round,
        version: t.version,
        adapter_sha256: t.owner.adapterSha256,
        deadline_unix_ms: t.deadline,
        // A 'flora' candidate is a stack at scaling 1 (coordinator/flora-stack.ts), not an adapter at lora.alpha / r.
        lora_stack: this.d.config.lora.aggregation === 'flora',
      },
    });
  }

  /** A site that reconnects during an evaluation gets its task again (unless it already reported). */
  resend(clientId: string): void {
    const ev = this.current;
    if (!ev?.open) return;
    for (const t of ev.tasks.values()) if (t.clientId === clientId && !t.report) this.send(t);
  }

  /** Registry changes (a site gone) may end the wait. */
  wake(): void {
    this.current?.wake();
  }

  // ——— the service's view ———

  /** The open evaluation task `taskId` of `clientId`, or the specific reason it cannot be used. */
  task(clientId: string, clientName: string, taskId: string): EvaluationTask {
    const t = this.issued.get(taskId);
    if (!t || t.clientId !== clientId) {
      throw new ProtocolError(
        status.PERMISSION_DENIED,
        `site ${clientName} was not asked to evaluate task ${taskId}: no evaluation task of that id is assigned to it`,
      );
    }
    if (!t.owner.open) throw closedTask(t);
    return t;
  }

  /** The candidate adapter an open evaluation task evaluates (DownloadAdapter with evaluation_task_id). */
  candidate(clientId: string, clientName: string, taskId: string): readonly NamedTensor[] {
    return this.task(clientId, clientName, taskId).owner.adapter;
  }

  /**
   * Takes a site's report, `sha256` its digest (report-digest.ts); false when it repeats the one this task already
   * took (answered as the first was, even once the evaluation closed: it changes nothing).
   */
  report(clientId: string, clientName: string, taskId: string, sha256: string, r: EvaluationReportIn): boolean {
    const known = this.issued.get(taskId);
    if (known && known.clientId === clientId && known.reportSha256 === sha256) return false;
    const t = this.task(clientId, clientName, taskId);
    t.owner.accept(t, r, sha256);
    this.d.log('info', 'evaluation report accepted', { taskId, clientId, version: r.version, numExamples: r.numExamples });
    return true;
  }
}
