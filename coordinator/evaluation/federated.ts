// Federated evaluation of a candidate version: after a round aggregates and before its version is committed, the
// selected sites download the candidate (DownloadRequest.evaluation_task_id), evaluate it on their validation split
// (Trainer.evaluate) and report loss / accuracy / examples (ReportEvaluation). The figures are the example-weighted
// means of the reports, in client-id order, so any arrival order gives the same bits; they are signed into the
// version's own manifest (a committed manifest is immutable and hash-chained: figures that arrived after the
// commit could not enter it). The wait is bounded: every selected site answered or went away (left, or away longer
// than rounds.reconnectGraceMs), or the deadline.
// Under SecAgg the coordinator sees each site's own figures here (never its update); only the aggregate is kept.
import { createHash } from 'node:crypto';
import { ProtocolError, status } from '../../proto/errors';
import { dataChunks } from '../../proto/tensor-stream';
import type { NamedTensor } from '../../proto/tensors';
import type { FederatedEvaluationRecord } from '../checkpoints/types';

export interface EvaluationReportIn {
  readonly version: number;
  readonly numExamples: number;
  readonly loss: number;
  readonly accuracy?: number;
}

export interface EvaluationTask {
  readonly taskId: string;
  readonly clientId: string;
  readonly round: number;
  readonly version: number;
  readonly deadline: number;
  readonly owner: FederatedEvaluation;
  report?: EvaluationReportIn;
  /** The digest of the report taken (report-digest.ts): a repeat of it is acknowledged, another report refused. */
  reportSha256?: string;
}

/** SHA-256 (hex) of an adapter's tensor-stream data bytes: what a download's trailer carries. */
export function adapterStreamSha256(adapter: readonly NamedTensor[], chunkBytes: number): string {
  const h = createHash('sha256');
  for (const c of dataChunks(adapter, chunkBytes)) h.update(c);
  return h.digest('hex');
}

/** One evaluation: its tasks, the candidate they evaluate, the reports, and the one wait. */
export class FederatedEvaluation {
  readonly tasks = new Map<string, EvaluationTask>();
  private closed = false;
  private wakeUp: () => void = () => undefined;
  private woken: Promise<void>;

  constructor(
    readonly round: number,
    readonly version: number,
    readonly adapter: readonly NamedTensor[],
    readonly adapterSha256: string,
    readonly deadline: number,
  ) {
    this.woken = new Promise<void>((r) => (this.wakeUp = r));
  }

  add(taskId: string, clientId: string): EvaluationTask {
    const t: EvaluationTask = { taskId, clientId, round: this.round, version: this.version, deadline: this.deadline, owner: this };
    this.tasks.set(taskId, t);
    return t;
  }

  get open(): boolean {
    return !this.closed;
  }

  close(): void {
    this.closed = true;
    this.wake();
  }

  wake(): void {
    this.wakeUp();
  }

  /** Takes a site's report for its task (refusing one for another version, a different second one, or a late one). */
  accept(t: EvaluationTask, r: EvaluationReportIn, sha256: string): void {
    if (!this.open || this.tasks.get(t.taskId) !== t) throw closedTask(t);
    if (Date.now() > t.deadline) {
      throw new ProtocolError(status.DEADLINE_EXCEEDED, `evaluation task ${t.taskId}: its deadline passed at ${new Date(t.deadline).toISOString()}`);
    }
    if (r.version !== t.version) {
      throw new ProtocolError(status.FAILED_PRECONDITION, `evaluation report is for version ${r.version}; task ${t.taskId} evaluates version ${t.version}`);
    }
    if (t.report) {
      throw new ProtocolError(
        status.ALREADY_EXISTS,
        `evaluation task ${t.taskId} already has a report, with other content (the same report again is acknowledged)`,
      );
    }
    t.report = r;
    t.reportSha256 = sha256;
    this.wake();
  }

  /**
   * Resolves when every task reported or its site is gone (`awaited` says of the sites yet to report whether any
   * is still waited for: rounds.reconnectGraceMs, reconnect-grace.ts), at the deadline, or when `stopping`.
   */
  async waitFor(awaited: (clientIds: string[]) => boolean, stopping: () => boolean): Promise<void> {
    let expired = false;
    const timer = setTimeout(
      () => {
        expired = true;
        this.wake();
      },
      Math.max(0, this.deadline - Date.now()),
    );
    const done = (): boolean => !awaited([...this.tasks.values()].filter((t) => t.report === undefined).map((t) => t.clientId));
    try {
      while (!stopping() && !expired && !done()) {
        await this.woken;
        this.woken = new Promise<void>((r) => (this.wakeUp = r));
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /** Reports with examples, in client-id order: what the figures are made of. */
  counted(): EvaluationReportIn[] {
    return [...this.tasks.values()]
      .filter((t) => t.report && t.report.numExamples > 0)
      .sort((a, b) => (a.clientId < b.clientId ? -1 : a.clientId > b.clientId ? 1 : 0))
      .map((t) => t.report!);
  }
}

/** The example-weighted means of the counted reports (accuracy only when every one carried it). */
export function aggregateReports(reports: readonly EvaluationReportIn[], selected: number): FederatedEvaluationRecord {
  let examples = 0;
  let loss = 0;
  let acc = 0;
  for (const r of reports) {
    examples += r.numExamples;
    loss += r.numExamples * r.loss;
    acc += r.numExamples * (r.accuracy ?? 0);
  }
  const withAccuracy = reports.length > 0 && reports.every((r) => r.accuracy !== undefined);
  return { loss: loss / examples, ...(withAccuracy ? { accuracy: acc / examples } : {}), examples, sites: reports.length, selected };
}

export function closedTask(t: EvaluationTask): ProtocolError {
  return new ProtocolError(status.FAILED_PRECONDITION, `evaluation task ${t.taskId} (round ${t.round}, version ${t.version}) is closed`);
}
