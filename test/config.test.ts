// coordinator/config.ts, key by key: every key's documented default, the precedence file < environment < flags <
// overrides for each, and the generated reference (describeConfig). Refusals: config-errors.test.ts; what a manifest
// records: config-manifest.test.ts.
import * as path from 'node:path';
import { describeConfig, loadConfig } from '../coordinator/config';
import { configFiles } from './config-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const DEFAULTS: Record<string, unknown> = {
  'server.host': '127.0.0.1',
  'server.port': 50051,
  'server.finishNoticeMs': 15000,
  'server.floraCloseThreads': 0,
  'run.dir': 'runs/default',
  'run.id': 'default',
  'run.seed': 42,
  'rounds.total': 600,
  'rounds.minClients': 2,
  'rounds.clientsPerRound': 100,
  'rounds.minUpdates': 2,
  'rounds.deadlineMs': 120000,
  'rounds.maxAttempts': 3,
  'rounds.reconnectGraceMs': 10000,
  'strategy.name': 'fedadam',
  'strategy.serverLearningRate': 0.003,
  'strategy.momentum': 0.9,
  'strategy.beta1': 0.9,
  'strategy.beta2': 0.999,
  'strategy.tau': 1e-8,
  'strategy.population': 0,
  'strategy.biasCorrection': true,
  'strategy.serverSchedule': 'cosine',
  'strategy.ema': 0.99,
  'strategy.noiseAware': false,
  'strategy.noiseFloor': 0.25,
  'model.dir': path.resolve(__dirname, '..', '..', 'examples', 'base-model'),
  'model.name': 'fedtune/brown-sotu-gpt2-1.9m',
  'lora.r': 8,
  'lora.alpha': 16,
  'lora.dropout': 0,
  'lora.targetModules': ['c_attn', 'c_proj', 'c_fc'],
  // 'auto' as documented, resolved at load: 'fedit' without secure aggregation.
  'lora.aggregation': 'fedit',
  'training.localSteps': 1,
  'training.batchSize': 32,
  'training.learningRate': 1,
  'training.weightDecay': 0,
  'training.maxSeqLen': 96,
  'training.proximalMu': 0,
  'training.schedule': 'constant',
  'training.warmupRounds': 0,
  'training.minLearningRate': 0,
  'training.optimizer': 'sgd',
  'training.momentum': 0,
  'transport.chunkBytes': 1 << 20,
  'transport.maxUploadBytes': 256 * 1024 * 1024,
  'transport.uploadIdleTimeoutMs': 30000,
  'transport.openOffThreadMinBytes': 16 << 20,
  'transport.pieceBytes': 4 << 20,
  'transport.maxRangeCallsPerSite': 16,
  'transport.keepaliveTimeMs': 60000,
  'transport.keepaliveTimeoutMs': 30000,
  'admission.maxPendingChallenges': 50000,
  'admission.maxChallengesPerHost': 10000,
  'admission.maxSessions': 100000,
  'admission.maxUploadsInFlight': 256,
  'admission.maxUploadBytesInFlight': 1073741824,
  'admission.retryAfterMs': 1000,
  'secagg.enabled': false,
  'secagg.threshold': 0,
  'secagg.fullGraphMax': 32,
  'secagg.clipNorm': 10,
  'secagg.weightCap': 10000,
  'secagg.maxClients': 1024,
  'secagg.stageTimeoutMs': 30000,
  'secagg.rosterFile': '',
  'privacy.enabled': false,
  'privacy.clipNorm': 1,
  'privacy.noiseMultiplier': 1,
  'privacy.adaptiveClipping': false,
  'privacy.clipTargetQuantile': 0.5,
  'privacy.clipLearningRate': 0.2,
  'privacy.clipCountNoise': 2.5,
  'privacy.delta': 1e-5,
  'privacy.targetEpsilon': 0,
  'privacy.epsilonBudget': 0,
  'privacy.sampling': 'selection',
  'privacy.samplingRate': 1,
  'privacy.minPopulation': 100,
  'auth.mode': 'enrolled',
  'auth.allowList': [],
  'auth.challengeTtlMs': 60000,
  'tls.certFile': '',
  'tls.keyFile': '',
  'tls.clientCaFile': '',
  'security.keyFile': '',
  'evaluation.enabled': false,
  'evaluation.everyRounds': 1,
  'evaluation.sites': 'participants',
  'evaluation.fraction': 1,
  'evaluation.minSites': 1,
  'evaluation.deadlineMs': 60000,
  'earlyStopping.metric': 'eval.loss',
  'earlyStopping.mode': 'min',
  'earlyStopping.patience': 0,
  'earlyStopping.minDelta': 0,
  'earlyStopping.window': 1,
  'checkpoints.keepServerState': 2,
  'checkpoints.keepAdapters': 20,
  'checkpoints.keepEvery': 50,
  'metrics.port': 0,
  'metrics.host': '127.0.0.1',
  'dashboard.port': 0,
  'dashboard.host': '127.0.0.1',
  'dashboard.token': '',
  'log.level': 'info',
  'log.format': 'auto',
  'log.progressMs': 30000,
};

/** A valid non-default value for every key, as it would be typed in the environment or a flag. */
const SAMPLES: Record<string, [string, unknown]> = {
  'server.host': ['0.0.0.0', '0.0.0.0'],
  'server.port': ['0', 0],
  'server.finishNoticeMs': ['0', 0],
  'server.floraCloseThreads': ['3', 3],
  'run.dir': ['/tmp/some-run', '/tmp/some-run'],
  'run.id': ['exp-7', 'exp-7'],
  'run.seed': ['0', 0],
  'rounds.total': ['12', 12],
  'rounds.minClients': ['4', 4],
  'rounds.clientsPerRound': ['0.25', 0.25],
  'rounds.minUpdates': ['1', 1],
  'rounds.deadlineMs': ['5000', 5000],
  'rounds.maxAttempts': ['1', 1],
  'rounds.reconnectGraceMs': ['0', 0],
  'strategy.name': ['fedadam', 'fedadam'],
  'strategy.serverLearningRate': ['0.03', 0.03],
  'strategy.momentum': ['0', 0],
  'strategy.beta1': ['0.5', 0.5],
  'strategy.beta2': ['0.999', 0.999],
  'strategy.tau': ['1e-9', 1e-9],
  'strategy.population': ['5', 5],
  'strategy.biasCorrection': ['true', true],
  'strategy.serverSchedule': ['cosine', 'cosine'],
  'strategy.ema': ['0.99', 0.99],
  'strategy.noiseAware': ['true', true],
  'strategy.noiseFloor': ['0.5', 0.5],
  'model.dir': ['/models/x', '/models/x'],
  'model.name': ['org/model', 'org/model'],
  'lora.r': ['16', 16],
  'lora.alpha': ['0.5', 0.5],
  'lora.dropout': ['0', 0],
  'lora.targetModules': [' c_fc , c_attn', ['c_fc', 'c_attn']],
  'lora.aggregation': ['ffa', 'ffa'],
  'training.localSteps': ['3', 3],
  'training.batchSize': ['32', 32],
  'training.learningRate': ['1e-4', 1e-4],
  'training.weightDecay': ['0.01', 0.01],
  'training.maxSeqLen': ['128', 128],
  'training.proximalMu': ['0.01', 0.01],
  'training.schedule': ['cosine', 'cosine'],
  'training.warmupRounds': ['3', 3],
  'training.minLearningRate': ['0.0001', 0.0001],
  'training.optimizer': ['sgd', 'sgd'],
  'training.momentum': ['0.9', 0.9],
  'transport.chunkBytes': ['65536', 65536],
  'transport.maxUploadBytes': ['1048576', 1048576],
  'transport.uploadIdleTimeoutMs': ['2500', 2500],
  'transport.openOffThreadMinBytes': ['0', 0],
  'transport.pieceBytes': ['0', 0],
  'transport.maxRangeCallsPerSite': ['4', 4],
  'transport.keepaliveTimeMs': ['0', 0],
  'transport.keepaliveTimeoutMs': ['5000', 5000],
  'admission.maxPendingChallenges': ['100', 100],
  'admission.maxChallengesPerHost': ['10', 10],
  'admission.maxSessions': ['50', 50],
  'admission.maxUploadsInFlight': ['8', 8],
  'admission.maxUploadBytesInFlight': ['65536', 65536],
  'admission.retryAfterMs': ['250', 250],
  'secagg.enabled': ['false', false],
  'secagg.threshold': ['7', 7],
  'secagg.fullGraphMax': ['64', 64],
  'secagg.clipNorm': ['2.5', 2.5],
  'secagg.weightCap': ['500', 500],
  'secagg.maxClients': ['256', 256],
  'secagg.stageTimeoutMs': ['5000', 5000],
  'secagg.rosterFile': ['/etc/fedtune/secagg-roster.json', '/etc/fedtune/secagg-roster.json'],
  'privacy.enabled': ['true', true],
  'privacy.clipNorm': ['0.5', 0.5],
  'privacy.noiseMultiplier': ['1.1', 1.1],
  'privacy.adaptiveClipping': ['true', true],
  'privacy.clipTargetQuantile': ['0.8', 0.8],
  'privacy.clipLearningRate': ['0.1', 0.1],
  'privacy.clipCountNoise': ['5', 5],
  'privacy.delta': ['1e-6', 1e-6],
  'privacy.targetEpsilon': ['8', 8],
  'privacy.epsilonBudget': ['8', 8],
  'privacy.sampling': ['poisson', 'poisson'],
  'privacy.samplingRate': ['0.5', 0.5],
  'privacy.minPopulation': ['500', 500],
  'auth.mode': ['tofu', 'tofu'],
  'auth.allowList': [
    ' a=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= , b=AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=',
    ['a=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'b=AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE='],
  ],
  'auth.challengeTtlMs': ['1000', 1000],
  // Any readable file passes loadConfig (PEM contents are checked when the coordinator starts).
  'tls.certFile': [__filename, __filename],
  'tls.keyFile': [__filename, __filename],
  'tls.clientCaFile': [__filename, __filename],
  'security.keyFile': ['/etc/fedtune/coordinator.json', '/etc/fedtune/coordinator.json'],
  'evaluation.enabled': ['true', true],
  'evaluation.everyRounds': ['3', 3],
  'evaluation.sites': ['connected', 'connected'],
  'evaluation.fraction': ['0.5', 0.5],
  'evaluation.minSites': ['2', 2],
  'evaluation.deadlineMs': ['5000', 5000],
  'earlyStopping.metric': ['heldout.eval_accuracy', 'heldout.eval_accuracy'],
  'earlyStopping.mode': ['max', 'max'],
  // With the default metric eval.loss, patience needs evaluation.enabled (set with it below).
  'earlyStopping.patience': ['3', 3],
  'earlyStopping.minDelta': ['0.01', 0.01],
  'earlyStopping.window': ['5', 5],
  'checkpoints.keepServerState': ['0', 0],
  'checkpoints.keepAdapters': ['7', 7],
  'checkpoints.keepEvery': ['0', 0],
  'metrics.port': ['9464', 9464],
  'metrics.host': ['0.0.0.0', '0.0.0.0'],
  'dashboard.port': ['8080', 8080],
  'dashboard.host': ['::1', '::1'],
  'dashboard.token': ['a-dashboard-token-0123', 'a-dashboard-token-0123'],
  'log.level': ['silent', 'silent'],
  'log.format': ['json', 'json'],
  'log.progressMs': ['5000', 5000],
};

const get = (obj: unknown, key: string): unknown => key.split('.').reduce((o, k) => (o as Record<string, unknown>)[k], obj);
const nest = (key: string, value: unknown): Record<string, unknown> =>
  key.split('.').reduceRight<unknown>((v, k) => ({ [k]: v }), value) as Record<string, unknown>;

describe('config.ts: loadConfig and describeConfig', () => {
  const { writeJson } = configFiles();

  describe('defaults', () => {
    it('are valid and exactly the documented values', () => {
      const c = loadConfig();
      for (const [key, want] of Object.entries(DEFAULTS)) expect(get(c, key), key).to.deep.equal(want);
      expect(loadConfig({})).to.deep.equal(c);
    });

    it('derive run.id from the run directory unless given', () => {
      expect(loadConfig({ overrides: { run: { dir: '/data/runs/exp-3/' } } }).run.id).to.equal('exp-3');
      expect(loadConfig({ overrides: { run: { dir: 'relative/r9' } } }).run.id).to.equal('r9');
      expect(loadConfig({ overrides: { run: { dir: '/data/runs/exp-3', id: 'named' } } }).run.id).to.equal('named');
    });

    it('ignore the process environment unless it is passed in (hermetic)', () => {
      const saved = process.env.FEDTUNE_ROUNDS_TOTAL;
      process.env.FEDTUNE_ROUNDS_TOTAL = '9';
      try {
        expect(loadConfig().rounds.total).to.equal(600);
        expect(loadConfig({ env: process.env }).rounds.total).to.equal(9);
      } finally {
        if (saved === undefined) delete process.env.FEDTUNE_ROUNDS_TOTAL;
        else process.env.FEDTUNE_ROUNDS_TOTAL = saved;
      }
    });

    it('are not shared between loads', () => {
      const a = loadConfig();
      (a.lora.targetModules as string[]).push('x');
      expect(loadConfig().lora.targetModules).to.deep.equal(['c_attn', 'c_proj', 'c_fc']);
    });
  });

  describe('precedence: defaults < file < environment < flags < overrides', () => {
    it('each layer wins over the ones below it, for the same key', async () => {
      const file = await writeJson('prec.json', { rounds: { total: 2 }, lora: { r: 2 } });
      const env = { FEDTUNE_ROUNDS_TOTAL: '3', FEDTUNE_LORA_R: '3' };
      const args = ['--rounds.total', '4', '--lora.r', '4'];
      const overrides = { rounds: { total: 5 + 1 }, lora: { r: 6 } };
      expect(loadConfig({ file }).rounds.total).to.equal(2);
      expect(loadConfig({ file, env }).rounds.total).to.equal(3);
      expect(loadConfig({ file, env, args }).rounds.total).to.equal(4);
      expect(loadConfig({ file, env, args, overrides }).rounds.total).to.equal(6);
      expect(loadConfig({ file, env, args, overrides }).lora.r).to.equal(6);
      expect(loadConfig({ env, overrides }).lora.r).to.equal(6);
      expect(loadConfig({ args, overrides }).lora.r).to.equal(6);
      expect(loadConfig({ file, args }).lora.r).to.equal(4);
      expect(loadConfig({ env, args }).lora.r).to.equal(4);
    });

    it('layers merge key by key: each keeps the keys it sets and leaves the rest', async () => {
      const file = await writeJson('merge.json', { rounds: { total: 2, deadlineMs: 1000 }, lora: { r: 4, alpha: 3 }, training: { batchSize: 2 } });
      const c = loadConfig({
        file,
        env: { FEDTUNE_ROUNDS_TOTAL: '3', FEDTUNE_LORA_TARGET_MODULES: 'c_attn,c_fc' },
        args: ['--rounds.maxAttempts', '7'],
        overrides: { lora: { alpha: 8 }, training: {} },
      });
      expect(c.rounds).to.include({ total: 3, deadlineMs: 1000, maxAttempts: 7, minClients: 2 });
      expect(c.lora).to.deep.equal({ r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn', 'c_fc'], aggregation: 'fedit' });
      expect(c.training.batchSize).to.equal(2);
      expect(c.training.localSteps).to.equal(1);
    });

    it('overrides replace arrays whole and win over an environment list', () => {
      const c = loadConfig({ env: { FEDTUNE_LORA_TARGET_MODULES: 'c_attn,c_fc' }, overrides: { lora: { targetModules: ['c_proj'] } } });
      expect(c.lora.targetModules).to.deep.equal(['c_proj']);
    });

    it('every documented environment variable and flag sets its key, from a string', () => {
      const docs = describeConfig();
      expect(docs.map((d) => d.key).sort()).to.deep.equal(Object.keys(SAMPLES).sort());
      // Cross-key rules are relaxed so that each sample can be tried on its own.
      const base = { rounds: { minUpdates: 1 } };
      // The tls.* keys go together, so each is tried with the others it needs set (but not itself).
      const tlsBase = (key: string): Record<string, unknown> => {
        const all: Record<string, string> = { certFile: __filename, keyFile: __filename };
        delete all[key.slice('tls.'.length)];
        return { ...base, tls: all };
      };
      for (const d of docs) {
        const [text, want] = SAMPLES[d.key];
        const overrides =
          d.key === 'rounds.minUpdates'
            ? {}
            : d.key.startsWith('tls.')
              ? tlsBase(d.key)
              : d.key === 'earlyStopping.patience'
                ? { ...base, evaluation: { enabled: true } }
                : d.key === 'training.momentum'
                  ? { ...base, training: { optimizer: 'sgd' } }
                  : d.key === 'strategy.serverSchedule'
                    ? { ...base, strategy: { name: 'fedavgm' } }
                    : d.key === 'strategy.biasCorrection'
                      ? { ...base, strategy: { name: 'fedadam' } }
                      : d.key === 'strategy.noiseAware'
                        ? { ...base, strategy: { name: 'fedadam' }, privacy: { enabled: true } }
                        : d.key === 'privacy.sampling' || d.key === 'privacy.samplingRate'
                          ? { ...base, privacy: { enabled: true, sampling: 'poisson' } }
                          : d.key === 'privacy.adaptiveClipping' || d.key === 'privacy.targetEpsilon'
                            ? { ...base, privacy: { enabled: true } }
                            : base;
        expect(get(loadConfig({ env: { [d.env]: text }, overrides }), d.key), d.env).to.deep.equal(want);
        expect(get(loadConfig({ args: [d.arg, text], overrides }), d.key), d.arg).to.deep.equal(want);
        expect(get(loadConfig({ args: [`${d.arg}=${text}`], overrides }), d.key), `${d.arg}=`).to.deep.equal(want);
      }
    });

    it('a JSON file can set every key', async () => {
      let all: Record<string, unknown> = {};
      // privacy.targetEpsilon derives z, so it cannot stand beside privacy.noiseMultiplier's sample (refused: not both).
      const samples = Object.entries(SAMPLES).filter(([key]) => key !== 'privacy.targetEpsilon');
      for (const [key, [, value]] of samples) {
        const n = nest(key, value);
        const [section] = Object.keys(n);
        all = { ...all, [section]: { ...(all[section] as object), ...(n[section] as object) } };
      }
      const c = loadConfig({ file: await writeJson('all.json', all) });
      for (const [key, [, value]] of samples) expect(get(c, key), key).to.deep.equal(value);
    });
  });

  describe('describeConfig', () => {
    it('documents every key once, with its default, environment variable and flag', () => {
      const docs = describeConfig();
      const c = loadConfig({ overrides: { run: { id: '' } } });
      expect(docs.map((d) => d.key)).to.deep.equal(Object.keys(DEFAULTS));
      expect(new Set(docs.map((d) => d.env)).size).to.equal(docs.length);
      for (const d of docs) {
        expect(d.doc, d.key).to.be.a('string').and.not.equal('');
        expect(d.doc, d.key).to.match(/[.)]$/);
        expect(d.arg).to.equal(`--${d.key}`);
        expect(d.env).to.match(/^FEDTUNE_[A-Z0-9_]+$/);
        // FEDTUNE_<SECTION>_<KEY IN SNAKE CASE>, except strategy.name which reads FEDTUNE_STRATEGY.
        const snake = d.key
          .replace(/\./g, '_')
          .replace(/([a-z])([A-Z])/g, '$1_$2')
          .toUpperCase();
        expect(d.env).to.equal(d.key === 'strategy.name' ? 'FEDTUNE_STRATEGY' : `FEDTUNE_${snake}`);
        if (d.key !== 'run.id' && d.key !== 'lora.aggregation') expect(d.default, d.key).to.deep.equal(get(c, d.key));
      }
      expect(docs.find((d) => d.key === 'run.id')!.default).to.equal('');
      expect(docs.find((d) => d.key === 'lora.aggregation')!.default).to.equal('auto');
    });
  });
});
