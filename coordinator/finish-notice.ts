// Telling sites that the run is over (RunFinished on their task stream): every connected site when the run ends, and
// any site that attaches afterwards at once, instead of its waiting for a task that will never come. The set of
// sites told lets the Coordinator's stop wait until they have heard (coordinator.ts).
import type { ClientRegistry } from './registry';

export class FinishNotice {
  private notice: { final_version: number; reason: string } | null = null;
  /** Sites told that the run is over: at the finish, or when they attached afterwards. */
  readonly told = new Set<string>();

  constructor(private readonly registry: ClientRegistry) {}

  /** Whether the run has ended (a site that attaches now is told at once). */
  get finished(): boolean {
    return this.notice !== null;
  }

  /** The run ended at `version` for `reason`: every connected site is told. */
  finish(version: number, reason: string): void {
    this.notice = { final_version: version, reason };
    for (const s of this.registry.connected()) this.tell(s.clientId);
  }

  /** Tells one site, if the run has ended and the site has a task stream. */
  tell(clientId: string): void {
    const sink = this.registry.byId(clientId)?.sink;
    if (!sink || !this.notice) return;
    sink.write({ finished: this.notice });
    this.told.add(clientId);
  }
}
