// Runs 22 and 24 (bench/QUALITY.md "Run 22", "Run 24"): run 21's DP arm and its noiseless twin, product-sampled
// (bench/quality-sampled-cell.ts), with the two arms of a seed drawing the SAME cohorts (a sampling secret and run id
// derived from the seed), so that they differ in DP's noise alone; in one of the regimes of
// bench/quality-configs-run22.ts (prefix x22), bench/quality-configs-run24.ts (x24: longer, averaged longer) or
// bench/quality-configs-run24a.ts (x24a: adaptive clipping). One cell per process:
//   node dist/bench/quality-run22-cell.js '{"regime":"e1m100","arm":"dp8","seed":42}'   (prints its CellResult last)
// Optional keys: prefix ('x22'), rounds (default the regime's: a shorter pilot keeps the regime's z), testLimit
// (400), evalEvery (5), evalLast (10).
import type { QualityCell } from './quality-cell';
import type { QualityConfig } from './quality-configs';
import { RUN22_CONFIGS, RUN22_REGIMES, type SampledRegime } from './quality-configs-run22';
import { RUN24_CONFIGS } from './quality-configs-run24';
import { RUN24A_CONFIGS } from './quality-configs-run24a';
import { cellMain, runSampledCell, type SampledCellResult } from './quality-sampled-cell';

/** Which table an arm is from: run 22's, run 24's or run 24a's. */
export type PairedPrefix = 'x22' | 'x24' | 'x24a';

export interface Run22Arg {
  readonly prefix?: PairedPrefix;
  readonly regime: string;
  readonly arm: 'dp8' | 'clip';
  readonly seed: number;
  readonly rounds?: number;
  readonly testLimit?: number;
  readonly evalEvery?: number;
  readonly evalLast?: number;
}

/** Every paired arm by its config name (`<prefix>-<regime>-<arm>`), with the regime it runs over. */
export const PAIRED_ARMS: Readonly<Record<string, QualityConfig & { regime: SampledRegime }>> = {
  ...Object.fromEntries(Object.entries({ ...RUN22_CONFIGS, ...RUN24A_CONFIGS }).map(([k, c]) => [k, { ...c, regime: RUN22_REGIMES[c.regime] }])),
  ...RUN24_CONFIGS,
};

/** The quality cell of an arm: the regime's population, batch = the site's e-mails (one epoch, one SGD step at 1). */
export function run22Cell(a: Run22Arg): QualityCell {
  const config = `${a.prefix ?? 'x22'}-${a.regime}-${a.arm}`;
  const cfg = PAIRED_ARMS[config];
  if (!cfg) throw new Error(`unknown paired arm ${JSON.stringify(config)}`);
  const r = cfg.regime;
  return {
    split: 'dirichlet-0.5',
    seed: a.seed,
    splitSeed: 7,
    config,
    rounds: a.rounds ?? r.rounds,
    clients: r.sites,
    localSteps: 1,
    batchSize: r.perSite,
    learningRate: 1,
    testLimit: a.testLimit ?? 400,
    fedEval: false,
    valLimit: 0,
    evalEvery: a.evalEvery ?? 5,
    evalLast: a.evalLast ?? 10,
  };
}

export function runCell22(cell: QualityCell, log: (line: string) => void): Promise<SampledCellResult> {
  const cfg = PAIRED_ARMS[cell.config];
  if (!cfg) throw new Error(`unknown paired arm ${JSON.stringify(cell.config)}`);
  return runSampledCell(cell, cfg, cfg.regime, log, cell.seed);
}

if (require.main === module) cellMain(run22Cell(JSON.parse(process.argv[2] ?? '') as Run22Arg), runCell22);
