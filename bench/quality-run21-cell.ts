// Run 21 (bench/QUALITY.md "Run 21"): run 18's DP arm (`x18-dp8`) with the product's own Poisson sampling
// (privacy.sampling 'poisson', coordinator/privacy/sampling.ts) instead of the benchmark's sampler. Every one of the
// 1,156 virtual sites of 4 e-mails is a real FederationClient over real gRPC, connected all run; the coordinator
// draws each round's cohort from its secret at q = 50/1,156, sends tasks only to the sampled sites, divides by the
// expected cohort q·N = 50, and stamps ε at q in every manifest. A site's trainer trains its own e-mails on one of
// COHORT_TRAINERS shared engine trainers (bench/quality-cohort.ts). One cell per process:
//   node dist/bench/quality-run21-cell.js '{"config":"x21-dp8","seed":42,...}'   (prints its CellResult last)
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import type { Trainer } from '../client-sdk/trainer';
import type { SftExample } from '../client-sdk/sft/types';
import { deepMerge, cellOverrides, type QualityConfig } from './quality-configs';
import { RUN18_CONFIGS } from './quality-configs-run18';
import { XD_POISSON } from './quality-configs-run15';
import { COHORT_POOL_CLIENTS, COHORT_TRAINERS, SharedTrainer, sampledEpsilon, slotData, virtualSites, withTrain } from './quality-cohort';
import { cellTask, runFederation, type CellResult, type QualityCell } from './quality-cell';

/** The population and rate: run 18's (1,156 sites of 4 e-mails, 50 expected a round). */
export const RUN21_POPULATION = XD_POISSON.sites;
export const RUN21_Q = XD_POISSON.cohort / XD_POISSON.sites;

/** Run 18's arm with the product's sampling: the same recipe, z and C; q·minPopulation = 50 ≥ rounds.minUpdates 2. */
function productSampled(c: QualityConfig): QualityConfig {
  const privacy = { sampling: 'poisson', samplingRate: RUN21_Q, minPopulation: RUN21_POPULATION };
  return {
    ...c,
    overrides: deepMerge(c.overrides, { privacy, rounds: { minUpdates: 2 } }),
    note: `${c.note}; sampled by the coordinator (privacy.sampling 'poisson', q ${XD_POISSON.cohort}/${RUN21_POPULATION}, fixed denominator 50)`,
    clients: RUN21_POPULATION,
    cohort: undefined,
  };
}

export const RUN21_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  'x21-dp8': productSampled(RUN18_CONFIGS['x18-dp8']),
  'x21-clip': productSampled(RUN18_CONFIGS['x18-clip']),
};

/** Site `i`'s trainer: its own e-mails, on shared trainer i mod P (under that trainer's queue). */
export function siteTrainer(shared: readonly SharedTrainer[], i: number, sites: readonly SftExample[][]): Trainer {
  const s = shared[i % shared.length];
  const train: Trainer['train'] = (global, plan, signal, onStep) =>
    s.exclusive(() => {
      s.pool.splice(0, s.pool.length, ...sites[i]);
      return s.trainer.train(global, plan, signal, onStep);
    });
  return withTrain(s.trainer, train);
}

export async function runCell21(cell: QualityCell, log: (line: string) => void): Promise<CellResult> {
  const t0 = Date.now();
  const cfg = RUN21_CONFIGS[cell.config];
  if (!cfg) throw new Error(`unknown run 21 config ${JSON.stringify(cell.config)}`);
  await selectBackend();
  const task = cellTask(cell, COHORT_POOL_CLIENTS);
  const base = await loadGpt2Dir(DEFAULT_MODEL_DIR);
  // The same population as runs 15-18: the 5-site split's pooled training e-mails cut into 1,156 ranges of 4.
  const sites = virtualSites(
    task.clients.flatMap((c) => c.train),
    XD_POISSON,
    cell.splitSeed,
  );
  const pools = Array.from({ length: COHORT_TRAINERS }, () => slotData(sites, task.choices));
  let shared: SharedTrainer[] | undefined;
  const r = await runFederation(
    cell,
    cellOverrides(cfg),
    base.model,
    base.modelHash,
    task,
    pools.map((p) => p.data),
    cell.localSteps,
    log,
    { count: sites.length, trainer: (made, i) => siteTrainer((shared ??= made.map((t, k) => new SharedTrainer(t, pools[k].pool))), i, sites) },
  );
  // The manifest's ε (privacy.epsilon, charged at q by the product) beside the accountant's figure for the same q, z, rounds.
  const z = (cfg.overrides.privacy as { noiseMultiplier: number }).noiseMultiplier;
  for (const p of r.curve) if (p.round >= 1 && z >= 0.01) p.extra['privacy.epsilon_sampled'] = sampledEpsilon(XD_POISSON, z, p.round, 1e-5);
  return { cell, ok: true, curves: [r.curve], backend: r.backend, seconds: (Date.now() - t0) / 1000 };
}

if (require.main === module) {
  const cell = JSON.parse(process.argv[2] ?? '') as QualityCell;
  void runCell21(cell, (l) => process.stderr.write(`${cell.split}/${cell.config}/${cell.seed} ${l}\n`))
    .catch((e: Error): CellResult => ({ cell, ok: false, error: e.message, curves: [], backend: '', seconds: 0 }))
    .then((r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exit(0);
    });
}
