// The service's view of the round engine: the tasks it issued, looked up with a precise refusal for every way
// a message can be out of place (not selected, wrong round, closed attempt, past the deadline), and the state of
// each task's upload (receiving → uploaded, kept sealed; replays and resumed uploads by ciphertext hash).
// RoundEngine (rounds.ts) extends it with the scheduling.
import { EventEmitter } from 'node:events';
import { ProtocolError, status } from '../proto/errors';
import type { SealedBlob } from '../proto/crypto/sealed-upload';
import type { Checkpoint } from './checkpoints/types';
import type { ClientRegistry } from './registry';
import type { RoundEvents } from './round-events';
import type { SecAggAttempt } from './secagg-attempt';
import type { Strategy } from './strategy/strategy';

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

/** One attempt of a round while it runs. */
export interface Attempt {
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

export abstract class TaskDesk extends EventEmitter<RoundEvents> {
  protected current: Attempt | null = null;
  /** Every task issued in this process, so a stale or forged task id gets a precise refusal. */
  protected readonly issued = new Map<string, Task>();
  /** Ciphertext hash → the task that accepted it, for the life of this process. */
  private readonly accepted = new Map<string, Task>();

  constructor(protected readonly registry: ClientRegistry, protected readonly strategy: Strategy) {
    super();
  }

  /** The open task `taskId` of `clientId`, or the specific reason it cannot take an upload or a report. */
  task(clientId: string, taskId: string, round: number): Task {
    const cur = this.current;
    const t = this.issued.get(taskId);
    if (!t || t.clientId !== clientId) {
      const name = this.registry.byId(clientId)?.name ?? clientId;
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
    return { maxAbs: this.strategy.maxAbsDelta ?? Infinity, owner: `the ${this.strategy.name} strategy` };
  }

  /**
   * Refuses, at upload time, an update whose weight the strategy could not add to the others (e.g. FedAvg's
   * exact-sum bound), so one bad update cannot sink a whole round. Empty layouts: the check costs nothing.
   * (Values were already range-checked by the decoder against updateBound.)
   */
  private checkWithStrategy(cur: Attempt, t: Task, numExamples: number): void {
    const others = [...cur.tasks.values()].filter((x) => x !== t && x.upload);
    try {
      this.strategy.aggregate([], [...others.map((x) => ({ clientId: x.clientId, numExamples: x.upload!.numExamples, delta: [] })), { clientId: t.clientId, numExamples, delta: [] }]);
    } catch (e) {
      t.state = 'assigned';
      throw new ProtocolError(status.INVALID_ARGUMENT, `update refused by the ${this.strategy.name} strategy: ${(e as Error).message}`);
    }
  }

  recordMetrics(t: Task, values: Record<string, number>, backend: string): void {
    t.metrics = { values, backend };
    this.current?.wake();
  }
}
