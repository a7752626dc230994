// docs/recipes/dp8-cross-device.json5 (bench/QUALITY.md, run 18): the file loads to exactly what the quality
// benchmark ran for `x18-dp8` (its overrides, rate 1, one step, the cross-device cells' batch of 4, LoRA dropout 0,
// 150 rounds, every other key at the defaults the cells started from), and differs from its noiseless twin `x18-clip` in z alone.
import * as path from 'node:path';
import { loadConfig } from '../coordinator/config';
import { classicConfig } from './classic-defaults';
import { QUALITY_CONFIGS, cellOverrides, configTraining, deepMerge } from '../bench/quality-configs';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const RECIPE = path.join(__dirname, '..', '..', 'docs', 'recipes', 'dp8-cross-device.json5');

function measured(config: string): ReturnType<typeof loadConfig> {
  const c = QUALITY_CONFIGS[config];
  const own = configTraining(c);
  const common = {
    rounds: { total: 150 },
    training: { localSteps: own.localSteps, batchSize: 4, learningRate: own.learningRate },
    lora: { dropout: 0 },
    // Version retention is no part of what a cell measured: the recipe keeps the coordinator's (checkpoints.*).
    checkpoints: loadConfig().checkpoints,
  };
  // The cells start from the coordinator's defaults of the time (test/classic-defaults.ts), as run 18 ran.
  return classicConfig({ overrides: deepMerge(common, cellOverrides(c)) });
}

describe('docs/recipes/dp8-cross-device.json5', () => {
  it("is the benchmark's x18-dp8 (run 18: --batch-size 4), and its twin x18-clip with z 0.749 in place of 1e-6", () => {
    const got = loadConfig({ file: RECIPE });
    expect(got).to.deep.equal(measured('x18-dp8'));
    expect(got.strategy.noiseAware).to.equal(true);
    expect(got.privacy.noiseMultiplier).to.equal(0.749);
    expect({ ...got, privacy: { ...got.privacy, noiseMultiplier: 1e-6 } }).to.deep.equal(measured('x18-clip'));
  });
});
