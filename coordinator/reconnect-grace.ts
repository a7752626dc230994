// rounds.reconnectGraceMs, in one place for the waits that use it: a round's wait for its selected sites'
// updates and reports (Attempt.allDone), each stage of a SecAgg round (Attempt.awaited, secagg-attempt.ts: a site
// not back in time is dropped from the stage, as one that left) and a federated evaluation's wait for its reports
// (evaluation/federated.ts).
// A site whose task stream ended is still waited for until it has been away that long (the registry's "away since"
// clock: a rejoin keeps it, a new stream ends it, a Leave or a revocation means gone now). The SDK reopens its
// stream while its task runs, so a blip costs the site nothing as long as it is back within the grace.
import type { ClientRegistry } from './registry';

export class ReconnectGrace {
  /** One timer, at the earliest time the wait must look again (a grace ending). */
  private timer: { at: number; timer: NodeJS.Timeout } | undefined;

  constructor(
    private readonly registry: ClientRegistry,
    private readonly graceMs: number,
    /** Wakes the wait that asked, so it looks again when a grace ends. */
    private readonly wake: () => void,
  ) {}

  /**
   * Whether any of these sites is still waited for: it has its task stream, or has been away for less than the
   * grace (away for 0 ms, a stream that ended this very millisecond, is inside any grace). When only graces keep
   * the wait going, the wait is woken when the earliest of them ends.
   */
  anyAwaited(clientIds: Iterable<string>, now = Date.now()): boolean {
    let graceEnds = Infinity;
    for (const id of clientIds) {
      if (this.registry.isLive(id)) return true; // a registry change wakes the wait when it goes
      const away = this.registry.awayMs(id, now);
      if (away < this.graceMs) graceEnds = Math.min(graceEnds, now + this.graceMs - away);
    }
    if (graceEnds === Infinity) return false;
    this.wakeAt(graceEnds);
    return true;
  }

  /** The wait is over: no timer stays behind. */
  clear(): void {
    if (this.timer) clearTimeout(this.timer.timer);
    this.timer = undefined;
  }

  /** Unref'd: it never keeps the process alive. */
  private wakeAt(at: number): void {
    if (this.timer && this.timer.at <= at && this.timer.at > Date.now()) return;
    this.clear();
    const timer = setTimeout(
      () => {
        this.timer = undefined;
        this.wake();
      },
      Math.max(0, at - Date.now()) + 1,
    );
    timer.unref();
    this.timer = { at, timer };
  }
}
