// What an operator watching the log needs while a run goes on: every so often while a round waits for sites,
// how many more it waits for; each committed version with its metrics (and in a DP run ε spent, the budget and δ,
// as the manifest records them). Observes the coordinator's events.
import type pino from 'pino';
import type { Coordinator } from '../coordinator';
import type { CoordinatorConfig } from '../config-types';
import type { Manifest } from '../checkpoints/types';
import { minConnected } from '../privacy/sampling';
import { shownCount } from './sample-secrecy';

export function waitingMessage(connected: number, minClients: number): string {
  const more = minClients - connected;
  return `waiting for ${more} more site${more === 1 ? '' : 's'} (${connected} of ${minClients} connected)`;
}

type SpentFields = { readonly epsilon: number | null; readonly epsilonBudget: number; readonly delta: number };

/** A DP version's ε spent, budget and δ, as its manifest records them (undefined without a privacy record). */
function privacyFields(m: Manifest | undefined, version: number): { privacy: SpentFields } | undefined {
  const p = m?.version === version ? m.privacy : undefined;
  return p ? { privacy: { epsilon: p.epsilon, epsilonBudget: p.epsilonBudget, delta: p.delta } } : undefined;
}

/** 'ε 0.8123 of budget 1.5 at δ = 0.00001' (ε to 4 significant digits; the fields carry it exactly). */
export function privacySpent(p: SpentFields): string {
  const eps = p.epsilon === null ? 'unbounded' : p.epsilon.toPrecision(4);
  return `ε ${eps}${p.epsilonBudget > 0 ? ` of budget ${p.epsilonBudget}` : ''} at δ = ${p.delta}`;
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
      const privacy = privacyFields(coordinator.engine.latest?.manifest, e.version);
      logger.info(
        // A Poisson-sampled round publishes no participants (ops/sample-secrecy.ts): say so, not "0".
        { version: e.version, round: e.round, attempt: e.attempt, participants: shownCount(cfg, e.participants.length), metrics: e.metrics, ...privacy },
        `version ${e.version} of ${cfg.rounds.total} committed${privacy ? ` (${privacySpent(privacy.privacy)})` : ''}`,
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
