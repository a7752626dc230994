// privacy.sampling 'poisson': amplification by subsampling made honest (DP-FedAvg, McMahan et al. 2018; the sampled
// Gaussian mechanism the accountant analyses). Each eligible connected site is in round r's sample independently
// with probability q, decided by a keyed hash of (run, round, site id) under a secret only the coordinator holds:
//   * not predictable from public data (run id, seeds, manifests): the amplification assumes nobody outside the
//     coordinator can tell whether a site was sampled;
//   * a site's coin depends on nothing else (not on who else is connected, nor on the attempt), so a retried attempt
//     and a coordinator restarted after kill -9 at any step draw the same sample for the same round. The secret is
//     created once, atomically (no file or a whole one), before any round is drawn; the round spool records the
//     draw before any task goes out, so a resumed round keeps it;
//   * the mean's denominator is the expected cohort weight q·N (every site weighs 1 under DP-FedAvg), N the
//     population the draw was made over, so one site's presence in the sample changes the sum by ≤ C and never the
//     scaling (the fixed-denominator estimator of McMahan et al.).
// Manifests of such rounds carry q, N and q·N, and no participant, per-site seed or per-site metric: who took part
// stays with the coordinator (round-outcome.ts). Tasks go only to the sampled sites: a site knows its own coin.
// What is protected is a site's data: its update replaced by nothing, for which the sampled Gaussian's bound is the
// same as for removing the site. N, the count of connected sites, is published (as DP-FedAvg's population weight W
// is taken to be known); whether a site is enrolled or connected is not what this hides.
import { createHmac, randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { KeyFileError, decodeKey, encodeKey, readSecretJson, writeSecretJson } from '../../proto/crypto/key-file';
import type { CrashHook } from '../../proto/durable-file';
import { SAMPLING_RATE } from './ledger';

export const SAMPLING_KEY_FORMAT = 'fedtune.privacy-sampling-key/1';
export const SAMPLING_MODES = ['selection', 'poisson'] as const;
export type SamplingMode = (typeof SAMPLING_MODES)[number];

/** Where the secret lives: beside the coordinator's default key file, never inside versions/ (what is published). */
export function samplingKeyFile(runDir: string): string {
  return path.join(runDir, 'keys', 'privacy-sampling.json');
}

const ADVICE =
  'restore it from a backup to resume a round already drawn with it; otherwise move it aside and start again: a new secret draws new samples from the next round on';

/** Loads the run's sampling secret, or creates it (32 random bytes, owner-only, atomically) on first use. */
export async function loadOrCreateSamplingSecret(file: string, hook?: CrashHook): Promise<Buffer> {
  const j = await readSecretJson(file, ADVICE);
  if (j) {
    if (j.format !== SAMPLING_KEY_FORMAT) throw new KeyFileError(`${file}: format ${JSON.stringify(j.format)} is not ${SAMPLING_KEY_FORMAT}`);
    return Buffer.from(decodeKey(j.secret, 32, `${file}: secret`));
  }
  const secret = randomBytes(32);
  await writeSecretJson(file, { format: SAMPLING_KEY_FORMAT, secret: encodeKey(secret) }, hook);
  return secret;
}

/** Site `id`'s uniform draw in [0, 1) for round `round`: 53 bits of HMAC-SHA256(secret, [run, round, id]). */
export function siteCoin(secret: Buffer, runId: string, round: number, id: string): number {
  const h = createHmac('sha256', secret)
    .update(JSON.stringify(['poisson', runId, round, id]))
    .digest();
  // 21 + 32 bits: an exact double in [0, 2^53), scaled exactly.
  return ((h.readUInt32BE(0) >>> 11) * 2 ** 32 + h.readUInt32BE(4)) / 2 ** 53;
}

/** The sites of `ids` in round `round`'s Poisson sample at rate q (u < q), sorted; q = 1 takes every site. */
export function poissonSample(secret: Buffer, runId: string, round: number, ids: readonly string[], q: number): string[] {
  if (!(q > 0 && q <= 1)) throw new RangeError(`sampling rate ${q} must lie in (0, 1]`);
  return [...new Set(ids)].sort().filter((id) => siteCoin(secret, runId, round, id) < q);
}

/** A sampled round's public description (the manifest's privacy.sampling): no names, no sample size. */
export interface SampledCohort {
  readonly method: 'poisson';
  /** q. */
  readonly rate: number;
  /** N: eligible connected sites the draw was made over. */
  readonly population: number;
  /** q·N: the fixed denominator of the round's mean (every site weighs 1). */
  readonly denominator: number;
}

export function sampledCohort(rate: number, population: number): SampledCohort {
  return { method: 'poisson', rate, population, denominator: rate * population };
}

interface SamplingKeys {
  readonly privacy: { readonly enabled: boolean; readonly sampling: string; readonly samplingRate: number; readonly minPopulation: number };
  readonly rounds: { readonly minUpdates: number };
  readonly secagg: { readonly enabled: boolean };
  readonly evaluation: { readonly enabled: boolean; readonly sites: string };
}

/** Whether rounds are Poisson-sampled (privacy.enabled with privacy.sampling 'poisson'). */
export function isSampled(cfg: Pick<SamplingKeys, 'privacy'>): boolean {
  return cfg.privacy.enabled && cfg.privacy.sampling === 'poisson';
}

/** The q every round is charged at: privacy.samplingRate under Poisson sampling, else 1 (ledger.ts SAMPLING_RATE says why). */
export function chargedSamplingRate(cfg: Pick<SamplingKeys, 'privacy'>): number {
  return isSampled(cfg) ? cfg.privacy.samplingRate : SAMPLING_RATE;
}

/** Connected sites a round waits for before it selects: a sampled round also waits for privacy.minPopulation. */
export function minConnected(cfg: Pick<SamplingKeys, 'privacy'> & { readonly rounds: { readonly minClients: number } }): number {
  return isSampled(cfg) ? Math.max(cfg.rounds.minClients, cfg.privacy.minPopulation) : cfg.rounds.minClients;
}

/** Combinations the sampled mode cannot make honest, each naming its keys (empty when valid). */
export function samplingProblems(cfg: SamplingKeys): string[] {
  const p = cfg.privacy;
  const out: string[] = [];
  if (p.sampling !== 'poisson') {
    if (p.samplingRate !== 1)
      out.push(`privacy.samplingRate (${p.samplingRate}) applies only with privacy.sampling 'poisson': under 'selection' every round is charged q = 1`);
    return out;
  }
  if (!p.enabled) out.push("privacy.sampling 'poisson' needs privacy.enabled: only DP-FedAvg's fixed-denominator mean and accountant use it");
  if (!(p.samplingRate > 0 && p.samplingRate <= 1)) out.push(`privacy.samplingRate (${p.samplingRate}) must be a number in (0, 1]`);
  else if (p.samplingRate * p.minPopulation < cfg.rounds.minUpdates)
    out.push(
      `privacy.samplingRate × privacy.minPopulation (${p.samplingRate} × ${p.minPopulation} = ${p.samplingRate * p.minPopulation}) must be at least rounds.minUpdates (${cfg.rounds.minUpdates}): the expected cohort would be smaller than a round is meant to have; raise privacy.minPopulation`,
    );
  if (cfg.secagg.enabled)
    out.push(
      "privacy.sampling 'poisson' cannot run with secagg.enabled: each site's noise share is set by the sample's size and the SecAgg record names the survivors, so neither the noise nor the secrecy of the sample would match what the accountant assumes",
    );
  if (cfg.evaluation.enabled && cfg.evaluation.sites === 'participants')
    out.push(
      "privacy.sampling 'poisson' cannot run with evaluation.sites 'participants': asking the sampled sites to evaluate publishes how many were sampled; use 'connected'",
    );
  return out;
}
