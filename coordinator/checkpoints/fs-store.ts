// The embedded checkpoint store: one directory per version on the local filesystem.
//
//   <run>/versions/v000003/adapter_model.safetensors   PEFT weights (keys base_model.model.transformer…)
//   <run>/versions/v000003/adapter_config.json         PEFT config
//   <run>/versions/v000003/manifest.json               lineage, participants, seeds, config, file hashes
//   <run>/versions/v000003/manifest.sig                Ed25519 signature of manifest.json (signature.ts), when
//                                                      the store has a signer
//   <run>/latest                                       "v000003\n": moves only once the version is complete
//
// A version is written under versions/.tmp-…, fsynced, then renamed into place, and only then does `latest`
// move. On open, temporary directories are deleted and versions beyond `latest` (a crash between the rename
// and the pointer) are moved to <run>/orphans/ rather than trusted or destroyed.
//
// A store with a signer signs every version it commits and refuses, on read, a version whose manifest.sig is
// missing, damaged or made with another key. A store without one still checks a manifest.sig it finds against
// the key that file names: that catches damage (e.g. to the latest manifest, which no child links to), not
// forgery — pinning the key is `fedtune verify --key`'s job.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { readSafetensors, writeSafetensors } from '../../proto/safetensors';
import { fsyncPath, replaceAtomically, stableJson, writeDurable } from './atomic-fs';
import { MANIFEST_SIG_FILE, manifestKeyId, signManifest, signatureProblem, type ManifestSigner } from './signature';
import type { Checkpoint, CheckpointStore, Manifest, VersionInput } from './types';

export const ADAPTER_FILE = 'adapter_model.safetensors';
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'fedtune.checkpoint/1';

export const versionDirName = (v: number): string => `v${String(v).padStart(6, '0')}`;
const VERSION_RE = /^v(\d{6,})$/;

export class CheckpointIntegrityError extends Error {
  override name = 'CheckpointIntegrityError';
}

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

export interface FsStoreOptions {
  /** Called for recoveries worth an operator's attention (orphaned versions, stray temporaries). */
  readonly warn?: (message: string) => void;
  /** Signs each committed manifest; reads then require every version to be signed with this key. */
  readonly signer?: ManifestSigner;
}

export class FsCheckpointStore implements CheckpointStore {
  readonly versionsDir: string;
  private ready: Promise<void> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private signer: ManifestSigner | undefined;

  constructor(readonly runDir: string, private readonly opts: FsStoreOptions = {}) {
    this.versionsDir = path.join(runDir, 'versions');
    if (opts.signer) this.setSigner(opts.signer);
  }

  /**
   * Sets the key that signs (and is required on) every version. Only before first use, so that no version is
   * committed or trusted under different rules (the Coordinator builds its store before it has loaded keys).
   */
  setSigner(signer: ManifestSigner): void {
    if (this.ready) throw new Error('FsCheckpointStore.setSigner must be called before the store is first used');
    if (signer.keyId !== manifestKeyId(signer.publicKey)) throw new Error(`signer keyId ${signer.keyId} is not the id of its public key (${manifestKeyId(signer.publicKey)})`);
    this.signer = signer;
  }

  private open(): Promise<void> {
    this.ready ??= this.recover();
    return this.ready;
  }

  private async recover(): Promise<void> {
    await fs.mkdir(this.versionsDir, { recursive: true });
    const latest = await this.latestVersion();
    for (const name of await fs.readdir(this.versionsDir)) {
      const full = path.join(this.versionsDir, name);
      if (name.startsWith('.tmp-')) {
        this.opts.warn?.(`removing incomplete version directory ${name}`);
        await fs.rm(full, { recursive: true, force: true });
        continue;
      }
      const m = VERSION_RE.exec(name);
      if (m && (latest === null || Number(m[1]) > latest)) {
        const orphans = path.join(this.runDir, 'orphans');
        await fs.mkdir(orphans, { recursive: true });
        const dest = path.join(orphans, `${name}-${Date.now()}`);
        this.opts.warn?.(`version ${name} is beyond the latest pointer; moved to ${path.relative(this.runDir, dest)}`);
        await fs.rename(full, dest);
      }
    }
    await fsyncPath(this.versionsDir);
  }

  /** The version number `latest` names, or null when nothing was committed. */
  private async latestVersion(): Promise<number | null> {
    let text: string;
    try {
      text = await fs.readFile(path.join(this.runDir, 'latest'), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    const m = VERSION_RE.exec(text.trim());
    if (!m) throw new CheckpointIntegrityError(`${path.join(this.runDir, 'latest')} does not name a version: ${JSON.stringify(text)}`);
    return Number(m[1]);
  }

  async latest(): Promise<Checkpoint | null> {
    await this.open();
    const v = await this.latestVersion();
    return v === null ? null : this.read(v);
  }

  /** A version's manifest bytes and parsed contents; throws CheckpointIntegrityError naming the file. */
  private async readManifest(version: number, checkSignature = false): Promise<{ bytes: Buffer; manifest: Manifest }> {
    const file = path.join(this.versionsDir, versionDirName(version), MANIFEST_FILE);
    const label = `${versionDirName(version)}/${MANIFEST_FILE}`;
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointIntegrityError(`version ${version} does not exist in ${this.runDir}`);
      throw e;
    }
    // Before parsing: a damaged manifest is then reported as not matching its signature, whatever the damage.
    if (checkSignature) await this.checkSignature(version, bytes);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(bytes.toString('utf8')) as Manifest;
    } catch (e) {
      throw new CheckpointIntegrityError(`${label}: not valid JSON (${(e as Error).message})`);
    }
    if (
      manifest === null ||
      typeof manifest !== 'object' ||
      manifest.format !== MANIFEST_FORMAT ||
      manifest.version !== version ||
      manifest.files === null ||
      typeof manifest.files !== 'object'
    ) {
      throw new CheckpointIntegrityError(`${label}: not a ${MANIFEST_FORMAT} manifest of version ${version}`);
    }
    return { bytes, manifest };
  }

  /** Throws CheckpointIntegrityError unless manifest.sig is acceptable for these manifest bytes (see the header). */
  private async checkSignature(version: number, manifestBytes: Buffer): Promise<void> {
    const label = versionDirName(version);
    let sigBytes: Buffer;
    try {
      sigBytes = await fs.readFile(path.join(this.versionsDir, label, MANIFEST_SIG_FILE));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      if (this.signer) throw new CheckpointIntegrityError(`${label}/${MANIFEST_SIG_FILE}: missing; this store signs every version and refuses an unsigned one`);
      return;
    }
    const problem = signatureProblem(sigBytes, manifestBytes, label, this.signer);
    if (problem) throw new CheckpointIntegrityError(problem);
  }

  async read(version: number): Promise<Checkpoint> {
    await this.open();
    const dir = path.join(this.versionsDir, versionDirName(version));
    const { bytes: manifestBytes, manifest } = await this.readManifest(version, true);
    const manifestSha256 = sha256(manifestBytes);
    // The manifest lists every other file's hash; its own hash is the next version's parent link, so every
    // version but the latest is checked against that.
    const latest = await this.latestVersion();
    if (latest !== null && version < latest) {
      const child = (await this.readManifest(version + 1)).manifest;
      const want = child.parent?.manifestSha256;
      if (want !== manifestSha256) {
        throw new CheckpointIntegrityError(
          `${versionDirName(version)}/${MANIFEST_FILE}: sha256 ${manifestSha256} does not match the parent link ${want} in ${versionDirName(version + 1)}/${MANIFEST_FILE}`,
        );
      }
    }
    const files: Record<string, Buffer> = {};
    for (const [name, want] of Object.entries(manifest.files)) {
      const bytes = await fs.readFile(path.join(dir, name));
      const got = sha256(bytes);
      if (got !== want) {
        throw new CheckpointIntegrityError(`${versionDirName(version)}/${name}: sha256 ${got} does not match the manifest's ${want}`);
      }
      files[name] = bytes;
    }
    if (!files[ADAPTER_FILE] || !files[ADAPTER_CONFIG_FILE]) {
      throw new CheckpointIntegrityError(`${versionDirName(version)}: manifest does not list ${ADAPTER_FILE} and ${ADAPTER_CONFIG_FILE}`);
    }
    return {
      manifest,
      manifestSha256,
      adapter: readSafetensors(files[ADAPTER_FILE]).tensors,
      adapterConfig: JSON.parse(files[ADAPTER_CONFIG_FILE].toString('utf8')) as Record<string, unknown>,
    };
  }

  commit(input: VersionInput): Promise<Checkpoint> {
    // Commits are serialised: each computes its version from the one before.
    const next = this.queue.then(() => this.commitNow(input));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async commitNow(input: VersionInput): Promise<Checkpoint> {
    await this.open();
    const parentVersion = await this.latestVersion();
    const parent = parentVersion === null ? null : await this.read(parentVersion);
    const version = parentVersion === null ? 0 : parentVersion + 1;
    const weights = writeSafetensors(input.adapter, { format: 'pt' });
    const adapterConfig = stableJson(input.adapterConfig);
    const manifest: Manifest = {
      ...input.manifest,
      format: MANIFEST_FORMAT,
      version,
      parent: parent ? { version: parent.manifest.version, manifestSha256: parent.manifestSha256 } : null,
      createdAt: new Date().toISOString(),
      files: { [ADAPTER_FILE]: sha256(weights), [ADAPTER_CONFIG_FILE]: sha256(adapterConfig) },
    };
    const manifestText = stableJson(manifest);
    const tmp = path.join(this.versionsDir, `.tmp-${versionDirName(version)}-${randomBytes(6).toString('hex')}`);
    await fs.mkdir(tmp);
    await writeDurable(path.join(tmp, ADAPTER_FILE), weights);
    await writeDurable(path.join(tmp, ADAPTER_CONFIG_FILE), adapterConfig);
    await writeDurable(path.join(tmp, MANIFEST_FILE), manifestText);
    if (this.signer) await writeDurable(path.join(tmp, MANIFEST_SIG_FILE), signManifest(Buffer.from(manifestText, 'utf8'), this.signer));
    await fsyncPath(tmp);
    await fs.rename(tmp, path.join(this.versionsDir, versionDirName(version)));
    await fsyncPath(this.versionsDir);
    await replaceAtomically(path.join(this.runDir, 'latest'), versionDirName(version) + '\n');
    return {
      manifest: JSON.parse(manifestText) as Manifest,
      manifestSha256: sha256(manifestText),
      adapter: readSafetensors(weights).tensors,
      adapterConfig: JSON.parse(adapterConfig) as Record<string, unknown>,
    };
  }

  async list(): Promise<Manifest[]> {
    await this.open();
    const latest = await this.latestVersion();
    if (latest === null) return [];
    const out: Manifest[] = [];
    for (const name of (await fs.readdir(this.versionsDir)).sort()) {
      const m = VERSION_RE.exec(name);
      if (!m || Number(m[1]) > latest) continue;
      out.push(JSON.parse(await fs.readFile(path.join(this.versionsDir, name, MANIFEST_FILE), 'utf8')) as Manifest);
    }
    return out;
  }

  /** Copies a version's PEFT files (and its manifest) to `outDir`, ready for PeftModel.from_pretrained. */
  async export(version: number, outDir: string): Promise<string[]> {
    await this.read(version); // verifies every hash before anything is copied
    const src = path.join(this.versionsDir, versionDirName(version));
    await fs.mkdir(outDir, { recursive: true });
    const names = [ADAPTER_FILE, ADAPTER_CONFIG_FILE, MANIFEST_FILE];
    // The signature travels with the manifest it signs, so an exported version can still be checked.
    if (await fs.stat(path.join(src, MANIFEST_SIG_FILE)).then(() => true, () => false)) names.push(MANIFEST_SIG_FILE);
    for (const n of names) await fs.copyFile(path.join(src, n), path.join(outDir, n));
    return names.map((n) => path.join(outDir, n));
  }
}
