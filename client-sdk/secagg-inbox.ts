// The SecAgg stage messages the coordinator pushes on a site's task stream (roster, routed shares, consistency
// check, unmask request), held per task until the task's flow (secagg-flow.ts) asks for them. A task outlives its
// task stream: when the stream drops, the SDK reopens it under the same session and the coordinator delivers the
// current stage's message again on the new one (coordinator/secagg-attempt.ts). So a message may come twice. The
// same message again is dropped: the flow answers each stage once. A different message of a kind already received
// is the coordinator contradicting itself within one round (a second roster, another U2, other survivor lists, an
// unmask request over other lists): the task stops at once, whatever stage it is at, and never answers it. That
// keeps what a site reveals to one answer per stage, whichever stream a message came on.
import { isDeepStrictEqual } from 'node:util';
import { ProtocolError, status } from '../proto/errors';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { ConsistencyCheck, Roster, RoutedShares, UnmaskRequest } from '../proto/secagg/messages';
import { consistencyCheckFromWire, rosterFromWire, routedFromWire, unmaskRequestFromWire } from '../proto/secagg/wire';

export type InboxItem = { roster: Roster } | { shares: RoutedShares } | { consistency: ConsistencyCheck } | { unmask: UnmaskRequest };
type Kind = 'roster' | 'shares' | 'consistency' | 'unmask';
type Of<K extends Kind> = Extract<InboxItem, Record<K, unknown>>[K];

const NAMES: Record<Kind, string> = { roster: 'roster', shares: 'routed shares', consistency: 'consistency check', unmask: 'unmask request' };

/** Stage messages for one task; next() waits for the kind the flow needs. */
export class SecAggInbox {
  private readonly items: InboxItem[] = [];
  /** The first message of each kind: what a repeat is held to. */
  private readonly first = new Map<Kind, unknown>();
  private violation: ProtocolError | undefined;
  private waiter: (() => void) | null = null;

  /** `violated`: told once when the coordinator sends a different message of a kind it sent already. */
  constructor(private readonly violated: (e: ProtocolError) => void = () => undefined) {}

  put(item: InboxItem): void {
    if (this.violation) return;
    const kind = Object.keys(item)[0] as Kind;
    const value = (item as Record<Kind, unknown>)[kind];
    if (this.first.has(kind)) {
      if (isDeepStrictEqual(this.first.get(kind), value)) return; // delivered again on a reopened stream
      this.violation = new ProtocolError(
        status.FAILED_PRECONDITION,
        `secagg client: the coordinator sent a second, different ${NAMES[kind]} for this task; refusing it and stopping the task`,
      );
      this.violated(this.violation);
    } else {
      this.first.set(kind, value);
      this.items.push(item);
    }
    this.waiter?.();
  }

  async next<K extends Kind>(kind: K, signal: AbortSignal): Promise<Of<K>> {
    for (;;) {
      if (this.violation) throw this.violation;
      signal.throwIfAborted();
      const i = this.items.findIndex((x) => kind in x);
      if (i >= 0) return (this.items.splice(i, 1)[0] as Record<K, unknown>)[kind] as Of<K>;
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.waiter = null;
          signal.removeEventListener('abort', done);
          resolve();
        };
        this.waiter = done;
        signal.addEventListener('abort', done);
      });
    }
  }
}

/**
 * The inboxes of the SecAgg tasks this site is running, by task id. A stage message for a task that has none (it
 * ended, or never ran here) is dropped: nothing of this site would answer it.
 */
export class SecAggInboxes {
  private readonly open = new Map<string, SecAggInbox>();

  /** The task's inbox, from before it advertises until it ends (close). */
  openFor(taskId: string, violated: (e: ProtocolError) => void): SecAggInbox {
    const b = new SecAggInbox(violated);
    this.open.set(taskId, b);
    return b;
  }

  close(taskId: string): void {
    this.open.delete(taskId);
  }

  /** Puts a task event's stage message into its task's inbox; false when the event carries none. */
  deliver(ev: TaskEvent__Output): boolean {
    const to = (taskId: string, item: () => InboxItem): true => (this.open.get(taskId)?.put(item()), true);
    if (ev.secagg_roster) return to(ev.secagg_roster.task_id, () => ({ roster: rosterFromWire(ev.secagg_roster!) }));
    if (ev.secagg_shares) return to(ev.secagg_shares.task_id, () => ({ shares: routedFromWire(ev.secagg_shares!) }));
    if (ev.secagg_consistency) return to(ev.secagg_consistency.task_id, () => ({ consistency: consistencyCheckFromWire(ev.secagg_consistency!) }));
    if (ev.secagg_unmask) return to(ev.secagg_unmask.task_id, () => ({ unmask: unmaskRequestFromWire(ev.secagg_unmask!) }));
    return false;
  }
}
