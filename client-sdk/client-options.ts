// What a site configures and what it can observe of a FederationClient (client.ts): the SDK's public contract,
// kept apart from the loop that implements it.
import type * as grpc from '@grpc/grpc-js';
import type { SecAggLedger } from '../proto/secagg';
import type { BackoffOptions } from './backoff';
import type { ClientIdentity } from './identity';
import type { SecAggStage } from './secagg-flow';
import type { Trainer, TrainStep } from './trainer';
import type { EvaluationDone } from './evaluate-task';
import type { ControlVariateStore } from './scaffold-store';
import type { KeepaliveOptions } from './keepalive';

/** What the client logs through; a pino logger fits. */
export interface ClientLogger {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

export interface FederationClientOptions {
  /** host:port of the coordinator. */
  readonly address: string;
  /** Stable site name; the coordinator derives the client id from it, so a reconnect keeps the identity. */
  readonly name: string;
  readonly trainer: Trainer;
  /**
   * The site's Ed25519 identity (see loadOrCreateIdentity). Without one the client makes a throwaway key,
   * which only a coordinator in auth.mode "tofu" admits (simulations and tests).
   */
  readonly identity?: ClientIdentity;
  /** A single-use enrolment token from the operator (`fedtune enroll token <name>`), needed on the first join only. */
  readonly joinToken?: string;
  /** Pin the coordinator's key id (from its operator): a coordinator presenting other keys is refused. */
  readonly coordinatorKeyId?: string;
  /** Fault injection for simulations and tests: runs before each SecAgg stage; throwing abandons the task. */
  readonly beforeSecAggStage?: (stage: SecAggStage, task: { taskId: string; round: number }) => void | Promise<void>;
  /**
   * The operator's Ed25519 public key that certifies every peer's identity key under SecAgg (the coordinator
   * relays the certificates in the roster). Without it (or secaggAllowList) the coordinator remains the key
   * authority: a coordinator that lies about peers' keys can make this site seal its shares to itself.
   */
  readonly rosterKey?: Uint8Array;
  /** Alternative to rosterKey: peers' identity keys by client id, from a file the site holds. */
  readonly secaggAllowList?: Readonly<Record<string, Uint8Array>>;
  /** The site's record across SecAgg sessions (proto/secagg/ledger.ts); default in memory for this client's life. fileLedger(path) survives restarts. */
  readonly secaggLedger?: SecAggLedger;
  /**
   * Where the site keeps its SCAFFOLD control variate c_i per run (client-sdk/scaffold-store.ts); default in memory
   * for this client's life. fileControlVariates(dir) survives restarts (a site that loses it starts again from 0).
   */
  readonly controlVariates?: ControlVariateStore;
  /**
   * Differential privacy on the site's own terms: take part only in SecAgg tasks whose sites add DP noise with a
   * noise multiplier of at least this, before masking. A plain task (where only the coordinator could add noise) or
   * a SecAgg task with less noise is refused before training. Default: any task.
   */
  readonly minNoiseMultiplier?: number;
  /** Tests only: sees each encoded SecAgg vector before it is masked (it never leaves the site). */
  readonly observeSecAggInput?: (task: { taskId: string; round: number; attempt: number }, x: Uint32Array) => void;
  /** e.g. pino(); default: silent. */
  readonly logger?: ClientLogger;
  /** Reconnection delays (exponential with full jitter). */
  readonly backoff?: BackoffOptions;
  /**
   * How a half-open connection is found (keepalive.ts): a ping every `timeMs` while a call is open, the connection
   * dropped when its ack is not read within `timeoutMs`. Default 10 s and 25 s (found within 35 s); each 1 s at least.
   */
  readonly keepalive?: Partial<KeepaliveOptions>;
  /**
   * Deadline of each ReportMetrics / ReportEvaluation call (ms; report-retry.ts): a call past it is sent again while its
   * task is current (the coordinator counts an identical repeat once). Default 20 s; 1 s to 10 min.
   */
  readonly reportDeadlineMs?: number;
  /** Extra gRPC channel options (message limits…); they override `keepalive`. */
  readonly channelOptions?: grpc.ChannelOptions;
  /** Default insecure; see tlsCredentials() (client-sdk/tls.ts). */
  readonly credentials?: grpc.ChannelCredentials;
  readonly labels?: Record<string, string>;
  readonly chunkBytes?: number;
  /**
   * Range calls per download of a version that lists piece hashes, each on its own connection and worker thread
   * (download-ranges.ts); 1: one stream, as before. Default: one per two cores, at most 8. Needs the default
   * insecure credentials or tlsCredentials() (a worker thread must make its own); other credentials download with one.
   */
  readonly downloadStreams?: number;
  /** Refuse to train when the coordinator's base model differs (sha256 of model.safetensors). */
  readonly baseModelSha256?: string;
  /** Alternative to `logger`: one function for every log line. */
  readonly log?: (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Local training progress, step by step (client-sdk/site/progress.ts prints it: a bar on a terminal, else pino lines). */
  readonly onTrainStep?: (s: TrainStep & { readonly round: number }) => void;
}

export interface RunSummary {
  readonly clientId: string;
  readonly tasksCompleted: number;
  /** The coordinator's last version, or -1 when the client was stopped before the run ended. */
  readonly finalVersion: number;
  readonly reason: string;
}

export interface TaskInfo {
  readonly taskId: string;
  readonly round: number;
  readonly attempt: number;
  readonly baseVersion: number;
}

export interface TaskDone {
  readonly taskId: string;
  readonly round: number;
  readonly numExamples: number;
  readonly metrics: Record<string, number>;
}

export interface ClientEvents {
  joined: [{ clientId: string; runId: string }];
  task: [TaskInfo];
  taskDone: [TaskDone];
  /** A task that did not complete: cancelled by the coordinator, refused, or the trainer failed. */
  taskFailed: [{ taskId: string; round: number; cancelled: boolean; error: string }];
  reconnecting: [{ attempt: number; delayMs: number; error: string }];
  /** A federated evaluation this site reported (numExamples 0: it declined). */
  evaluated: [EvaluationDone];
  finished: [RunSummary];
}
