// fedtune/coordinator: run a federation's coordinator, configure it, keep and verify its checkpoints.
// The public API: what an operator's program needs. The round engine, the RPC handlers, the registry and
// client selection are internal (reach them through a Coordinator, never by import); test/public-api.test.ts
// compiles a program against this entry point through the package's exports.
export { Coordinator, loraSettings, type CoordinatorOptions } from './coordinator';
export { loadConfig, describeConfig, ConfigError, type LoadConfigOptions, type ConfigKeyDoc } from './config';
export type { CoordinatorConfig, LoraSettings, TrainingSettings, TlsSettings } from './config-types';
// What a Coordinator emits (it re-emits its round engine's events) and what it calls back.
export type { Evaluator } from './rounds';
export type { RoundEvents, RoundPhase, RoundStarted, ClientSelected, UpdateAccepted, RoundCommitted, RoundFailed, RunFinishedEvent } from './round-events';
// Aggregation: pass a Strategy in CoordinatorOptions, or name one in strategy.name.
export { FedAvg } from './strategy/fedavg';
export { FedAvgM } from './strategy/fedavgm';
export { FedAdam, FedYogi, FedAdagrad } from './strategy/fedopt';
export { Scaffold } from './strategy/scaffold';
export {
  strategyNamed,
  STRATEGIES,
  AdmissionError,
  type Strategy,
  type Aggregation,
  type ClientUpdate,
  type WeightedSum,
  type ServerState,
  type ServerOptimizerSettings,
} from './strategy';
// Checkpoints: the store interface (another backend implements it) and the file-system store.
export { FsCheckpointStore, CheckpointIntegrityError, type FsStoreOptions } from './checkpoints/fs-store';
export type { Checkpoint, CheckpointStore, Manifest, Participant, VersionInput } from './checkpoints/types';
export { manifestSigningMessage, MANIFEST_SIG_DOMAIN, MANIFEST_SIG_FILE, type ManifestSigner, type ManifestSignature } from './checkpoints/signature';
// Offline verification of a run (what `fedtune verify` does).
export { verifyRun, VerifyUsageError, type Problem, type ProblemKind, type VerifyOptions, type VerifyResult } from './checkpoints/verify';
export { formatVerifyReport } from './checkpoints/verify-report';
export { PROTOCOL_VERSION } from '../proto/constants';
export type { NamedTensor, TensorList } from '../proto/tensors';
