// The coordinator as one object: configuration in, a gRPC server out. It wires the registry (who is
// connected), the round engine (rounds.ts), the checkpoint store and the aggregation strategy.
import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { loadFedtuneProto } from '../proto/load';
import type { NamedTensor } from '../proto/tensors';
import { fanInFanOut, type ModelConfig } from '../proto/model/model-config';
import { baseModelHash, readModelConfig } from '../proto/model/model-dir';
import { initLoraAdapter, peftAdapterConfig, type LoraConfig } from '../proto/model/lora-layout';
import { FsCheckpointStore } from './checkpoints/fs-store';
import { manifestSigner } from './checkpoints/signature';
import type { Checkpoint, CheckpointStore } from './checkpoints/types';
import type { CoordinatorConfig } from './config-types';
import { ClientRegistry } from './registry';
import { ROUND_EVENTS, RoundEngine, type Evaluator, type RoundEvents } from './rounds';
import { deriveSeed } from './selection';
import { createHandlers } from './service';
import { preEncodedDownloads } from './download-image';
import { guardService } from './door';
import { strategyNamed } from './strategy';
import { withEma } from './strategy/ema';
import { FloraStacking } from './flora-stack';
import { withPrivacy } from './privacy/wrap';
import type { Strategy } from './strategy/strategy';
import { serverCredentials, tlsMode } from './tls';
import { loadOrCreateCoordinatorKeys, type CoordinatorKeys } from './keys';
import { RunLock } from './run-lock';
import { Challenges } from './auth/challenges';
import { Enrolment, parseAllowList } from './auth/enrolment';
import { Operations } from './ops/operations';

export interface CoordinatorOptions {
  readonly config: CoordinatorConfig;
  readonly store?: CheckpointStore;
  readonly strategy?: Strategy;
  /** Version 0 of a new run; default: PEFT-initialised LoRA for the model in config.model.dir. */
  readonly initialAdapter?: () => NamedTensor[] | Promise<NamedTensor[]>;
  readonly adapterConfig?: Record<string, unknown>;
  /** Base model identity; default: sha256 of config.model.dir/model.safetensors. */
  readonly baseModel?: { readonly name: string; readonly sha256: string };
  /** Server-side held-out evaluation of every committed version (recorded as heldout.* metrics). */
  readonly evaluator?: Evaluator;
  /** Seeds decided outside the coordinator, e.g. { dataSplit: 7 }, recorded in manifests. */
  readonly extraSeeds?: Record<string, number>;
  readonly logger?: pino.Logger;
  /** Server credentials; wins over the tls.* configuration keys (default: from them, else insecure). */
  readonly credentials?: grpc.ServerCredentials;
}

export function loraSettings(cfg: CoordinatorConfig): LoraConfig {
  return { r: cfg.lora.r, alpha: cfg.lora.alpha, dropout: cfg.lora.dropout, targetModules: [...cfg.lora.targetModules] };
}

/**
 * One federation run: `start()` binds the gRPC server and schedules rounds; `done` settles when the run ends;
 * the round engine's events (roundStarted, clientSelected, updateAccepted, metricsReported, roundCommitted,
 * roundFailed, runFinished, phase) are re-emitted here, so listeners can attach before start().
 */
export class Coordinator extends EventEmitter<RoundEvents> {
  readonly registry = new ClientRegistry();
  readonly store: CheckpointStore;
  readonly logger: pino.Logger;
  /** Resolves with the final checkpoint when all rounds are committed (or the latest one after stop()); rejects if a round fails for good. */
  readonly done: Promise<Checkpoint>;
  private settle!: { resolve: (c: Checkpoint) => void; reject: (e: Error) => void };
  private engineRef: RoundEngine | undefined;
  private server: grpc.Server | undefined;
  private runPromise: Promise<Checkpoint> | undefined;
  private keysRef: CoordinatorKeys | undefined;
  private lock: RunLock | undefined;
  /** Health, reflection, metrics and dashboard (coordinator/ops/); exists once start() was called. */
  ops: Operations | undefined;

  constructor(private readonly opts: CoordinatorOptions) {
    super();
    this.logger = opts.logger ?? pino({ level: opts.config.log.level });
    this.store =
      opts.store ??
      new FsCheckpointStore(opts.config.run.dir, {
        warn: (m) => this.logger.warn(m),
        runId: opts.config.run.id,
        pieceBytes: opts.config.transport.pieceBytes,
        // Version retention (checkpoints.*): older versions' weights pruned after each durable commit.
        retention: opts.config.checkpoints,
      });
    this.done = new Promise<Checkpoint>((resolve, reject) => (this.settle = { resolve, reject }));
    this.done.catch(() => undefined); // a failed run is reported through `done` and the log, never as an unhandled rejection
  }

  /** The round engine (exists once start() was called). */
  get engine(): RoundEngine {
    if (!this.engineRef) throw new Error('coordinator not started');
    return this.engineRef;
  }

  /** The coordinator's keys (loaded by start()): `sign` signs manifests, `box` opens sealed uploads. */
  get keys(): CoordinatorKeys {
    if (!this.keysRef) throw new Error('coordinator not started');
    return this.keysRef;
  }

  /** Where the key file lives: security.keyFile, or <run.dir>/keys/coordinator.json. */
  static keyFile(cfg: CoordinatorConfig): string {
    return cfg.security.keyFile || path.join(cfg.run.dir, 'keys', 'coordinator.json');
  }

  /**
   * Binds the server and starts scheduling rounds. Resolves with the bound port. Takes the run directory's
   * lock first (run-lock.ts: a second coordinator on the same run is refused), released by stop().
   */
  async start(): Promise<{ address: string; port: number }> {
    if (this.engineRef || this.lock) throw new Error('coordinator already started');
    const cfg = this.opts.config;
    // First, so that an unusable certificate or key fails start() before anything else is set up.
    const credentials = this.opts.credentials ?? serverCredentials(cfg.tls) ?? grpc.ServerCredentials.createInsecure();
    await fs.mkdir(cfg.run.dir, { recursive: true });
    this.lock = await RunLock.acquire(cfg.run.dir, 'coordinator', (m) => this.logger.warn(m));
    try {
      return await this.startLocked(credentials);
    } catch (e) {
      await this.lock.release();
      this.lock = undefined;
      throw e;
    }
  }

  private async startLocked(credentials: grpc.ServerCredentials): Promise<{ address: string; port: number }> {
    const cfg = this.opts.config;
    const log = (level: 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>): void => this.logger[level](fields ?? {}, msg);
    await this.loadKeys();
    const modelDir = cfg.model.dir;
    // The base model's family (GPT-2 or Llama) decides the adapter's key names and PEFT's fan_in_fan_out.
    const baseModel = this.opts.baseModel ?? { name: cfg.model.name, sha256: await baseModelHash(modelDir) };
    const lora = loraSettings(cfg);
    const modelConfig = this.opts.initialAdapter && this.opts.adapterConfig ? undefined : await readModelConfig(modelDir);
    const initialAdapter = this.opts.initialAdapter ?? (async () => initLoraAdapter(modelConfig as ModelConfig, lora, deriveSeed(cfg.run.seed, 'lora-init')));
    const keys = this.keys;
    const boxKey = { keyId: keys.keyId, boxPublicKey: keys.box.publicKey, boxSecretKey: keys.box.secretKey };
    const enrolment = new Enrolment(cfg.run.dir, cfg.auth.mode, parseAllowList(cfg.auth.allowList), (m) => this.logger.warn(m));
    this.registry.setAdmission(
      (s) => enrolment.isActive(s.name, s.publicKey),
      () => enrolment.generation(),
    );
    const engine = new RoundEngine({
      boxKey,
      config: cfg,
      store: this.store,
      // The configured strategy.name picks it; a Strategy object passed in code wins (tests, custom strategies).
      // privacy.enabled wraps whichever it is in DP-FedAvg (clipping, uniform weights, noise once per round).
      // strategy.ema > 0 wraps the result in the average that is scored, released and exported (strategy/ema.ts).
      // lora.aggregation 'flora' stacks the sites' factors instead of any Strategy but a FloraStacking passed in code
      // (flora-stack.ts; config load refused DP, the EMA and another strategy.name).
      strategy:
        cfg.lora.aggregation === 'flora'
          ? this.opts.strategy instanceof FloraStacking
            ? this.opts.strategy
            : new FloraStacking(undefined, cfg.server.floraCloseThreads || undefined)
          : withEma(cfg, withPrivacy(cfg, this.opts.strategy ?? strategyNamed(cfg.strategy.name, { ...cfg.strategy, roundsTotal: cfg.rounds.total }))),
      registry: this.registry,
      initialAdapter,
      adapterConfig: this.opts.adapterConfig ?? { ...peftAdapterConfig(lora, cfg.model.name, fanInFanOut(modelConfig as ModelConfig)) },
      baseModel,
      evaluator: this.opts.evaluator,
      extraSeeds: this.opts.extraSeeds,
      enrolled: (name, publicKey) => enrolment.isActive(name, publicKey),
      log,
    });
    this.engineRef = engine;
    // Re-emit every engine event, so listeners can attach to the Coordinator before start().
    for (const ev of ROUND_EVENTS) engine.on(ev, (payload: unknown) => (this.emit as (e: string, p: unknown) => boolean)(ev, payload));
    const ops = (this.ops = new Operations(cfg, this, this.logger));
    // Advertise the stream limit explicitly: HTTP/2 clients otherwise assume 100 per connection, and the SDK's
    // clients in one process share a connection, each holding a task stream open (a join storm's queue).
    // Keepalive: the server pings each connection (transport.keepaliveTimeMs) and closes one whose ack does not come,
    // so a site gone without a FIN or RST leaves its task stream, and the reconnect grace starts, in seconds rather
    // than at the round's deadline. grpc-js's server answers the sites' own pings at any rate (no ping policy).
    const { keepaliveTimeMs, keepaliveTimeoutMs } = cfg.transport;
    const keepalive = keepaliveTimeMs > 0 ? { 'grpc.keepalive_time_ms': keepaliveTimeMs, 'grpc.keepalive_timeout_ms': keepaliveTimeoutMs } : {};
    const server = new grpc.Server({ 'grpc.max_concurrent_streams': 1_000_000, ...keepalive, ...ops.serverOptions() });
    ops.addServices(server);
    // guardService: every request's bytes are bounded and parsed at the door (coordinator/door.ts);
    // preEncodedDownloads: the latest version's download goes out as encoded once (coordinator/download-image.ts).
    server.addService(
      preEncodedDownloads(guardService(loadFedtuneProto().fedtune.v1.Federation.service)),
      createHandlers({
        config: cfg,
        registry: this.registry,
        engine,
        store: this.store,
        runId: cfg.run.id,
        baseModelSha256: baseModel.sha256,
        keys,
        enrolment,
        challenges: new Challenges(cfg.auth.challengeTtlMs, Date.now, {
          total: cfg.admission.maxPendingChallenges,
          perHost: cfg.admission.maxChallengesPerHost,
          retryAfterMs: cfg.admission.retryAfterMs,
        }),
        log,
      }),
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${cfg.server.host}:${cfg.server.port}`, credentials, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
    // A metrics or dashboard port that cannot be bound fails start(), leaving nothing bound.
    await ops.listen().catch(async (e: Error) => {
      this.server = undefined;
      server.forceShutdown();
      await ops.close();
      throw e;
    });
    // Paths and the mode only: the key's contents never reach a log.
    const tls = this.opts.credentials
      ? { tls: 'credentials option' }
      : { tls: tlsMode(cfg.tls), tlsCertFile: cfg.tls.certFile || undefined, tlsClientCaFile: cfg.tls.clientCaFile || undefined };
    this.logger.info({ address: `${cfg.server.host}:${port}`, runDir: cfg.run.dir, keyId: keys.keyId, auth: cfg.auth.mode, ...tls }, 'coordinator listening');
    this.runPromise = engine.run();
    this.runPromise.then(this.settle.resolve, (e: Error) => {
      this.logger.error({ err: e.message }, 'run stopped');
      this.settle.reject(e);
    });
    return { address: `${cfg.server.host}:${port}`, port };
  }

  /** Loads or creates the key file and hands the signing key to the store, before anything reads or commits. */
  private async loadKeys(): Promise<void> {
    const cfg = this.opts.config;
    const keyFile = Coordinator.keyFile(cfg);
    // A key inside versions/ would sit among (and be exported or copied with) the checkpoints.
    const rel = path.relative(path.resolve(cfg.run.dir, 'versions'), path.resolve(keyFile));
    if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) {
      throw new Error(`security.keyFile ${keyFile} must not be inside ${path.join(cfg.run.dir, 'versions')}`);
    }
    // The run directory keeps its ordinary permissions; only keys/ (created by the key file writer) is 0700.
    await fs.mkdir(cfg.run.dir, { recursive: true });
    // A new key cannot continue versions signed with a lost one: refuse rather than leave a stray key behind.
    const hasKey = await fs.stat(keyFile).then(
      () => true,
      () => false,
    );
    const versions = await fs.readdir(path.join(cfg.run.dir, 'versions')).catch(() => [] as string[]);
    if (!hasKey && !this.opts.store && versions.some((n) => /^v\d{6,}$/.test(n))) {
      throw new Error(`${keyFile} is missing, but ${cfg.run.dir} holds versions signed with it: restore it from a backup (a new key cannot continue this run)`);
    }
    const keys = await loadOrCreateCoordinatorKeys(keyFile);
    this.keysRef = keys;
    const signer = manifestSigner(keys.sign);
    // A store passed in by the caller is the caller's to configure; only the built-in one is given the key.
    const own = !this.opts.store && this.store instanceof FsCheckpointStore ? this.store : undefined;
    own?.setSigner(signer);
    // Recovery of the run directory (or a refusal naming `fedtune recover`) before the server is bound.
    await own?.open();
    const signs = own !== undefined;
    // Public halves only: the manifest key can be pinned with `fedtune verify --key`.
    this.logger.info(
      { keyId: keys.keyId, manifestKeyId: signer.keyId, signPublicKey: Buffer.from(keys.sign.publicKey).toString('base64'), keyFile },
      signs
        ? 'coordinator keys loaded; every checkpoint manifest is signed'
        : 'coordinator keys loaded; the checkpoint store was passed in, so manifests are not signed here',
    );
  }

  /**
   * After the run has ended: keeps serving until every participant of the final version has been told that the run
   * is over, for at most `ms`. A site that was reconnecting when the run ended — above all to a coordinator
   * restarted after its last commit, whose run is over at once — learns it when it attaches; shut down at once, that
   * coordinator would leave its sites retrying forever. Resolves at once when the final version names no
   * participants (v0, or a round whose participants the manifest hides) or after stop().
   */
  async finishNotice(ms: number): Promise<void> {
    const engine = this.engineRef;
    const want = (engine?.latest?.manifest.participants ?? []).map((p) => p.clientId);
    const until = Date.now() + ms;
    while (this.server && engine && Date.now() < until && !want.every((id) => engine.finishNotice.told.has(id))) {
      await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, until - Date.now()))));
    }
  }

  /** Stops scheduling, closes task streams and shuts the server down (forcefully after `graceMs`). */
  async stop(graceMs = 2000): Promise<void> {
    this.ops?.drain();
    this.engineRef?.stop();
    this.registry.closeAll();
    const server = this.server;
    this.server = undefined;
    if (!server) {
      await this.ops?.close();
      await this.releaseLock();
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        server.forceShutdown();
        resolve();
      }, graceMs);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    await this.runPromise?.catch(() => undefined);
    await this.ops?.close();
    await this.releaseLock();
  }

  /** After the last commit could have happened: the run directory is free for the next coordinator. */
  private async releaseLock(): Promise<void> {
    const lock = this.lock;
    this.lock = undefined;
    await lock?.release();
  }
}
