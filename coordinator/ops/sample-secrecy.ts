// What the coordinator may say about a Poisson-sampled round (privacy.sampling 'poisson', privacy/sampling.ts)
// outside its run directory. The accountant's amplification assumes nobody but the coordinator can tell whether a
// site was in a round; the sample's size matters too: given k sampled of N, each site's membership has odds k/N
// rather than q, so a round whose k is known to be large is worth more than the ε charged for it. So the log (often
// shipped elsewhere), the Prometheus metrics (scraped by others) and the dashboard (reachable over HTTP with a
// shared token) neither name a sampled round's sites nor count them; the run directory (its spool, its secret)
// is the only place that holds the sample, as it holds the secret that draws it. One home for the rule: the log
// lines, metrics and dashboard fields that would carry a name or a count ask here.
import type { CoordinatorConfig } from '../config-types';
import { isSampled } from '../privacy/sampling';

/** What a count or a list of sites reads as when it would tell a sampled round's sample. */
export const HIDDEN = 'hidden' as const;

/** A round's count of sites or updates as it may be shown: the count, or 'hidden' when rounds are Poisson-sampled. */
export function shownCount(cfg: Pick<CoordinatorConfig, 'privacy'>, n: number): number | typeof HIDDEN {
  return isSampled(cfg) ? HIDDEN : n;
}

/**
 * Lines about one site's part in a round (an update accepted, a resumed upload answered) are written only when
 * rounds are not sampled: one such line per sampled site would count the sample.
 */
export function logsRoundSites(cfg: Pick<CoordinatorConfig, 'privacy'>): boolean {
  return !isSampled(cfg);
}

/**
 * A fault warning's fields about one site of a round: as given, or under sampling without the site's id and the
 * error text (which may name it). The warning itself stays (a damaged spool or a dropped update must reach the
 * operator); that it was written says only that the round's sample was not empty.
 */
export function siteFields<F extends { readonly clientId: string; readonly error?: string }>(sampled: boolean, fields: F): Omit<F, 'clientId' | 'error'> {
  if (!sampled) return fields;
  const { clientId: _id, error: _error, ...rest } = fields;
  return rest;
}

/**
 * gRPC methods only a sampled site calls in a round (its download, its upload, its training report or its decline); their call
 * and byte counters would count the sample, so they are not exported under sampling. Hello, Join, StreamTasks,
 * Leave and ReportEvaluation (evaluation asks connected sites, never the sample) stay.
 */
export const SAMPLE_METHODS: ReadonlySet<string> = new Set(['DownloadAdapter', 'UploadUpdate', 'ReportMetrics', 'DeclineTask']);
