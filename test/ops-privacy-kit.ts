// What the privacy-observability tests share (ops-privacy, dp-sampling-grpc): a GET over HTTP, the fedtune_privacy_*
// series of a scrape, and what they and the dashboard's privacy panel must read after a version, computed from its
// manifest with the ledger itself (rounds left by a plain count upward, not the panel's search).
import * as http from 'node:http';
import type { Manifest } from '../coordinator/checkpoints/types';
import { PrivacyLedger } from '../coordinator/privacy/ledger';
import type { PrivacyStatus } from '../coordinator/ops/privacy-status';

/** GET `url`'s body (the metrics endpoint, the dashboard's /api/state); rejects on a status other than 200. */
export function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) =>
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
      })
      .on('error', reject),
  );
}

/** The fedtune_privacy_* samples of a Prometheus scrape: name → value ('+Inf' and 'NaN' as numbers). */
export function privacySeries(scrape: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of scrape.split('\n')) {
    const m = /^(fedtune_privacy_\S*) (\S+)$/.exec(line);
    if (m) out[m[1]] = m[2] === '+Inf' ? Infinity : Number(m[2]);
  }
  return out;
}

/** One sample of a scrape by its exact name (with labels as printed). */
export function sample(scrape: string, name: string): number {
  const line = scrape.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`no ${name} in the scrape`);
  return Number(line.slice(name.length + 1));
}

export interface PrivacySettings {
  readonly clipNorm: number;
  readonly noiseMultiplier: number;
  readonly delta: number;
  readonly epsilonBudget: number;
  readonly adaptiveClipping: boolean;
  /** q each further round is charged at. */
  readonly q: number;
}

/** The dashboard's privacy panel after version `m`: ε as the manifest records it, C as the next round clips to. */
export function expectedStatus(m: Manifest, p: PrivacySettings): PrivacyStatus {
  const epsilon = m.privacy!.epsilon;
  let roundsLeft: number | null = null;
  if (p.epsilonBudget > 0) {
    const ledger = new PrivacyLedger(p, m);
    const after = (k: number): number | null => ledger.epsilon([{ samplingRate: p.q, noiseMultiplier: p.noiseMultiplier, rounds: k }]);
    roundsLeft = 0;
    for (let e = after(1); e !== null && e <= p.epsilonBudget; e = after(roundsLeft + 1)) roundsLeft++;
  }
  return {
    epsilon,
    delta: p.delta,
    epsilonBudget: p.epsilonBudget,
    roundsLeft,
    clipNorm: (p.adaptiveClipping ? m.privacy!.adaptiveClipping?.nextClipNorm : undefined) ?? p.clipNorm,
    adaptiveClipping: p.adaptiveClipping,
    noiseMultiplier: p.noiseMultiplier,
    samplingRate: p.q,
  };
}

/** The fedtune_privacy_* series after version `m` (rounds left +Inf without a budget). */
export function expectedSeries(m: Manifest, p: PrivacySettings): Record<string, number> {
  const s = expectedStatus(m, p);
  return {
    fedtune_privacy_epsilon: s.epsilon ?? Infinity,
    fedtune_privacy_epsilon_budget: s.epsilonBudget,
    fedtune_privacy_delta: s.delta,
    fedtune_privacy_budget_rounds_left: s.roundsLeft ?? Infinity,
    fedtune_privacy_clip_norm: s.clipNorm,
    fedtune_privacy_noise_multiplier: s.noiseMultiplier,
  };
}
