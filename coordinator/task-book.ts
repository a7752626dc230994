// Every task this process issued and every ciphertext it accepted, and the service's view of them: a task looked
// up with a precise refusal for every way a message can be out of place (not this client's, another round, past
// its deadline, its attempt closed). Tasks outlive their attempt (without any data) to explain late messages.
import { ProtocolError, status } from '../proto/errors';
import type { NamedTensor } from '../proto/tensors';
import type { Attempt } from './attempt';
import type { Task } from './task';
import type { Checkpoint } from './checkpoints/types';
import type { ClientRegistry } from './registry';
import type { SecAggAttempt } from './secagg-attempt';

export class TaskBook {
  /** Every task issued in this process, so a stale or forged task id gets a precise refusal. */
  private readonly issued = new Map<string, Task>();
  /** Ciphertext hash → the task that accepted it, for the life of this process. */
  private readonly accepted = new Map<string, Task>();

  constructor(private readonly registry: ClientRegistry) {}

  issue(t: Task): void {
    this.issued.set(t.taskId, t);
  }

  /** A task accepted an update: remembered by its ciphertext hash (replays and resumed uploads). */
  noteAccepted(t: Task): void {
    if (t.acceptedSha256) this.accepted.set(t.acceptedSha256, t);
  }

  /** The open task `taskId` of `clientId`, or the specific reason it cannot take an upload or a report. */
  task(clientId: string, taskId: string, round: number, cur: Attempt | null): Task {
    const t = this.open(clientId, taskId, round, cur);
    if (t.state === 'declined' || t.state === 'declining') {
      throw new ProtocolError(status.FAILED_PRECONDITION, `task ${taskId} was declined by its site: it takes no update, report or SecAgg message`);
    }
    return t;
  }

  /** The task `taskId` of `clientId` while its attempt is open, declined or not (DeclineTask: a repeat is answered). */
  open(clientId: string, taskId: string, round: number, cur: Attempt | null): Task {
    const t = this.issued.get(taskId);
    if (!t || t.clientId !== clientId) {
      const name = this.registry.byId(clientId)?.name ?? clientId;
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

  /**
   * When `taskId` is `clientId`'s and already took the metrics report of digest `sha256`: resolves once that report
   * is recorded. A repeat is answered even after the task's attempt closed: it changes nothing.
   */
  repeatedReport(clientId: string, taskId: string, sha256: string): Promise<void> | undefined {
    const t = this.issued.get(taskId);
    return t && t.clientId === clientId && t.report?.sha256 === sha256 ? t.report.recorded : undefined;
  }

  /** The task that already accepted this ciphertext, if any (replays and resumed uploads). */
  acceptedBy(sha256Hex: string): Task | undefined {
    return this.accepted.get(sha256Hex);
  }
}

/** The SecAgg session a task belongs to, or undefined for a plain round (refuses closed tasks). */
export function secaggOf(t: Task): SecAggAttempt | undefined {
  return openOwner(t).secagg;
}

/** The global adapter a task's update must match. */
export function baseOf(t: Task): Checkpoint {
  return openOwner(t).base;
}

/** The tensors a task's update must carry (the whole base adapter, or its lora_B tensors under 'ffa'). */
export function uploadLayoutOf(t: Task): NamedTensor[] {
  return openOwner(t).uploadLayout;
}

function openOwner(t: Task): Attempt {
  if (!t.owner.holds(t)) throw new ProtocolError(status.FAILED_PRECONDITION, `task ${t.taskId} is closed`);
  return t.owner;
}
