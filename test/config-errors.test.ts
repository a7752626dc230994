// coordinator/config.ts's refusals: errors that name the bad key (and value) from every source, unknown keys at any
// depth, a missing or malformed file, and the cross-key checks.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, loadConfig, type LoadConfigOptions } from '../coordinator/config';
import { MAX_CHUNK_BYTES } from '../proto/tensor-stream';
import { configFiles } from './config-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

function configError(opts: LoadConfigOptions): ConfigError {
  try {
    loadConfig(opts);
  } catch (e) {
    expect(e).to.be.instanceOf(ConfigError);
    expect((e as Error).name).to.equal('ConfigError');
    expect((e as Error).message).to.match(/^invalid configuration: /);
    return e as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(opts)}`);
}

describe('config.ts: loadConfig and describeConfig', () => {
  const { dir: tempDir, writeJson } = configFiles();

  describe('errors', () => {
    it('name the bad key (and value) for every kind of format, from every source', async () => {
      const cases: [LoadConfigOptions, string][] = [
        [{ overrides: { server: { port: 70000 } } }, 'server.port: must be a port number 0..65535 (0: any free port): value was 70000'],
        [{ env: { FEDTUNE_SERVER_PORT: '-1' } }, 'server.port: must be a port number'],
        [{ args: ['--server.port', '80.5'] }, 'server.port: must be a port number'],
        [{ overrides: { run: { seed: -1 } } }, 'run.seed: must be an integer ≥ 0: value was -1'],
        [{ overrides: { run: { seed: 0.5 } } }, 'run.seed: must be an integer ≥ 0'],
        [{ overrides: { rounds: { total: 0 } } }, 'rounds.total: must be an integer ≥ 1'],
        [{ env: { FEDTUNE_ROUNDS_DEADLINE_MS: 'soon' } }, 'rounds.deadlineMs: must be an integer ≥ 1'],
        [{ args: ['--rounds.maxAttempts', '2.5'] }, 'rounds.maxAttempts: must be an integer ≥ 1: value was 2.5'],
        [{ overrides: { rounds: { clientsPerRound: 1.5 } } }, 'rounds.clientsPerRound: must be an integer count ≥ 1 or a fraction in (0, 1): value was 1.5'],
        [{ overrides: { rounds: { clientsPerRound: 0 } } }, 'rounds.clientsPerRound: must be an integer count ≥ 1 or a fraction in (0, 1)'],
        [{ overrides: { rounds: { clientsPerRound: -0.5 } } }, 'rounds.clientsPerRound: must be'],
        [
          { overrides: { strategy: { name: 'fedprox' } } },
          'strategy.name: must be one of the possible values: ["fedavg","fedavgm","fedadam","fedyogi","fedadagrad","scaffold"]: value was "fedprox"',
        ],
        [{ overrides: { strategy: { beta2: 1 } } }, 'strategy.beta2: must be a number in [0, 1): value was 1'],
        [{ overrides: { strategy: { tau: 0 } } }, 'strategy.tau: must be a finite number > 0'],
        [{ overrides: { strategy: { serverLearningRate: -1 } } }, 'strategy.serverLearningRate: must be a finite number ≥ 0'],
        [{ overrides: { training: { proximalMu: -0.1 } } }, 'training.proximalMu: must be a finite number ≥ 0'],
        [{ overrides: { training: { schedule: 'linear' } } }, 'training.schedule: must be one of the possible values: ["constant","cosine"]'],
        [{ overrides: { training: { optimizer: 'lion' } } }, 'training.optimizer: must be one of the possible values: ["adamw","sgd"]'],
        [{ overrides: { training: { optimizer: 'sgd', momentum: 1 } } }, 'training.momentum: must be a number in [0, 1)'],
        [{ overrides: { lora: { alpha: 0 } } }, 'lora.alpha: must be a finite number > 0'],
        [{ overrides: { lora: { alpha: Infinity } } }, 'lora.alpha: must be a finite number > 0'],
        [{ overrides: { lora: { dropout: 1 } } }, 'lora.dropout: must be a number in [0, 1): value was 1'],
        [{ overrides: { lora: { dropout: -0.1 } } }, 'lora.dropout: must be a number in [0, 1)'],
        [
          { overrides: { lora: { targetModules: ['w_proj'] } } },
          'lora.targetModules: must be a non-empty list drawn from c_attn, c_proj, c_fc, q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj: value was ["w_proj"]',
        ],
        [{ overrides: { lora: { targetModules: [] } } }, 'lora.targetModules: must be a non-empty list'],
        [{ env: { FEDTUNE_LORA_TARGET_MODULES: 'c_attn,mlp' } }, 'lora.targetModules: must be a non-empty list'],
        [{ overrides: { training: { learningRate: -1 } } }, 'training.learningRate: must be a finite number > 0'],
        [{ args: ['--training.learningRate', 'fast'] }, 'training.learningRate: must be a finite number > 0'],
        [{ overrides: { training: { weightDecay: -0.01 } } }, 'training.weightDecay: must be a finite number ≥ 0'],
        [{ overrides: { training: { batchSize: '8x' } } }, 'training.batchSize: must be an integer ≥ 1'],
        [{ overrides: { log: { level: 'verbose' } } }, 'log.level: must be one of the possible values'],
        [{ overrides: { server: { host: 5 } } }, 'server.host: must be of type String'],
        [{ file: await writeJson('bad-value.json', { rounds: { minClients: 0 } }) }, 'rounds.minClients: must be an integer ≥ 1'],
      ];
      for (const [opts, msg] of cases) expect(configError(opts).message, JSON.stringify(opts)).to.contain(msg);
    });

    it('refuse unknown keys in overrides and files, at any depth', async () => {
      expect(configError({ overrides: { nonsense: 1 } }).message).to.contain("configuration param 'nonsense' not declared in the schema");
      expect(configError({ overrides: { rounds: { totl: 3 } } }).message).to.contain("configuration param 'rounds.totl' not declared in the schema");
      expect(configError({ overrides: { lora: { r: 4, extra: { deep: true } } } }).message).to.contain("'lora.extra");
      expect(configError({ file: await writeJson('unknown.json', { transport: { chunkSize: 5 } }) }).message).to.contain("'transport.chunkSize' not declared");
    });

    it('report a missing or malformed file', async () => {
      expect(configError({ file: path.join(tempDir(), 'absent.json') }).message).to.contain('absent.json');
      const bad = path.join(tempDir(), 'malformed.json');
      await fs.writeFile(bad, '{ "rounds": { "total": 2 ');
      configError({ file: bad });
    });

    it('check keys against each other', () => {
      expect(configError({ overrides: { rounds: { minUpdates: 5 } } }).message).to.contain('rounds.minUpdates (5) must not exceed rounds.minClients (2)');
      expect(configError({ overrides: { rounds: { clientsPerRound: 3, minUpdates: 4, minClients: 4 } } }).message).to.contain(
        'rounds.clientsPerRound (3) must be at least rounds.minUpdates (4)',
      );
      // A fraction is resolved against the connected clients at selection time, so it is not compared.
      expect(loadConfig({ overrides: { rounds: { clientsPerRound: 0.1, minUpdates: 2 } } }).rounds.clientsPerRound).to.equal(0.1);
      expect(loadConfig({ overrides: { rounds: { clientsPerRound: 2, minUpdates: 2 } } }).rounds.clientsPerRound).to.equal(2);
      expect(configError({ overrides: { transport: { chunkBytes: MAX_CHUNK_BYTES + 1 } } }).message).to.contain(
        `transport.chunkBytes (${MAX_CHUNK_BYTES + 1}) must stay below gRPC's 4 MiB message limit (max ${MAX_CHUNK_BYTES})`,
      );
      expect(loadConfig({ overrides: { transport: { chunkBytes: MAX_CHUNK_BYTES } } }).transport.chunkBytes).to.equal(MAX_CHUNK_BYTES);
      expect(configError({ overrides: { training: { optimizer: 'adamw', momentum: 0.9 } } }).message).to.contain(
        "training.momentum (0.9) applies to training.optimizer 'sgd' only (training.optimizer is 'adamw')",
      );
      expect(loadConfig({ overrides: { training: { optimizer: 'sgd', momentum: 0.9 } } }).training.momentum).to.equal(0.9);
      expect(configError({ overrides: { training: { learningRate: 0.01, minLearningRate: 0.02 } } }).message).to.contain(
        'training.minLearningRate (0.02) must not exceed training.learningRate (0.01)',
      );
      // Several problems are reported together.
      const both = configError({ overrides: { rounds: { minUpdates: 3, clientsPerRound: 2 }, transport: { chunkBytes: 8 << 20 } } }).message;
      expect(both)
        .to.contain('rounds.minUpdates (3) must not exceed')
        .and.contain('rounds.clientsPerRound (2) must be at least')
        .and.contain('transport.chunkBytes');
      expect(both.split('; ')).to.have.length(3);
    });
  });
});
