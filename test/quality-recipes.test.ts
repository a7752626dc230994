// docs/recipes/*.json5: the measured recipes bench/QUALITY.md recommends, as configuration files for `fedtune
// coordinator --config`. Each must load to exactly what the quality benchmark ran for its configuration: the
// configuration's overrides, its own rate and steps, and the cell's common settings (batch 16, LoRA dropout 0),
// with every other key at the coordinator's defaults of the time (docs/recipes/fedavg-classic.json5, which the
// benchmark's cells start from), so the figures quoted in the file are the file's.
import * as path from 'node:path';
import { loadConfig } from '../coordinator/config';
import { classicConfig } from './classic-defaults';
import { QUALITY_CONFIGS, cellOverrides, configTraining, deepMerge } from '../bench/quality-configs';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const RECIPES = path.join(__dirname, '..', '..', 'docs', 'recipes');

// The cell's common training settings (bench/quality-cell.ts, bench/quality.ts flags as runs 6-10 ran them).
// `batchSize`: the driver's --batch-size for the configuration's cells (16 unless its run said otherwise);
// `rounds`: its --rounds (each recipe states its measured length).
function measured(config: string, batchSize: number, rounds: number): ReturnType<typeof loadConfig> {
  const c = QUALITY_CONFIGS[config];
  const own = configTraining(c);
  const common = {
    rounds: { total: rounds },
    training: { localSteps: own.localSteps ?? 10, batchSize, learningRate: own.learningRate ?? 0.002 },
    lora: { dropout: 0 },
    // Version retention is no part of what a cell measured: the recipes keep the coordinator's (checkpoints.*).
    checkpoints: loadConfig().checkpoints,
  };
  return classicConfig({ overrides: deepMerge(common, cellOverrides(c)) });
}

describe('docs/recipes: the measured recipes as configuration files', () => {
  for (const [file, config] of [
    ['non-iid-peak.json5', 'fedprox-cos-k50'],
    ['non-iid-steady.json5', 'prox-avgm8-k50'],
    ['non-iid-no-collapse.json5', 'prox-avgm8-k50-scos'],
  ] as const) {
    it(`${file} is the benchmark's ${config}`, () => {
      const got = loadConfig({ file: path.join(RECIPES, file) });
      expect(got).to.deep.equal(measured(config, 16, 30));
      // And it differs from the defaults where the benchmark did.
      expect(got.training.localSteps).to.equal(50);
      expect(got.training.schedule).to.equal('cosine');
    });
  }

  it("label-skew-fedsgd.json5 is the benchmark's fedsgd-adambc-5e3 (run 14: --batch-size 32)", () => {
    const got = loadConfig({ file: path.join(RECIPES, 'label-skew-fedsgd.json5') });
    expect(got).to.deep.equal(measured('fedsgd-adambc-5e3', 32, 400));
    expect(got.training.localSteps).to.equal(1);
    expect(got.strategy.biasCorrection).to.equal(true);
  });

  it("fedsgd-every-split.json5 is the benchmark's fedsgd-adambc-3e3 (runs 14b, 14c: --batch-size 32)", () => {
    const got = loadConfig({ file: path.join(RECIPES, 'fedsgd-every-split.json5') });
    expect(got).to.deep.equal(measured('fedsgd-adambc-3e3', 32, 600));
    expect(got.strategy.serverLearningRate).to.equal(0.003);
    expect(got.strategy.biasCorrection).to.equal(true);
  });

  it("fedsgd-steady.json5 is the benchmark's fedsgd-adambc-3e3-ema99 (run 16: --batch-size 32)", () => {
    const got = loadConfig({ file: path.join(RECIPES, 'fedsgd-steady.json5') });
    expect(got).to.deep.equal(measured('fedsgd-adambc-3e3-ema99', 32, 600));
    expect(got.strategy.ema).to.equal(0.99);
    // fedsgd-every-split.json5 with the average on, and nothing else changed.
    const plain = loadConfig({ file: path.join(RECIPES, 'fedsgd-every-split.json5') });
    expect({ ...got, strategy: { ...got.strategy, ema: 0 } }).to.deep.equal(plain);
  });
});
