// The coordinator's defaults are the best-measured configuration, docs/recipes/fedsgd-steady.json5 (bench/QUALITY.md
// run 16), and the defaults before the switch stay reachable as docs/recipes/fedavg-classic.json5. Under another
// strategy the recipe's FedAdam settings that nothing sets fall back to their neutral values (coordinator/default-recipe.ts).
import * as path from 'node:path';
import { loadConfig } from '../coordinator/config';
import { STRATEGY_NEUTRAL } from '../coordinator/default-recipe';
import { CLASSIC_DEFAULTS } from './classic-defaults';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const RECIPES = path.join(__dirname, '..', '..', 'docs', 'recipes');

describe('default configuration: the measured recipe', () => {
  it('the defaults load to exactly docs/recipes/fedsgd-steady.json5', () => {
    const defaults = loadConfig();
    expect(defaults).to.deep.equal(loadConfig({ file: path.join(RECIPES, 'fedsgd-steady.json5') }));
    expect(defaults.strategy).to.include({ name: 'fedadam', serverLearningRate: 0.003, biasCorrection: true, serverSchedule: 'cosine', ema: 0.99 });
    expect(defaults.training).to.include({ localSteps: 1, batchSize: 32, learningRate: 1, optimizer: 'sgd', schedule: 'constant' });
    expect(defaults.rounds).to.include({ total: 600, minClients: 2, minUpdates: 2, clientsPerRound: 100 });
    expect(defaults.lora.dropout).to.equal(0);
  });

  it('fedavg-classic.json5 is the defaults before the switch, key for key, and nothing else differs', () => {
    const classic = loadConfig({ file: CLASSIC_DEFAULTS });
    const defaults = loadConfig();
    const before = {
      rounds: { ...defaults.rounds, total: 5 },
      strategy: {
        ...defaults.strategy,
        name: 'fedavg',
        serverLearningRate: 0,
        beta2: 0.99,
        tau: 1e-3,
        biasCorrection: false,
        serverSchedule: 'constant',
        ema: 0,
      },
      training: { ...defaults.training, localSteps: 8, batchSize: 8, learningRate: 0.002, optimizer: 'adamw' },
      lora: { ...defaults.lora, dropout: 0.05 },
      checkpoints: { ...defaults.checkpoints, keepServerState: 0, keepAdapters: 0 },
    };
    expect(classic).to.deep.equal({ ...defaults, ...before });
  });

  it("another strategy by flag or variable gets the recipe's FedAdam keys at their neutral values, the average kept", () => {
    for (const cfg of [loadConfig({ args: ['--strategy.name', 'fedavg'] }), loadConfig({ env: { FEDTUNE_STRATEGY: 'scaffold' } })]) {
      expect(cfg.strategy).to.include({ serverLearningRate: 0, beta2: 0.99, tau: 1e-3, biasCorrection: false, serverSchedule: 'constant', ema: 0.99 });
    }
    expect(STRATEGY_NEUTRAL.map(([k]) => k)).to.deep.equal(['serverLearningRate', 'beta2', 'tau', 'biasCorrection', 'serverSchedule']);
    // fedadam named explicitly is the recipe's strategy: nothing changes.
    expect(loadConfig({ args: ['--strategy.name', 'fedadam'] })).to.deep.equal(loadConfig());
  });

  it('a key that is set keeps its value under another strategy, and what the strategy cannot use is still refused', () => {
    const yogi = loadConfig({ args: ['--strategy.name', 'fedyogi', '--strategy.tau', '0.01'], env: { FEDTUNE_STRATEGY_BIAS_CORRECTION: 'true' } });
    expect(yogi.strategy).to.include({ tau: 0.01, biasCorrection: true, beta2: 0.99, serverLearningRate: 0 });
    const avgm = loadConfig({ overrides: { strategy: { name: 'fedavgm', serverSchedule: 'cosine', serverLearningRate: 0.2 } } });
    expect(avgm.strategy).to.include({ serverSchedule: 'cosine', serverLearningRate: 0.2, biasCorrection: false });
    expect(() => loadConfig({ args: ['--strategy.name', 'fedavg', '--strategy.biasCorrection', 'true'] })).to.throw(
      "invalid configuration: strategy.biasCorrection is Adam's bias correction of fedadam, fedyogi, fedadagrad; strategy.name is 'fedavg'",
    );
  });
});
