// The SDK's task queue (client-sdk/task-queue.ts), which outlives a task stream: what a reopened stream brings while
// a task runs. A re-send of a queued, running or delivered task is not run again (a run that ended undelivered is
// run again when the task was re-sent during it); a task later in the coordinator's
// order (a later attempt, the round's evaluation, a later round) stops the earlier ones and runs; a cancel stops its
// task, running or queued; tasks run one at a time, in order. No network: the gRPC paths are reconnect-grace-sdk's.
import { TaskQueue, type QueuedTask } from '../client-sdk/task-queue';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** A task that runs until released (or aborted), recording what happened to it. */
function gated(log: string[], id: string, kind: QueuedTask['kind'], round: number, attempt = 1): QueuedTask & { release(): void } {
  let release = (): void => undefined;
  const gate = new Promise<void>((r) => (release = r));
  return {
    id,
    kind,
    round,
    attempt,
    release: () => release(),
    async run(signal) {
      log.push(`start ${id}`);
      const aborted = new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
      await Promise.race([gate, signal.aborted ? Promise.resolve() : aborted]);
      log.push(signal.aborted ? `stopped ${id}: ${(signal.reason as Error).message}` : `done ${id}`);
    },
  };
}

/** What the log says of a task that started and was stopped. */
const stopped = (id: string, why: string): string[] => [`start ${id}`, `stopped ${id}: ${why}`];
const movedOn = (to: string): string => `superseded: the coordinator has moved on to ${to}`;

describe('the SDK task queue across task streams', () => {
  it('skips a re-send of a running, a queued or a delivered task, and runs the tasks one at a time in order', async () => {
    const log: string[] = [];
    const delivered = new Set(['t0']);
    const q = new TaskQueue((id) => delivered.has(id));
    const t1 = gated(log, 't1', 'train', 1);
    const t2 = gated(log, 't2', 'train', 1); // the same place in the coordinator's order: neither stops the other
    expect(q.offer(t1)).to.equal(true);
    expect(q.offer(t2)).to.equal(true);
    await new Promise((r) => setImmediate(r));
    expect(log).to.deep.equal(['start t1']);
    // A reopened stream brings the running task, the queued one and a delivered one again.
    const again = [gated(log, 't1', 'train', 1), gated(log, 't2', 'train', 1), gated(log, 't0', 'train', 1)];
    expect(again.map((t) => q.offer(t))).to.deep.equal([false, false, false]);
    delivered.add('t1'); // t1 uploads and reports
    t1.release();
    t2.release();
    await q.idle();
    expect(log).to.deep.equal(['start t1', 'done t1', 'start t2', 'done t2']);
  });

  it("stops a task the coordinator has moved past (a later attempt, the round's evaluation, a later round) and runs the new one", async () => {
    const log: string[] = [];
    const q = new TaskQueue(() => false);
    const a1 = gated(log, 'r1a1', 'train', 1, 1);
    q.offer(a1);
    await Promise.resolve();
    const a2 = gated(log, 'r1a2', 'train', 1, 2);
    q.offer(a2); // round 1's attempt 1 closed: its upload would be refused
    const e1 = gated(log, 'e1', 'evaluate', 1);
    q.offer(e1); // round 1 aggregated: attempt 2 is over too
    const r2 = gated(log, 'r2a1', 'train', 2, 1);
    q.offer(r2); // round 1 committed: its evaluation is closed
    r2.release();
    await q.idle();
    expect(log).to.deep.equal([
      ...stopped('r1a1', movedOn('round 1 attempt 2')),
      ...stopped('r1a2', movedOn('the evaluation of round 1')),
      ...stopped('e1', movedOn('round 2 attempt 1')),
      'start r2a1',
      'done r2a1',
    ]);
    // A task earlier in the order stops nothing later (the coordinator never sends one; it would refuse its upload).
    const [r3, old] = [gated(log, 'r3', 'train', 3), gated(log, 'old', 'train', 2, 1)];
    q.offer(r3);
    q.offer(old);
    r3.release();
    old.release();
    await q.idle();
    expect(log.slice(8)).to.deep.equal(['start r3', 'done r3', 'start old', 'done old']);
  });

  it('runs a task again when it was re-sent during a run that ended undelivered (a transfer the drop broke), once delivered not', async () => {
    const delivered = new Set<string>();
    const q = new TaskQueue((id) => delivered.has(id));
    const runs: string[] = [];
    let resend = (): void => undefined;
    const task = (id: string, deliverOnRun: number): QueuedTask => ({
      id,
      kind: 'train',
      round: 1,
      attempt: 1,
      async run() {
        runs.push(id);
        if (runs.filter((r) => r === id).length === 1) resend(); // the stream was reopened meanwhile
        if (runs.filter((r) => r === id).length === deliverOnRun) delivered.add(id);
        await Promise.resolve();
      },
    });
    const broken = task('broken', 2); // its first run fails (the download broke), the second delivers
    resend = () => q.offer(task('broken', 2));
    q.offer(broken);
    await q.idle();
    const fine = task('fine', 1); // delivered on its first run, re-sent during it: not run again
    resend = () => q.offer(task('fine', 1));
    q.offer(fine);
    await q.idle();
    expect(runs).to.deep.equal(['broken', 'broken', 'fine']);
  });

  it('a cancel stops its task, running or still queued; abortWhere stops those it picks', async () => {
    const log: string[] = [];
    const q = new TaskQueue(() => false);
    const [t1, t2, t3] = [gated(log, 't1', 'train', 1), gated(log, 't2', 'train', 1), gated(log, 't3', 'train', 1)];
    for (const t of [t1, t2, t3]) q.offer(t);
    await Promise.resolve();
    q.cancel('t2', new Error('cancelled by the coordinator: round closed')); // queued
    q.cancel('t1', new Error('cancelled by the coordinator: round closed')); // running
    q.cancel('unknown', new Error('no such task'));
    q.abortWhere((t) => t.id === 't3', new Error('client stopping'));
    await q.idle();
    const closed = 'cancelled by the coordinator: round closed';
    expect(log).to.deep.equal([...stopped('t1', closed), ...stopped('t2', closed), ...stopped('t3', 'client stopping')]);
  });
});
