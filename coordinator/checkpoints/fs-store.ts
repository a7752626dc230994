// The embedded checkpoint store: one directory per version on the local filesystem.
//
//   <run>/versions/v000003/adapter_model.safetensors   PEFT weights (keys base_model.model.transformer…)
//   <run>/versions/v000003/adapter_config.json         PEFT config
//   <run>/versions/v000003/manifest.json               lineage, participants, seeds, config, file hashes
//   <run>/versions/v000003/manifest.sig                Ed25519 signature of manifest.json (signature.ts), when
//                                                      the store has a signer
//   <run>/versions/v000003/server-state.safetensors    a server optimiser's state (server-state.ts), when it has one
//   <run>/versions/v000003/ema/adapter_model.safetensors, ema/adapter_config.json
//                                                      the averaged adapter as a PEFT directory, under strategy.ema
//                                                      (ema-files.ts)
//   <run>/versions/v000003/pruned.json                 what the retention policy removed (pruned-record.ts), if anything
//   <run>/latest                                       "v000003\n": moves only once the version is complete
//
// A version is written under versions/.tmp-…, fsynced, then renamed into place, and only then does `latest`
// move (atomically: a temporary, fsync, rename, fsync the directory). `latest` therefore only ever moves
// forward by one version. On open (recover()), temporaries are deleted; a version exactly one beyond
// `latest` is what a crash between the rename and the pointer leaves: it is complete on disk, so once its
// hashes, signature and parent link check out the pointer is moved to it (the interrupted commit is
// finished). Any other disagreement between `latest` and versions/ (pointer missing while versions exist,
// pointer behind by more than one, naming a missing version, unreadable) is damage, not a crash: the store
// refuses to open (RecoveryNeededError) and changes nothing; `fedtune recover` (recover.ts) rebuilds the
// pointer from the signed chain.
//
// A read-only store (the CLI's inspecting commands) never creates, deletes or moves anything, and refuses a
// directory that is not a run.
//
// A store with a signer signs every version it commits and refuses, on read, a version whose manifest.sig is
// missing, damaged or made with another key. A store without one still checks a manifest.sig it finds against
// the key that file names: that catches damage (e.g. to the latest manifest, which no child links to), not
// forgery — pinning the key is `fedtune verify --key`'s job.
//
// Reading a version back is version-read.ts; exporting one, version-export.ts. A store given a retention policy
// (retention.ts) prunes older versions' weights right after each commit is durable (prune.ts).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { PIECE_BYTES, pieceHashes } from '../../proto/pieces';
import { readSafetensors, writeSafetensors } from '../../proto/safetensors';
import { fsyncPath, removeTemps, replaceAtomically, stableJson, stepsFor, writeDurable, type CrashHook } from './atomic-fs';
import { MANIFEST_SIG_FILE, manifestKeyId, signManifest, type ManifestSigner } from './signature';
import type { Checkpoint, CheckpointStore, Manifest, VersionInput } from './types';
import { SERVER_STATE_FILE, decodeServerState, encodeServerState } from './server-state';
import { EMA_ADAPTER_CONFIG_FILE, EMA_ADAPTER_FILE, EMA_DIR, emaWeights, splitAverage, withAverage } from './ema-files';
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_FILE,
  CheckpointIntegrityError,
  LATEST_FILE,
  MANIFEST_FILE,
  MANIFEST_FORMAT,
  NotARunError,
  RECOVER_HINT,
  RecoveryNeededError,
  RunMismatchError,
  VERSION_RE,
  pointerProblem,
  versionDirName,
} from './run-layout';
import { readManifest, readVersion, type VersionSource } from './version-read';
import { copyVersion } from './version-export';
import { keepsAll, type RetentionPolicy } from './retention';
import { keptVersions, pruneRun } from './prune';

// The run's layout on disk, its errors and the pointer rule live in run-layout.ts; re-exported here, the store's
// public face, so callers keep one import.
export * from './run-layout';

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

export interface FsStoreOptions {
  /** Called for recoveries worth an operator's attention (orphaned versions, stray temporaries). */
  readonly warn?: (message: string) => void;
  /** Signs each committed manifest; reads then require every version to be signed with this key. */
  readonly signer?: ManifestSigner;
  /** Inspect only: never create, delete or move anything; refuse a directory that is not a run. */
  readonly readOnly?: boolean;
  /**
   * Test seam: called at every step of a commit that changes the disk ('commit:tmp:write', 'commit:renamed',
   * 'commit:pointer:rename' …; see proto/durable-file.ts), so a test can stop a commit at each in turn.
   */
  readonly crashHook?: CrashHook;
  /**
   * The run this store serves (the coordinator's run.id): opening a directory whose versions name another run
   * is refused (RunMismatchError), nothing changed. Without it, any one run id is accepted, but not two.
   */
  readonly runId?: string;
  /** Bytes per hashed piece of a committed version (proto/pieces.ts; default PIECE_BYTES); 0: none recorded. */
  readonly pieceBytes?: number;
  /** Prune older versions after each commit (retention.ts); absent or keeping all: every file of every version stays. */
  readonly retention?: RetentionPolicy;
}

export class FsCheckpointStore implements CheckpointStore {
  readonly versionsDir: string;
  private ready: Promise<void> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private signer: ManifestSigner | undefined;
  /** What this process's prune passes applied (prune.ts PruneOptions.applied). */
  private readonly pruned = new Map<number, string>();

  constructor(
    readonly runDir: string,
    private readonly opts: FsStoreOptions = {},
  ) {
    this.versionsDir = path.join(runDir, 'versions');
    if (opts.signer) this.setSigner(opts.signer);
  }

  /**
   * Sets the key that signs (and is required on) every version. Only before first use, so that no version is
   * committed or trusted under different rules (the Coordinator builds its store before it has loaded keys).
   */
  setSigner(signer: ManifestSigner): void {
    if (this.ready) throw new Error('FsCheckpointStore.setSigner must be called before the store is first used');
    if (signer.keyId !== manifestKeyId(signer.publicKey))
      throw new Error(`signer keyId ${signer.keyId} is not the id of its public key (${manifestKeyId(signer.publicKey)})`);
    this.signer = signer;
  }

  /** Checks (and, unless read-only, tidies) the run directory once; every other method waits for it. */
  open(): Promise<void> {
    this.ready ??= this.opts.readOnly ? this.checkReadOnly() : this.recover();
    return this.ready;
  }

  private async checkReadOnly(): Promise<void> {
    const st = await fs.stat(this.versionsDir).catch(() => null);
    if (!st?.isDirectory()) throw new NotARunError(`${this.runDir} is not a fedtune run directory (it has no versions/)`);
    const { pointer, versions } = await this.scan();
    const problem = pointerProblem(this.runDir, pointer, versions);
    // One version beyond the pointer is an interrupted commit the coordinator finishes: not damage.
    if (problem && problem.rollForward === undefined) throw new RecoveryNeededError(problem.message);
    await this.checkChain(pointer);
  }

  /**
   * Every version up to the pointer belongs to this run and links to the one before (the parent's manifest
   * hash and number; v000000 has none). Manifests only: a version's files are checked when it is read. Any
   * break is refused before anything is changed, naming the first one and the command that shows them all.
   */
  private async checkChain(pointer: number | null): Promise<void> {
    if (pointer === null) return;
    const hint = `Nothing was changed. \`fedtune verify ${this.runDir}\` shows every problem`;
    let prev: { bytes: Buffer; manifest: Manifest } | undefined;
    let runId = this.opts.runId;
    for (let v = 0; v <= pointer; v++) {
      let cur: { bytes: Buffer; manifest: Manifest };
      try {
        cur = await this.readManifest(v);
      } catch (e) {
        if (!(e instanceof CheckpointIntegrityError)) throw e;
        throw new CheckpointIntegrityError(`run ${this.runDir}: the chain up to ${versionDirName(pointer)} is broken: ${e.message}. ${hint}`);
      }
      this.checkRunId(cur.manifest, runId, hint);
      runId ??= cur.manifest.runId;
      const want = prev ? { version: v - 1, manifestSha256: sha256(prev.bytes) } : null;
      const got = cur.manifest.parent;
      if (got?.version !== want?.version || got?.manifestSha256 !== want?.manifestSha256) {
        throw new CheckpointIntegrityError(
          `run ${this.runDir}: the chain is broken at ${versionDirName(v)}: its parent link names ${got ? `${versionDirName(got.version)} with manifest ${String(got.manifestSha256).slice(0, 16)}…` : 'no parent'}, but ${want ? `${versionDirName(want.version)}/${MANIFEST_FILE} hashes to ${want.manifestSha256.slice(0, 16)}…` : 'it is the first version'}. ${hint}`,
        );
      }
      prev = cur;
    }
  }

  /** RunMismatchError when `m` names another run than `runId` (the configured one, or that of the versions before). */
  private checkRunId(m: Manifest, runId: string | undefined, hint: string): void {
    if (runId === undefined || m.runId === runId) return;
    const configured = this.opts.runId !== undefined;
    throw new RunMismatchError(
      configured
        ? `run ${this.runDir}: ${versionDirName(m.version)} belongs to run ${JSON.stringify(m.runId)}, not to this run ${JSON.stringify(runId)}. ${hint}; set run.id to ${JSON.stringify(m.runId)} to continue that run, or use another run directory`
        : `run ${this.runDir}: ${versionDirName(m.version)} belongs to run ${JSON.stringify(m.runId)}, the versions before it to run ${JSON.stringify(runId)}. ${hint}`,
    );
  }

  private async recover(): Promise<void> {
    // Damage first, before anything is touched: the refusal says nothing was changed, and means it.
    const { pointer, versions } = await this.scan();
    const problem = pointerProblem(this.runDir, pointer, versions);
    if (problem && problem.rollForward === undefined) throw new RecoveryNeededError(problem.message);
    await this.checkChain(pointer);
    await fs.mkdir(this.versionsDir, { recursive: true });
    for (const name of await fs.readdir(this.versionsDir)) {
      if (!name.startsWith('.tmp-')) continue;
      this.opts.warn?.(`removing incomplete version directory ${name}`);
      await fs.rm(path.join(this.versionsDir, name), { recursive: true, force: true });
    }
    for (const t of await removeTemps(path.join(this.runDir, LATEST_FILE))) this.opts.warn?.(`removed ${t}, left by an interrupted move of the latest pointer`);
    await fsyncPath(this.versionsDir);
    if (problem?.rollForward === undefined) return;
    const v = problem.rollForward;
    // A crash between the rename and the pointer: the version is complete and was fsynced before its rename.
    // It is made latest only if it reads back intact and links to the current latest.
    try {
      const { parent, runId } = (await this.readNow(v)).manifest;
      const expectRun = this.opts.runId ?? (v === 0 ? undefined : (await this.readManifest(v - 1)).manifest.runId);
      if (expectRun !== undefined && runId !== expectRun)
        throw new CheckpointIntegrityError(
          `${versionDirName(v)}/${MANIFEST_FILE}: it belongs to run ${JSON.stringify(runId)}, not ${JSON.stringify(expectRun)}`,
        );
      const want = v === 0 ? null : { version: v - 1, manifestSha256: sha256((await this.readManifest(v - 1)).bytes) };
      if (parent?.version !== want?.version || parent?.manifestSha256 !== want?.manifestSha256) {
        throw new CheckpointIntegrityError(
          `${versionDirName(v)}/${MANIFEST_FILE}: its parent link does not match ${want ? `${versionDirName(v - 1)}/${MANIFEST_FILE}` : 'a first version (none)'}`,
        );
      }
    } catch (e) {
      if (!(e instanceof CheckpointIntegrityError)) throw e;
      throw new RecoveryNeededError(`${problem.message}; it cannot be taken as an interrupted commit: ${e.message}`);
    }
    await replaceAtomically(path.join(this.runDir, LATEST_FILE), versionDirName(v) + '\n');
    this.opts.warn?.(`finished the interrupted commit of ${versionDirName(v)}: it was complete on disk but the latest pointer had not moved`);
  }

  /** The pointer and the version directories present (sorted). */
  private async scan(): Promise<{ pointer: number | null; versions: number[] }> {
    const pointer = await this.latestVersion();
    const versions: number[] = [];
    const names = await fs.readdir(this.versionsDir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return [] as string[];
      throw e;
    });
    for (const name of names) {
      const m = VERSION_RE.exec(name);
      if (m && name === versionDirName(Number(m[1]))) versions.push(Number(m[1]));
    }
    return { pointer, versions: versions.sort((a, b) => a - b) };
  }

  /** The version number `latest` names, or null when nothing was committed. */
  private async latestVersion(): Promise<number | null> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.runDir, LATEST_FILE), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    const m = VERSION_RE.exec(text.trim());
    if (!m)
      throw new RecoveryNeededError(
        `${path.join(this.runDir, LATEST_FILE)} does not name a version: ${JSON.stringify(text.slice(0, 40))}. ${RECOVER_HINT(this.runDir)}`,
      );
    return Number(m[1]);
  }

  async latest(): Promise<Checkpoint | null> {
    await this.open();
    const v = await this.latestVersion();
    return v === null ? null : this.read(v);
  }

  /** Where this store's versions are and the key it requires (version-read.ts). */
  private get source(): VersionSource {
    return { runDir: this.runDir, versionsDir: this.versionsDir, signer: this.signer };
  }

  private readManifest(version: number): Promise<{ bytes: Buffer; manifest: Manifest }> {
    return readManifest(this.source, version);
  }

  async read(version: number): Promise<Checkpoint> {
    await this.open();
    return this.readNow(version);
  }

  private async readNow(version: number, mayLack: readonly string[] = []): Promise<Checkpoint> {
    return readVersion(this.source, version, await this.latestVersion(), mayLack);
  }

  commit(input: VersionInput): Promise<Checkpoint> {
    // Commits are serialised: each computes its version from the one before.
    const next = this.queue.then(() => this.commitNow(input));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async commitNow(input: VersionInput): Promise<Checkpoint> {
    if (this.opts.readOnly) throw new Error(`the checkpoint store of ${this.runDir} was opened read-only`);
    await this.open();
    const parentVersion = await this.latestVersion();
    const parent = parentVersion === null ? null : await this.read(parentVersion);
    const version = parentVersion === null ? 0 : parentVersion + 1;
    const weights = writeSafetensors(input.adapter, { format: 'pt' });
    const adapterConfig = stableJson(input.adapterConfig);
    const ema = emaWeights(input.adapter, input.serverState);
    // The average is stored once, in ema/ (ema-files.ts): the server state file keeps the rest, if any.
    const stored = input.serverState && ema ? splitAverage(input.adapter, input.serverState) : (input.serverState ?? []);
    const state = stored.length ? encodeServerState(stored, input.manifest.strategy) : null;
    // The piece hashes of the stream the coordinator will serve: the adapter as read back from its file (the order
    // and bytes every later download of this version sends).
    const adapter = readSafetensors(weights).tensors;
    const pieceBytes = this.opts.pieceBytes ?? PIECE_BYTES;
    const pieces = pieceBytes > 0 ? pieceHashes(adapter, pieceBytes) : undefined;
    const manifest: Manifest = {
      ...input.manifest,
      format: MANIFEST_FORMAT,
      version,
      parent: parent ? { version: parent.manifest.version, manifestSha256: parent.manifestSha256 } : null,
      createdAt: new Date().toISOString(),
      files: {
        [ADAPTER_FILE]: sha256(weights),
        [ADAPTER_CONFIG_FILE]: sha256(adapterConfig),
        ...(state ? { [SERVER_STATE_FILE]: sha256(state) } : {}),
        ...(ema ? { [EMA_ADAPTER_FILE]: sha256(ema), [EMA_ADAPTER_CONFIG_FILE]: sha256(adapterConfig) } : {}),
      },
      ...(pieces ? { pieces } : {}),
    };
    const manifestText = stableJson(manifest);
    // Each step reports to the crash hook (a no-op outside tests); see proto/durable-file.ts.
    const hook = this.opts.crashHook;
    const tmpStep = stepsFor('commit:tmp', hook);
    const tmp = path.join(this.versionsDir, `.tmp-${versionDirName(version)}-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(tmp);
    await tmpStep('mkdir', tmp);
    await writeDurable(path.join(tmp, ADAPTER_FILE), weights, tmpStep);
    await writeDurable(path.join(tmp, ADAPTER_CONFIG_FILE), adapterConfig, tmpStep);
    if (state) await writeDurable(path.join(tmp, SERVER_STATE_FILE), state, tmpStep);
    if (ema) {
      await fs.mkdir(path.join(tmp, EMA_DIR));
      await writeDurable(path.join(tmp, EMA_ADAPTER_FILE), ema, tmpStep);
      await writeDurable(path.join(tmp, EMA_ADAPTER_CONFIG_FILE), adapterConfig, tmpStep);
      await fsyncPath(path.join(tmp, EMA_DIR), tmpStep);
    }
    await writeDurable(path.join(tmp, MANIFEST_FILE), manifestText, tmpStep);
    if (this.signer) await writeDurable(path.join(tmp, MANIFEST_SIG_FILE), signManifest(Buffer.from(manifestText, 'utf8'), this.signer), tmpStep);
    await fsyncPath(tmp, tmpStep);
    const final = path.join(this.versionsDir, versionDirName(version));
    await fs.rename(tmp, final);
    await stepsFor('commit', hook)('renamed', final);
    await fsyncPath(this.versionsDir, stepsFor('commit:versions', hook));
    await replaceAtomically(path.join(this.runDir, LATEST_FILE), versionDirName(version) + '\n', stepsFor('commit:pointer', hook));
    await this.prune(version, manifest.best);
    return {
      manifest: JSON.parse(manifestText) as Manifest,
      manifestSha256: sha256(manifestText),
      adapter,
      adapterConfig: JSON.parse(adapterConfig) as Record<string, unknown>,
      // What the next round steps from: the state as a read gives it back (the average from ema/), bit for bit.
      serverState: withAverage(state ? decodeServerState(state) : [], ema ? readSafetensors(ema).tensors : null),
    };
  }

  async list(): Promise<Manifest[]> {
    await this.open();
    // scan() as open() reads the directory: canonical names only, in numeric order (a text sort would put v1000000
    // before v999999).
    const { pointer, versions } = await this.scan();
    if (pointer === null) return [];
    const out: Manifest[] = [];
    // Versions up to latest only: one beyond it is an interrupted commit, not (yet) part of the run.
    for (const v of versions) {
      if (v > pointer) continue;
      out.push(JSON.parse(await fs.readFile(path.join(this.versionsDir, versionDirName(v), MANIFEST_FILE), 'utf8')) as Manifest);
    }
    return out;
  }

  /**
   * The retention policy's pass after a durable commit (prune.ts). A failure is logged, not thrown: the version is
   * committed, and the next commit's pass finishes what this one left (its record says what goes).
   */
  private async prune(latest: number, best: Manifest['best']): Promise<void> {
    const policy = this.opts.retention;
    if (!policy || keepsAll(policy)) return;
    try {
      const keep = await keptVersions(this.runDir, best);
      await pruneRun(this.runDir, { policy, latest, keep, signer: this.signer, crashHook: this.opts.crashHook, applied: this.pruned });
    } catch (e) {
      this.opts.warn?.(`retention: pruning after ${versionDirName(latest)} stopped (${(e as Error).message}); the next commit retries it`);
    }
  }

  /**
   * Copies a version to `outDir`: every file its manifest lists (the PEFT pair adapter_model.safetensors +
   * adapter_config.json, ready for PeftModel.from_pretrained, server-state.safetensors when the version has one,
   * and under strategy.ema the averaged adapter's PEFT pair in ema/: the adapter the version was scored and is
   * released as), the manifest and its signature, so the export is checkable on its own (verifyVersionDir). A
   * version whose adapter retention removed is refused (VersionPrunedError); one that lost only its server state
   * is exported without it, with its pruned.json. Refuses an `outDir` holding other files.
   */
  async export(version: number, outDir: string): Promise<string[]> {
    await this.open();
    const { manifest } = await this.readNow(version, [SERVER_STATE_FILE]); // verifies every hash before anything is copied
    return copyVersion(path.join(this.versionsDir, versionDirName(version)), version, Object.keys(manifest.files), outDir);
  }
}
