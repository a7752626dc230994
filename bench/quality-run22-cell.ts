// Run 22 (bench/QUALITY.md "Run 22"): run 21's DP arm and its noiseless twin, product-sampled
// (bench/quality-sampled-cell.ts), with the two arms of a seed drawing the SAME cohorts (a sampling secret and run id
// derived from the seed), so that they differ in DP's noise alone; in one of the regimes of
// bench/quality-configs-run22.ts. One cell per process:
//   node dist/bench/quality-run22-cell.js '{"regime":"e1m100","arm":"dp8","seed":42}'   (prints its CellResult last)
// Optional keys: rounds (default the regime's 150: a shorter pilot keeps the regime's z), testLimit (400),
// evalEvery (5), evalLast (10), prefix ('x22'; 'x24a': run 24a's adaptive-clipping arms, quality-configs-run24a.ts).
import type { QualityCell } from './quality-cell';
import { RUN22_CONFIGS, RUN22_REGIMES, type Run22RegimeName } from './quality-configs-run22';
import { RUN24A_CONFIGS } from './quality-configs-run24a';
import { cellMain, runSampledCell, type SampledCellResult } from './quality-sampled-cell';

export interface Run22Arg {
  readonly regime: Run22RegimeName;
  readonly arm: 'dp8' | 'clip';
  readonly seed: number;
  readonly rounds?: number;
  readonly testLimit?: number;
  readonly evalEvery?: number;
  readonly evalLast?: number;
  /** Which table's arm: run 22's ('x22', the default) or run 24a's ('x24a'). */
  readonly prefix?: 'x22' | 'x24a';
}

const CONFIGS = { ...RUN22_CONFIGS, ...RUN24A_CONFIGS };

/** The quality cell of an arm: the regime's population, batch = the site's e-mails (one epoch, one SGD step at 1). */
export function run22Cell(a: Run22Arg): QualityCell {
  const r = RUN22_REGIMES[a.regime];
  if (!r) throw new Error(`unknown run 22 regime ${JSON.stringify(a.regime)}`);
  return {
    split: 'dirichlet-0.5',
    seed: a.seed,
    splitSeed: 7,
    config: `${a.prefix ?? 'x22'}-${a.regime}-${a.arm}`,
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
  const cfg = CONFIGS[cell.config];
  if (!cfg) throw new Error(`unknown run 22 or 24a config ${JSON.stringify(cell.config)}`);
  return runSampledCell(cell, cfg, RUN22_REGIMES[cfg.regime], log, cell.seed);
}

if (require.main === module) cellMain(run22Cell(JSON.parse(process.argv[2] ?? '') as Run22Arg), runCell22);
