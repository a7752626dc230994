// The coordinator's configuration schema (convict): every key with its doc, format, default, environment
// variable and flag. The configuration's TypeScript type (config-types.ts) is derived from this object, so the
// two cannot drift apart; config.ts registers the named formats and loads it. The sections that are a concept of
// their own live beside that concept (lora-, training-, transport-, admission-, secagg-config-schema.ts here;
// privacy/, auth/, evaluation/, checkpoints/, ops/ config-schema.ts) and are spread in here in the order
// `fedtune config` and the example configuration list them; this file keeps the run's own sections.
import * as path from 'node:path';
import { STRATEGY_NAMES } from './strategy/names';
import { SERVER_SCHEDULES } from './strategy/server-schedule';
import { opsSchema } from './ops/config-schema';
import { evalStopSchema } from './evaluation/config-schema';
import { privacySchema } from './privacy/config-schema';
import { checkpointsSchema } from './checkpoints/config-schema';
import { authSchema } from './auth/config-schema';
import { loraSchema } from './lora-config-schema';
import { trainingSchema } from './training-config-schema';
import { transportSchema } from './transport-config-schema';
import { admissionSchema } from './admission-config-schema';
import { secaggSchema } from './secagg-config-schema';

export const schema = {
  server: {
    host: { doc: 'Address the gRPC server binds to.', format: String, default: '127.0.0.1', env: 'FEDTUNE_SERVER_HOST', arg: 'server.host' },
    port: { doc: 'gRPC port (0: any free port).', format: 'port-or-zero', default: 50051, env: 'FEDTUNE_SERVER_PORT', arg: 'server.port' },
    finishNoticeMs: {
      doc: "After the run ends, how long `fedtune coordinator` keeps serving so that the final round's sites still reconnecting (e.g. to a coordinator restarted after its last commit) learn it is over; it exits sooner once all of them were told (0: exit at once).",
      format: 'non-negative-int',
      default: 15_000,
      env: 'FEDTUNE_SERVER_FINISH_NOTICE_MS',
      arg: 'server.finishNoticeMs',
    },
    floraCloseThreads: {
      doc: "Worker threads a 'flora' round's close is shared among, module by module (0: the host's cores but one, at most 8; never more than the adapter's modules). The version is the same bit for bit whatever the count; a host's setting, not the run's, so no manifest records it.",
      format: 'non-negative-int',
      default: 0,
      env: 'FEDTUNE_SERVER_FLORA_CLOSE_THREADS',
      arg: 'server.floraCloseThreads',
    },
  },
  run: {
    dir: { doc: 'Run directory: versions/ and the latest pointer.', format: String, default: 'runs/default', env: 'FEDTUNE_RUN_DIR', arg: 'run.dir' },
    id: { doc: "Run identifier in every manifest ('' = the run directory's name).", format: String, default: '', env: 'FEDTUNE_RUN_ID', arg: 'run.id' },
    seed: {
      doc: 'Master seed: selection, LoRA init and client training seeds derive from it.',
      format: 'non-negative-int',
      default: 42,
      env: 'FEDTUNE_RUN_SEED',
      arg: 'run.seed',
    },
  },
  rounds: {
    total: {
      doc: "Rounds to run (versions after v0). The default recipe's server rate decays by cosine to 0 here, so set it to the run's length.",
      format: 'positive-int',
      default: 600,
      env: 'FEDTUNE_ROUNDS_TOTAL',
      arg: 'rounds.total',
    },
    minClients: {
      doc: 'Connected clients needed before a round starts.',
      format: 'positive-int',
      default: 2,
      env: 'FEDTUNE_ROUNDS_MIN_CLIENTS',
      arg: 'rounds.minClients',
    },
    clientsPerRound: {
      doc: 'Clients per round: a count ≥ 1, or a fraction in (0, 1) of those connected.',
      format: 'count-or-fraction',
      default: 100,
      env: 'FEDTUNE_ROUNDS_CLIENTS_PER_ROUND',
      arg: 'rounds.clientsPerRound',
    },
    minUpdates: {
      doc: 'Accepted updates a round needs to commit; fewer fails the attempt.',
      format: 'positive-int',
      default: 2,
      env: 'FEDTUNE_ROUNDS_MIN_UPDATES',
      arg: 'rounds.minUpdates',
    },
    deadlineMs: {
      doc: 'Time a selected client has to download, train and upload (ms).',
      format: 'positive-int',
      default: 120000,
      env: 'FEDTUNE_ROUNDS_DEADLINE_MS',
      arg: 'rounds.deadlineMs',
    },
    maxAttempts: {
      doc: 'Failed attempts of one round before the run stops with an error.',
      format: 'positive-int',
      default: 3,
      env: 'FEDTUNE_ROUNDS_MAX_ATTEMPTS',
      arg: 'rounds.maxAttempts',
    },
    reconnectGraceMs: {
      doc: 'How long a round (each SecAgg stage too), and a federated evaluation, still wait for a selected site whose task stream ended (ms), so that a site that reconnects in time still counts (the SDK reopens its stream while its task runs on, a SecAgg task included); 0: a disconnected site is left out at once. A site that left is never waited for, and the deadline (rounds.deadlineMs, evaluation.deadlineMs) still ends the wait.',
      format: 'non-negative-int',
      default: 10000,
      env: 'FEDTUNE_ROUNDS_RECONNECT_GRACE_MS',
      arg: 'rounds.reconnectGraceMs',
    },
  },
  strategy: {
    name: {
      doc: "Aggregation strategy (coordinator/strategy/index.ts). Default: FedAdam, the default recipe's (docs/recipes/fedsgd-steady.json5); under another strategy the recipe's server-optimiser defaults (serverLearningRate, beta2, tau, biasCorrection, serverSchedule) that no layer sets take their strategy-neutral values (0, 0.99, 0.001, false, 'constant': coordinator/default-recipe.ts).",
      format: STRATEGY_NAMES,
      default: 'fedadam',
      env: 'FEDTUNE_STRATEGY',
      arg: 'strategy.name',
    },
    serverLearningRate: {
      doc: "Server learning rate η of fedavgm, fedadam, fedyogi, fedadagrad, scaffold (0: the strategy default, 1 − momentum for fedavgm, 0.01 for the adaptive ones, 1 for scaffold). Default 0.003, the default recipe's FedAdam rate; 0 under another strategy.name unless set.",
      format: 'non-negative-number',
      default: 0.003,
      env: 'FEDTUNE_STRATEGY_SERVER_LEARNING_RATE',
      arg: 'strategy.serverLearningRate',
    },
    momentum: {
      doc: 'Server momentum β of fedavgm, in [0, 1).',
      format: 'probability',
      default: 0.9,
      env: 'FEDTUNE_STRATEGY_MOMENTUM',
      arg: 'strategy.momentum',
    },
    beta1: {
      doc: 'First-moment decay β1 of fedadam, fedyogi, fedadagrad, in [0, 1).',
      format: 'probability',
      default: 0.9,
      env: 'FEDTUNE_STRATEGY_BETA1',
      arg: 'strategy.beta1',
    },
    beta2: {
      doc: "Second-moment decay β2 of fedadam and fedyogi, in [0, 1). Default 0.999 (the default recipe's, Adam's); 0.99 under another strategy.name unless set.",
      format: 'probability',
      default: 0.999,
      env: 'FEDTUNE_STRATEGY_BETA2',
      arg: 'strategy.beta2',
    },
    tau: {
      doc: "Adaptivity τ of fedadam, fedyogi, fedadagrad (added to √v; v starts at τ² without biasCorrection). Default 1e-8, the default recipe's (the client rate 1 × Adam's eps, with biasCorrection); 0.001 under another strategy.name unless set.",
      format: 'positive-number',
      default: 1e-8,
      env: 'FEDTUNE_STRATEGY_TAU',
      arg: 'strategy.tau',
    },
    population: {
      doc: 'SCAFFOLD: N, the sites in the federation, for the server control variate step c += (|S|/N)·mean(Δc) (0: every site takes part in every round, |S|/N = 1). Not used by other strategies.',
      format: 'non-negative-int',
      default: 0,
      env: 'FEDTUNE_STRATEGY_POPULATION',
      arg: 'strategy.population',
    },
    biasCorrection: {
      doc: "Adam's bias correction for fedadam, fedyogi, fedadagrad: m/(1 − β1^t) and v/(1 − β2^t) in round t, v starting at 0 (Kingma and Ba; PyTorch's Adam with lr η and eps τ). On by default (the default recipe's); off: Reddi et al.'s Algorithm 2, v starting at τ², whose early steps are up to 6.5× larger at β2 0.999 (off under another strategy.name unless set).",
      format: Boolean,
      default: true,
      env: 'FEDTUNE_STRATEGY_BIAS_CORRECTION',
      arg: 'strategy.biasCorrection',
    },
    serverSchedule: {
      doc: "Server learning rate by round for fedavgm, fedadam, fedyogi, fedadagrad: 'constant' (strategy.serverLearningRate) or 'cosine' (from it in round 1 towards 0 by rounds.total; anneals the adaptive optimisers, whose steps do not shrink with the clients' updates). Default 'cosine' (the default recipe's); 'constant' under another strategy.name unless set.",
      format: SERVER_SCHEDULES,
      default: 'cosine',
      env: 'FEDTUNE_STRATEGY_SERVER_SCHEDULE',
      arg: 'strategy.serverSchedule',
    },
    ema: {
      doc: "Polyak/EMA averaging of the global adapter with decay β per round (0: off). Sites keep training from the strategy's iterate; the bias-corrected average ê_t = ê_{t−1} + ((1 − β)/(1 − β^t))·(w_t − ê_{t−1}) is what the held-out evaluator and the sites' federated evaluation score, what the release pointer and `checkpoints export` give (each version's ema/ PEFT directory), and it is checkpointed with the server state so a restart resumes it exactly (coordinator/strategy/ema.ts). Default 0.99 (the default recipe's: a window of ~100 rounds).",
      format: 'probability',
      default: 0.99,
      env: 'FEDTUNE_STRATEGY_EMA',
      arg: 'strategy.ema',
    },
    noiseAware: {
      doc: "fedadam under privacy.enabled: subtract the known variance of DP-FedAvg's noise on the mean update, (z·C/n)² per value for n updates a round, from Adam's second moment before each step, floored at strategy.noiseFloor times it (DP-AdamBC, Tang et al. 2024), so that the steps on the signal are those of the noiseless optimiser in expectation. Its running average of the noise's variance is checkpointed with the server state.",
      format: Boolean,
      default: false,
      env: 'FEDTUNE_STRATEGY_NOISE_AWARE',
      arg: 'strategy.noiseAware',
    },
    noiseFloor: {
      doc: "With strategy.noiseAware: the corrected second moment's floor, as a fraction of the noise's variance on the mean, in (0, 1]; a value whose signal the noise hides then steps as if its signal were √floor times the noise's standard deviation.",
      format: Number,
      default: 0.25,
      env: 'FEDTUNE_STRATEGY_NOISE_FLOOR',
      arg: 'strategy.noiseFloor',
    },
  },
  model: {
    dir: {
      doc: 'Base model directory (config.json, model.safetensors, tokenizer.json).',
      format: String,
      default: path.resolve(__dirname, '..', '..', 'examples', 'base-model'),
      env: 'FEDTUNE_MODEL_DIR',
      arg: 'model.dir',
    },
    name: {
      doc: 'base_model_name_or_path written into adapter_config.json.',
      format: String,
      default: 'fedtune/brown-sotu-gpt2-1.9m',
      env: 'FEDTUNE_MODEL_NAME',
      arg: 'model.name',
    },
  },
  ...loraSchema,
  ...trainingSchema,
  ...transportSchema,
  ...admissionSchema,
  ...secaggSchema,
  ...privacySchema,
  ...authSchema,
  tls: {
    certFile: { doc: "PEM server certificate chain ('' = plaintext gRPC).", format: String, default: '', env: 'FEDTUNE_TLS_CERT_FILE', arg: 'tls.certFile' },
    keyFile: { doc: 'PEM private key of tls.certFile.', format: String, default: '', env: 'FEDTUNE_TLS_KEY_FILE', arg: 'tls.keyFile' },
    clientCaFile: {
      doc: "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS; '' = off).",
      format: String,
      default: '',
      env: 'FEDTUNE_TLS_CLIENT_CA_FILE',
      arg: 'tls.clientCaFile',
    },
  },
  security: {
    keyFile: {
      doc: "Coordinator key file: Ed25519 key that signs manifests, X25519 key for sealed uploads; created at first start ('' = <run.dir>/keys/coordinator.json).",
      format: String,
      default: '',
      env: 'FEDTUNE_SECURITY_KEY_FILE',
      arg: 'security.keyFile',
    },
  },
  ...evalStopSchema,
  ...checkpointsSchema,
  ...opsSchema,
  log: {
    level: {
      doc: 'Log level (pino).',
      format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      default: 'info',
      env: 'FEDTUNE_LOG_LEVEL',
      arg: 'log.level',
    },
    format: {
      doc: "Log format of the fedtune command: 'auto' (pretty on a terminal, JSON lines otherwise), 'json' or 'pretty'.",
      format: ['auto', 'json', 'pretty'],
      default: 'auto',
      env: 'FEDTUNE_LOG_FORMAT',
      arg: 'log.format',
    },
    progressMs: {
      doc: "How often a round waiting for sites logs 'waiting for N more sites' (ms).",
      format: 'positive-int',
      default: 30000,
      env: 'FEDTUNE_LOG_PROGRESS_MS',
      arg: 'log.progressMs',
    },
  },
} as const;
