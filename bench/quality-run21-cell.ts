// Run 21 (bench/QUALITY.md "Run 21"): run 18's DP arm (`x18-dp8`) with the product's own Poisson sampling
// (privacy.sampling 'poisson', coordinator/privacy/sampling.ts) instead of the benchmark's sampler: 1,156 virtual
// sites of 4 e-mails, each a real FederationClient over real gRPC (bench/quality-sampled-cell.ts), the coordinator
// drawing each round's cohort from its own fresh secret at q = 50/1,156. One cell per process:
//   node dist/bench/quality-run21-cell.js '{"config":"x21-dp8","seed":42,...}'   (prints its CellResult last)
import type { QualityConfig } from './quality-configs';
import { RUN18_CONFIGS } from './quality-configs-run18';
import { XD_POISSON } from './quality-configs-run15';
import { cellMain, productSampled, runSampledCell, type SampledCellResult } from './quality-sampled-cell';
import type { QualityCell } from './quality-cell';

/** The population and rate: run 18's (1,156 sites of 4 e-mails, 50 expected a round). */
export const RUN21_POPULATION = XD_POISSON.sites;
export const RUN21_Q = XD_POISSON.cohort / XD_POISSON.sites;

export const RUN21_CONFIGS: Readonly<Record<string, QualityConfig>> = {
  'x21-dp8': productSampled(RUN18_CONFIGS['x18-dp8'], RUN21_POPULATION, RUN21_Q),
  'x21-clip': productSampled(RUN18_CONFIGS['x18-clip'], RUN21_POPULATION, RUN21_Q),
};

export function runCell21(cell: QualityCell, log: (line: string) => void): Promise<SampledCellResult> {
  const cfg = RUN21_CONFIGS[cell.config];
  if (!cfg) throw new Error(`unknown run 21 config ${JSON.stringify(cell.config)}`);
  return runSampledCell(cell, cfg, XD_POISSON, log);
}

if (require.main === module) cellMain(JSON.parse(process.argv[2] ?? '') as QualityCell, runCell21);
