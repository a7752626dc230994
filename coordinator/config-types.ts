// The coordinator's configuration as the rest of the code sees it. config.ts builds it with convict from
// defaults, a JSON file, environment variables (FEDTUNE_*) and flags, and validates every key.
import type { DashboardSettings, MetricsSettings } from './ops/config-schema';

export interface LoraSettings {
  /** Rank r. */
  readonly r: number;
  /** lora_alpha; scaling is alpha / r (PEFT semantics). */
  readonly alpha: number;
  readonly dropout: number;
  /** GPT-2 module names, e.g. ["c_attn", "c_proj", "c_fc"]. */
  readonly targetModules: readonly string[];
}

export interface TrainingSettings {
  readonly localSteps: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly weightDecay: number;
  readonly maxSeqLen: number;
}

export interface TlsSettings {
  /** PEM server certificate chain; '' serves plaintext gRPC. */
  readonly certFile: string;
  /** PEM private key of certFile. Only the path is ever recorded or logged. */
  readonly keyFile: string;
  /** PEM CA bundle; when set, clients must present a certificate it signed (mutual TLS). */
  readonly clientCaFile: string;
}

export interface CoordinatorConfig {
  readonly server: {
    readonly host: string;
    /** 0 picks a free port (tests). */
    readonly port: number;
  };
  readonly run: {
    /** Run directory holding versions/ and the latest pointer. */
    readonly dir: string;
    /** Run identifier recorded in every manifest; defaults to the run directory's base name. */
    readonly id: string;
    /** Master seed: selection, LoRA init and per-client training seeds derive from it. */
    readonly seed: number;
  };
  readonly rounds: {
    /** Rounds to run; the run finishes when this many versions after version 0 are committed. */
    readonly total: number;
    /** Wait until this many clients are connected before selecting. */
    readonly minClients: number;
    /** Clients per round: an integer count (>= 1) or a fraction in (0, 1) of connected clients. */
    readonly clientsPerRound: number;
    /** A round commits only with at least this many accepted updates. */
    readonly minUpdates: number;
    /** Time a selected client has to download, train and upload. */
    readonly deadlineMs: number;
    /** Failed attempts of one round before the run stops with an error. */
    readonly maxAttempts: number;
  };
  readonly strategy: {
    readonly name: 'fedavg';
  };
  readonly model: {
    /** Directory of the base model (config.json, model.safetensors, tokenizer files). */
    readonly dir: string;
    /** Recorded as base_model_name_or_path in adapter_config.json. */
    readonly name: string;
  };
  readonly lora: LoraSettings;
  readonly training: TrainingSettings;
  readonly transport: {
    readonly chunkBytes: number;
    /** Largest upload accepted, in bytes. */
    readonly maxUploadBytes: number;
    /** An upload silent for this long is refused and its task freed (ms). */
    readonly uploadIdleTimeoutMs: number;
  };
  /** Admission control at the door: beyond these, RESOURCE_EXHAUSTED with a retry hint instead of dropped connections. */
  readonly admission: {
    readonly maxPendingChallenges: number;
    readonly maxChallengesPerHost: number;
    readonly maxSessions: number;
    readonly maxUploadsInFlight: number;
    readonly retryAfterMs: number;
  };
  readonly secagg: {
    readonly enabled: boolean;
    readonly threshold: number;
    readonly fullGraphMax: number;
    readonly clipNorm: number;
    readonly weightCap: number;
    readonly maxClients: number;
    readonly stageTimeoutMs: number;
    readonly rosterFile: string;
  };
  readonly auth: {
    readonly mode: 'enrolled' | 'tofu';
    /** "name=<base64 Ed25519 public key>" entries. */
    readonly allowList: readonly string[];
    readonly challengeTtlMs: number;
  };
  readonly tls: TlsSettings;
  readonly security: {
    /** Coordinator key file (keys.ts); '' means <run.dir>/keys/coordinator.json. Never inside versions/. */
    readonly keyFile: string;
  };
  readonly metrics: MetricsSettings;
  readonly dashboard: DashboardSettings;
  readonly log: {
    readonly level: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
    readonly format: 'auto' | 'json' | 'pretty';
    readonly progressMs: number;
  };
}
