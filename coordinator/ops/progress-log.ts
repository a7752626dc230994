// What an operator watching the log needs while a run goes on: every so often while a round waits for sites,
// how many more it waits for; each committed version with its metrics. Observes the coordinator's events.
import type pino from 'pino';
import type { Coordinator } from '../coordinator';
import type { CoordinatorConfig } from '../config-types';
import { minConnected } from '../privacy/sampling';
import { shownCount } from './sample-secrecy';

export function waitingMessage(connected: number, minClients: number): string {
  const more = minClients - connected;
  return `waiting for ${more} more site${more === 1 ? '' : 's'} (${connected} of ${minClients} connected)`;
}

export class ProgressLog {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly coordinator: Coordinator,
    private readonly cfg: CoordinatorConfig,
    private readonly logger: pino.Logger,
  ) {
    coordinator.on('phase', (p) => {
      this.clear();
      if (p === 'WAITING_FOR_CLIENTS') {
        this.waiting();
        this.timer = setInterval(() => this.waiting(), cfg.log.progressMs);
        this.timer.unref();
      }
    });
    coordinator.on('roundCommitted', (e) => {
      if (e.round === 0) return;
      logger.info(
        // A Poisson-sampled round publishes no participants (ops/sample-secrecy.ts): say so, not "0".
        { version: e.version, round: e.round, attempt: e.attempt, participants: shownCount(cfg, e.participants.length), metrics: e.metrics },
        `version ${e.version} of ${cfg.rounds.total} committed`,
      );
    });
  }

  private waiting(): void {
    const connected = this.coordinator.registry.connected().length;
    // A Poisson-sampled DP run draws once privacy.minPopulation sites are connected, as the round does.
    const needed = minConnected(this.cfg);
    if (connected < needed) this.logger.info({ connected, minClients: needed }, waitingMessage(connected, needed));
  }

  clear(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
