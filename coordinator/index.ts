// fedtune/coordinator: run a federation's coordinator, or build on its parts.
export { Coordinator, loraSettings, type CoordinatorOptions } from './coordinator';
export { loadConfig, describeConfig, configForManifest, ConfigError, type LoadConfigOptions } from './config';
export type { CoordinatorConfig, LoraSettings, TrainingSettings } from './config-types';
export { RoundEngine, type Evaluator, type RoundCommitted, type Task } from './rounds';
export { ClientRegistry, clientIdFor } from './registry';
export { FedAvg } from './strategy/fedavg';
export type { Strategy, ClientUpdate, AggregationResult } from './strategy/strategy';
export { FsCheckpointStore, CheckpointIntegrityError, versionDirName } from './checkpoints/fs-store';
export type { Checkpoint, CheckpointStore, Manifest, Participant, VersionInput } from './checkpoints/types';
export { deriveSeed, selectClients } from './selection';
export { PROTOCOL_VERSION } from '../proto/load';
export type { NamedTensor, TensorList } from '../proto/tensors';
