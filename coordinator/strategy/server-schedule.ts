// The server learning rate by round (strategy.serverSchedule): 'constant' keeps η; 'cosine' decays it as the
// clients' 'cosine' schedule does (lr-schedule.ts), from η in round 1 towards 0 by rounds.total:
//   η_r = η·(1 + cos(π·(r − 1)/R))/2.
// Why: an adaptive server optimiser (FedAdam, FedYogi, FedAdagrad) moves each value by about η per round whatever
// the size of the clients' update (m/√v is near ±1), so a client schedule that shrinks the updates does not anneal
// the server's steps; late rounds keep jumping. FedAvgM's step does shrink with the update, and the server decay
// multiplies that. The rate is a pure function of the configuration and the round, so a restarted coordinator
// steps exactly as an uninterrupted one.
import type { CoordinatorConfig } from '../config-types';
import { roundLearningRate } from '../lr-schedule';

export const SERVER_SCHEDULES = ['constant', 'cosine'] as const;
export type ServerSchedule = (typeof SERVER_SCHEDULES)[number];

export interface ServerScheduleSettings {
  readonly serverSchedule?: ServerSchedule;
  /** rounds.total: the round by which 'cosine' reaches 0. */
  readonly roundsTotal?: number;
}

/** η in `round` (from 1). 'constant', or no schedule given: η itself. */
export function serverRateAt(label: string, eta: number, s: ServerScheduleSettings, round: number | undefined): number {
  if ((s.serverSchedule ?? 'constant') === 'constant') return eta;
  if (round === undefined) throw new Error(`${label}: strategy.serverSchedule '${s.serverSchedule}' needs the round being aggregated`);
  if (!(s.roundsTotal !== undefined && Number.isSafeInteger(s.roundsTotal) && s.roundsTotal >= 1)) {
    throw new Error(`${label}: strategy.serverSchedule '${s.serverSchedule}' needs rounds.total`);
  }
  return roundLearningRate({ learningRate: eta, schedule: 'cosine', warmupRounds: 0, minLearningRate: 0 }, s.roundsTotal, round);
}

/** FedAvg has no server learning rate, and SCAFFOLD's η_g scales its control variates' use too: refused. */
export function serverScheduleProblems(cfg: Pick<CoordinatorConfig, 'strategy'>): string[] {
  const s = cfg.strategy;
  if (s.serverSchedule === 'constant' || !['fedavg', 'scaffold'].includes(s.name)) return [];
  return [
    `strategy.serverSchedule '${s.serverSchedule}' needs a server optimiser with a learning rate (fedavgm, fedadam, fedyogi, fedadagrad); strategy.name is '${s.name}' (fedavgm with momentum 0 and serverLearningRate 1 is FedAvg)`,
  ];
}
