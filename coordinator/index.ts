// fedtune/coordinator: run a federation's coordinator, or build on its parts.
export { Coordinator, loraSettings, type CoordinatorOptions } from './coordinator';
export { loadConfig, describeConfig, configForManifest, ConfigError, type LoadConfigOptions } from './config';
export type { CoordinatorConfig, LoraSettings, TrainingSettings, TlsSettings } from './config-types';
export { serverCredentials, tlsMode, type TlsMode } from './tls';
export { RoundEngine, type Evaluator, type Task } from './rounds';
export type { RoundEvents, RoundPhase, RoundStarted, ClientSelected, UpdateAccepted, RoundCommitted, RoundFailed, RunFinishedEvent } from './round-events';
export { createHandlers, MAX_NUM_EXAMPLES, MAX_METRICS } from './service';
export { ClientRegistry, clientIdFor, type ClientSession, type TaskSink } from './registry';
export { FedAvg, aggregateUpdates } from './strategy/fedavg';
export { strategyNamed, STRATEGIES, AdmissionError, type Strategy, type Aggregation, type ClientUpdate, type WeightedSum } from './strategy';
export { FsCheckpointStore, CheckpointIntegrityError, versionDirName } from './checkpoints/fs-store';
export type { Checkpoint, CheckpointStore, Manifest, Participant, VersionInput } from './checkpoints/types';
export { manifestSigner, manifestSigningMessage, signManifest, MANIFEST_SIG_DOMAIN, MANIFEST_SIG_FILE, type ManifestSigner, type ManifestSignature } from './checkpoints/signature';
export { verifyRun, VerifyUsageError, type Problem, type ProblemKind, type VerifyOptions, type VerifyResult } from './checkpoints/verify';
export { formatVerifyReport } from './checkpoints/verify-report';
export { deriveSeed, selectClients } from './selection';
export { PROTOCOL_VERSION } from '../proto/load';
export type { NamedTensor, TensorList } from '../proto/tensors';
