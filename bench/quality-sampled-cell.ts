// A cross-device cell sampled by the product (runs 21-22, bench/QUALITY.md): N virtual sites, each a real
// FederationClient over real gRPC connected all run, the coordinator drawing each round's cohort itself
// (privacy.sampling 'poisson', coordinator/privacy/sampling.ts), dividing by the expected cohort q·N and stamping ε
// at q in every manifest. A site's trainer trains its own e-mails on one of COHORT_TRAINERS shared engine trainers.
//
// Two runs of a comparison can be given the SAME draws (run 22, `pairedSeed`): the benchmark writes the run's sampling
// key file before the coordinator starts, from a secret derived from the seed, and fixes run.id (the coin hashes
// (run id, round, site)); the coordinator then loads that file as it loads any existing one (the restore-from-backup
// path), so no product code changes and the production secret stays random. A secret derived from a public seed
// hides nothing, which is fine for measuring accuracy and never for a deployment.
//
// The benchmark, being the simulation, knows which sites trained in which round (the coordinator publishes none of
// it): each cell records the observed draws (their digest, to show that two arms sampled alike), each round's cohort
// size and its members' update norms against C.
import { createHash } from 'node:crypto';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import type { Trainer } from '../client-sdk/trainer';
import type { SftExample } from '../client-sdk/sft/types';
import { SAMPLING_KEY_FORMAT, samplingKeyFile } from '../coordinator/privacy/sampling';
import { encodeKey, writeSecretJson } from '../proto/crypto/key-file';
import { cellOverrides, deepMerge, type QualityConfig } from './quality-configs';
import { COHORT_POOL_CLIENTS, COHORT_TRAINERS, SharedTrainer, slotData, virtualSites, withTrain } from './quality-cohort';
import { cellTask, runFederation, type CellResult, type QualityCell } from './quality-cell';
import { epsilonSpent } from '../coordinator/privacy/accountant';

/** The population: N sites of `perSite` e-mails cut from the 5-site split's pooled training e-mails. */
export interface SampledPopulation {
  readonly sites: number;
  readonly perSite: number;
}

/** What the cell saw of the draws: the digest of every (round, sorted sites) and how many site-rounds trained. */
export interface ObservedDraws {
  readonly sha256: string;
  readonly siteRounds: number;
}

export type SampledCellResult = CellResult & { readonly draws?: ObservedDraws };

/** The sampling secret both arms of seed `seed` share (a benchmark's, derivable by anyone: see above). */
export function pairedSamplingSecret(seed: number): Buffer {
  return createHash('sha256').update(`fedtune bench: paired Poisson sampling secret, seed ${seed}`).digest();
}

/** The run id both arms of seed `seed` carry (the coin hashes it). */
export const pairedRunId = (seed: number): string => `paired-sampling-${seed}`;

/** Writes `secret` where the coordinator loads its sampling secret from, before it starts (the product's format). */
export async function writeSamplingSecret(runDir: string, secret: Buffer): Promise<void> {
  await writeSecretJson(samplingKeyFile(runDir), { format: SAMPLING_KEY_FORMAT, secret: encodeKey(secret) });
}

/** `c` sampled by the coordinator over a population of `sites` at rate q; q·sites ≥ rounds.minUpdates 2. */
export function productSampled(c: QualityConfig, sites: number, q: number): QualityConfig {
  const privacy = { sampling: 'poisson', samplingRate: q, minPopulation: sites };
  return {
    ...c,
    overrides: deepMerge(c.overrides, { privacy, rounds: { minUpdates: 2 } }),
    note: `${c.note}; sampled by the coordinator (privacy.sampling 'poisson', q ${q * sites}/${sites}, fixed denominator ${q * sites})`,
    clients: sites,
    cohort: undefined,
  };
}

/** Site `i`'s trainer: its own e-mails, on shared trainer i mod P (under that trainer's queue); reports each training. */
export function siteTrainer(
  shared: readonly SharedTrainer[],
  i: number,
  sites: readonly SftExample[][],
  onTrained?: (round: number, site: number, norm: number) => void,
): Trainer {
  const s = shared[i % shared.length];
  const train: Trainer['train'] = async (global, plan, signal, onStep) => {
    const out = await s.exclusive(() => {
      s.pool.splice(0, s.pool.length, ...sites[i]);
      return s.trainer.train(global, plan, signal, onStep);
    });
    onTrained?.(plan.round, i, out.metrics?.update_norm ?? NaN);
    return out;
  };
  return withTrain(s.trainer, train);
}

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * One product-sampled cell of `cfg` over `pop`; with `pairedSeed`, the run's sampling secret and id are that seed's
 * (every arm given the same seed draws the same cohorts). ε stays the manifest's (privacy.epsilon).
 */
export async function runSampledCell(
  cell: QualityCell,
  cfg: QualityConfig,
  pop: SampledPopulation,
  log: (line: string) => void,
  pairedSeed?: number,
): Promise<SampledCellResult> {
  const t0 = Date.now();
  await selectBackend();
  const task = cellTask(cell, COHORT_POOL_CLIENTS);
  const base = await loadGpt2Dir(DEFAULT_MODEL_DIR);
  const spec = { ...pop, cohort: 1, sampling: 'poisson', slots: 1 } as const;
  const sites = virtualSites(
    task.clients.flatMap((c) => c.train),
    spec,
    cell.splitSeed,
  );
  const pools = Array.from({ length: COHORT_TRAINERS }, () => slotData(sites, task.choices));
  // Who trained in which round, with their update norms (a retried task counts once).
  const trained = new Map<number, Map<number, number>>();
  const onTrained = (round: number, site: number, norm: number): void => {
    const r = trained.get(round) ?? new Map<number, number>();
    r.set(site, norm);
    trained.set(round, r);
  };
  let shared: SharedTrainer[] | undefined;
  const overrides = pairedSeed === undefined ? cellOverrides(cfg) : deepMerge(cellOverrides(cfg), { run: { id: pairedRunId(pairedSeed) } });
  const r = await runFederation(
    cell,
    overrides,
    base.model,
    base.modelHash,
    task,
    pools.map((p) => p.data),
    cell.localSteps,
    log,
    { count: sites.length, trainer: (made, i) => siteTrainer((shared ??= made.map((t, k) => new SharedTrainer(t, pools[k].pool))), i, sites, onTrained) },
    pairedSeed === undefined ? undefined : (runDir) => writeSamplingSecret(runDir, pairedSamplingSecret(pairedSeed)),
  );
  const privacy = cfg.overrides.privacy as { clipNorm: number; noiseMultiplier: number; samplingRate: number; delta: number };
  for (const p of r.curve) {
    const m = trained.get(p.round);
    if (p.round < 1) continue;
    // The manifest's ε (privacy.epsilon, charged at q by the product) beside the accountant's for the same q, z, rounds;
    // the twin's z (1e-6) is there only because the config refuses 0: no ε worth stating.
    if (privacy.noiseMultiplier >= 0.01)
      p.extra['privacy.epsilon_sampled'] = epsilonSpent([{ q: privacy.samplingRate, z: privacy.noiseMultiplier, steps: p.round }], privacy.delta);
    const norms = m ? [...m.values()] : [];
    p.extra['cohort.size'] = norms.length;
    if (norms.length > 0) {
      p.extra['members.norm_median'] = median(norms);
      // Against the round's own C under adaptive clipping (the manifest's), else the configured one.
      const c = p.extra['privacy.clip_norm'] ?? privacy.clipNorm;
      p.extra['members.clipped'] = norms.filter((x) => x > c).length / norms.length;
    }
  }
  const digest = createHash('sha256');
  let siteRounds = 0;
  for (const round of [...trained.keys()].sort((a, b) => a - b)) {
    const ids = [...trained.get(round)!.keys()].sort((a, b) => a - b);
    siteRounds += ids.length;
    digest.update(`${round}:${ids.join(',')};`);
  }
  const draws = { sha256: digest.digest('hex'), siteRounds };
  log(`draws observed: ${siteRounds} site-rounds over ${trained.size} rounds, sha256 ${draws.sha256}`);
  return { cell, ok: true, curves: [r.curve], backend: r.backend, seconds: (Date.now() - t0) / 1000, draws };
}

/** A cell process's entry: runs `run` on `cell` and prints its result (or its error) as the last line of stdout. */
export function cellMain(cell: QualityCell, run: (cell: QualityCell, log: (line: string) => void) => Promise<SampledCellResult>): void {
  void run(cell, (l) => process.stderr.write(`${cell.split}/${cell.config}/${cell.seed} ${l}\n`))
    .catch((e: Error): SampledCellResult => ({ cell, ok: false, error: e.message, curves: [], backend: '', seconds: 0 }))
    .then((res) => {
      process.stdout.write(`${JSON.stringify(res)}\n`);
      process.exit(0);
    });
}
