// The coordinator's configuration schema (convict): every key with its doc, format, default, environment
// variable and flag. The configuration's TypeScript type (config-types.ts) is derived from this object, so the
// two cannot drift apart; config.ts registers the named formats and loads it.
import * as path from 'node:path';
import { STRATEGY_NAMES } from './strategy/names';
import { opsSchema } from './ops/config-schema';

export const schema = {
  server: {
    host: { doc: 'Address the gRPC server binds to.', format: String, default: '127.0.0.1', env: 'FEDTUNE_SERVER_HOST', arg: 'server.host' },
    port: { doc: 'gRPC port (0: any free port).', format: 'port-or-zero', default: 50051, env: 'FEDTUNE_SERVER_PORT', arg: 'server.port' },
  },
  run: {
    dir: { doc: 'Run directory: versions/ and the latest pointer.', format: String, default: 'runs/default', env: 'FEDTUNE_RUN_DIR', arg: 'run.dir' },
    id: { doc: "Run identifier in every manifest ('' = the run directory's name).", format: String, default: '', env: 'FEDTUNE_RUN_ID', arg: 'run.id' },
    seed: { doc: 'Master seed: selection, LoRA init and client training seeds derive from it.', format: 'non-negative-int', default: 42, env: 'FEDTUNE_RUN_SEED', arg: 'run.seed' },
  },
  rounds: {
    total: { doc: 'Rounds to run (versions after v0).', format: 'positive-int', default: 5, env: 'FEDTUNE_ROUNDS_TOTAL', arg: 'rounds.total' },
    minClients: { doc: 'Connected clients needed before a round starts.', format: 'positive-int', default: 2, env: 'FEDTUNE_ROUNDS_MIN_CLIENTS', arg: 'rounds.minClients' },
    clientsPerRound: { doc: 'Clients per round: a count ≥ 1, or a fraction in (0, 1) of those connected.', format: 'count-or-fraction', default: 100, env: 'FEDTUNE_ROUNDS_CLIENTS_PER_ROUND', arg: 'rounds.clientsPerRound' },
    minUpdates: { doc: 'Accepted updates a round needs to commit; fewer fails the attempt.', format: 'positive-int', default: 2, env: 'FEDTUNE_ROUNDS_MIN_UPDATES', arg: 'rounds.minUpdates' },
    deadlineMs: { doc: 'Time a selected client has to download, train and upload (ms).', format: 'positive-int', default: 120000, env: 'FEDTUNE_ROUNDS_DEADLINE_MS', arg: 'rounds.deadlineMs' },
    maxAttempts: { doc: 'Failed attempts of one round before the run stops with an error.', format: 'positive-int', default: 3, env: 'FEDTUNE_ROUNDS_MAX_ATTEMPTS', arg: 'rounds.maxAttempts' },
  },
  strategy: {
    name: { doc: 'Aggregation strategy (coordinator/strategy/index.ts).', format: STRATEGY_NAMES, default: 'fedavg', env: 'FEDTUNE_STRATEGY', arg: 'strategy.name' },
  },
  model: {
    dir: { doc: 'Base model directory (config.json, model.safetensors, tokenizer.json).', format: String, default: path.resolve(__dirname, '..', '..', 'examples', 'base-model'), env: 'FEDTUNE_MODEL_DIR', arg: 'model.dir' },
    name: { doc: 'base_model_name_or_path written into adapter_config.json.', format: String, default: 'fedtune/brown-sotu-gpt2-1.9m', env: 'FEDTUNE_MODEL_NAME', arg: 'model.name' },
  },
  lora: {
    r: { doc: 'LoRA rank.', format: 'positive-int', default: 8, env: 'FEDTUNE_LORA_R', arg: 'lora.r' },
    alpha: { doc: 'LoRA alpha (scaling alpha / r).', format: 'positive-number', default: 16, env: 'FEDTUNE_LORA_ALPHA', arg: 'lora.alpha' },
    dropout: { doc: 'Dropout on the LoRA branch input during training.', format: 'probability', default: 0.05, env: 'FEDTUNE_LORA_DROPOUT', arg: 'lora.dropout' },
    targetModules: { doc: 'Modules to adapt: GPT-2 c_attn, c_proj (attention and MLP), c_fc; Llama family q_proj … down_proj.', format: 'lora-targets', default: ['c_attn', 'c_proj', 'c_fc'] as readonly string[], env: 'FEDTUNE_LORA_TARGET_MODULES', arg: 'lora.targetModules' },
  },
  training: {
    localSteps: { doc: 'Optimiser steps per client per round.', format: 'positive-int', default: 8, env: 'FEDTUNE_TRAINING_LOCAL_STEPS', arg: 'training.localSteps' },
    batchSize: { doc: 'Examples per local step.', format: 'positive-int', default: 8, env: 'FEDTUNE_TRAINING_BATCH_SIZE', arg: 'training.batchSize' },
    learningRate: { doc: 'Adam learning rate on the clients.', format: 'positive-number', default: 0.002, env: 'FEDTUNE_TRAINING_LEARNING_RATE', arg: 'training.learningRate' },
    weightDecay: { doc: 'Decoupled weight decay on LoRA tensors.', format: 'non-negative-number', default: 0, env: 'FEDTUNE_TRAINING_WEIGHT_DECAY', arg: 'training.weightDecay' },
    maxSeqLen: { doc: 'Tokens per training sequence (prompt + completion).', format: 'positive-int', default: 96, env: 'FEDTUNE_TRAINING_MAX_SEQ_LEN', arg: 'training.maxSeqLen' },
  },
  transport: {
    chunkBytes: { doc: 'Bytes per tensor-stream chunk.', format: 'positive-int', default: 1 << 20, env: 'FEDTUNE_TRANSPORT_CHUNK_BYTES', arg: 'transport.chunkBytes' },
    maxUploadBytes: { doc: 'Largest update accepted (bytes).', format: 'positive-int', default: 256 * 1024 * 1024, env: 'FEDTUNE_TRANSPORT_MAX_UPLOAD_BYTES', arg: 'transport.maxUploadBytes' },
    uploadIdleTimeoutMs: { doc: 'An upload with no frame for this long is refused and its task freed for a retry (ms).', format: 'positive-int', default: 30000, env: 'FEDTUNE_TRANSPORT_UPLOAD_IDLE_TIMEOUT_MS', arg: 'transport.uploadIdleTimeoutMs' },
  },
  admission: {
    maxPendingChallenges: { doc: 'Hello challenges outstanding at once; beyond, Hello is answered RESOURCE_EXHAUSTED with a retry hint.', format: 'positive-int', default: 50000, env: 'FEDTUNE_ADMISSION_MAX_PENDING_CHALLENGES', arg: 'admission.maxPendingChallenges' },
    maxChallengesPerHost: { doc: 'Hello challenges outstanding for one peer address; beyond, its Hellos are answered RESOURCE_EXHAUSTED (nobody else\'s challenge is evicted).', format: 'positive-int', default: 10000, env: 'FEDTUNE_ADMISSION_MAX_CHALLENGES_PER_HOST', arg: 'admission.maxChallengesPerHost' },
    maxSessions: { doc: 'Joined sites at once; a new site beyond it is answered RESOURCE_EXHAUSTED with a retry hint (a rejoin always passes).', format: 'positive-int', default: 100000, env: 'FEDTUNE_ADMISSION_MAX_SESSIONS', arg: 'admission.maxSessions' },
    maxUploadsInFlight: { doc: 'Uploads being received at once; beyond, an upload is answered RESOURCE_EXHAUSTED with a retry hint.', format: 'positive-int', default: 4096, env: 'FEDTUNE_ADMISSION_MAX_UPLOADS_IN_FLIGHT', arg: 'admission.maxUploadsInFlight' },
    retryAfterMs: { doc: 'The retry hint (trailing metadata retry-after-ms) sent with RESOURCE_EXHAUSTED; the SDK waits between it and twice it.', format: 'positive-int', default: 1000, env: 'FEDTUNE_ADMISSION_RETRY_AFTER_MS', arg: 'admission.retryAfterMs' },
  },
  secagg: {
    enabled: { doc: 'Secure aggregation (SecAgg/SecAgg+): the coordinator learns only the weighted sum of the updates.', format: Boolean, default: false, env: 'FEDTUNE_SECAGG_ENABLED', arg: 'secagg.enabled' },
    threshold: { doc: 'Shamir threshold t per secret (0: a strict majority of its holders, the minimum that is safe).', format: 'non-negative-int', default: 0, env: 'FEDTUNE_SECAGG_THRESHOLD', arg: 'secagg.threshold' },
    fullGraphMax: { doc: 'Use the full graph up to this many clients; above it a random k-regular graph with k = 2⌈log2 N⌉ (SecAgg+).', format: 'positive-int', default: 32, env: 'FEDTUNE_SECAGG_FULL_GRAPH_MAX', arg: 'secagg.fullGraphMax' },
    clipNorm: { doc: 'L2 norm each client clips its update to before fixed-point encoding.', format: 'positive-number', default: 10, env: 'FEDTUNE_SECAGG_CLIP_NORM', arg: 'secagg.clipNorm' },
    weightCap: { doc: 'A client weighs min(examples, weightCap) / weightCap; the weight is applied before masking.', format: 'positive-int', default: 10000, env: 'FEDTUNE_SECAGG_WEIGHT_CAP', arg: 'secagg.weightCap' },
    maxClients: { doc: 'Most clients one sum may hold; sets the headroom bits (32 − ⌈log2 maxClients⌉ bits per value).', format: 'positive-int', default: 1024, env: 'FEDTUNE_SECAGG_MAX_CLIENTS', arg: 'secagg.maxClients' },
    stageTimeoutMs: { doc: 'Time each SecAgg stage after training waits for the live clients (ms).', format: 'positive-int', default: 30000, env: 'FEDTUNE_SECAGG_STAGE_TIMEOUT_MS', arg: 'secagg.stageTimeoutMs' },
    rosterFile: { doc: "The operator's signed roster (`fedtune roster sign`), re-read every attempt; its certificates go to the sites, which check them against the operator key they pin ('' = none: the coordinator is the key authority).", format: String, default: '', env: 'FEDTUNE_SECAGG_ROSTER_FILE', arg: 'secagg.rosterFile' },
  },
  auth: {
    mode: { doc: "Who may join: 'enrolled' (allow-list or a redeemed join token) or 'tofu' (first key seen per site name is bound; simulations and tests only).", format: ['enrolled', 'tofu'], default: 'enrolled', env: 'FEDTUNE_AUTH_MODE', arg: 'auth.mode' },
    allowList: { doc: 'Enrolled sites as name=<base64 Ed25519 public key> (comma-separated in the environment).', format: 'allow-list', default: [] as readonly string[], env: 'FEDTUNE_AUTH_ALLOW_LIST', arg: 'auth.allowList' },
    challengeTtlMs: { doc: 'How long a Hello challenge stays valid for Join (ms).', format: 'positive-int', default: 60000, env: 'FEDTUNE_AUTH_CHALLENGE_TTL_MS', arg: 'auth.challengeTtlMs' },
  },
  tls: {
    certFile: { doc: "PEM server certificate chain ('' = plaintext gRPC).", format: String, default: '', env: 'FEDTUNE_TLS_CERT_FILE', arg: 'tls.certFile' },
    keyFile: { doc: 'PEM private key of tls.certFile.', format: String, default: '', env: 'FEDTUNE_TLS_KEY_FILE', arg: 'tls.keyFile' },
    clientCaFile: { doc: "PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS; '' = off).", format: String, default: '', env: 'FEDTUNE_TLS_CLIENT_CA_FILE', arg: 'tls.clientCaFile' },
  },
  security: {
    keyFile: { doc: "Coordinator key file: Ed25519 key that signs manifests, X25519 key for sealed uploads; created at first start ('' = <run.dir>/keys/coordinator.json).", format: String, default: '', env: 'FEDTUNE_SECURITY_KEY_FILE', arg: 'security.keyFile' },
  },
  ...opsSchema,
  log: {
    level: { doc: 'Log level (pino).', format: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], default: 'info', env: 'FEDTUNE_LOG_LEVEL', arg: 'log.level' },
    format: { doc: "Log format of the fedtune command: 'auto' (pretty on a terminal, JSON lines otherwise), 'json' or 'pretty'.", format: ['auto', 'json', 'pretty'], default: 'auto', env: 'FEDTUNE_LOG_FORMAT', arg: 'log.format' },
    progressMs: { doc: "How often a round waiting for sites logs 'waiting for N more sites' (ms).", format: 'positive-int', default: 30000, env: 'FEDTUNE_LOG_PROGRESS_MS', arg: 'log.progressMs' },
  },
} as const;
