// Reading one committed version back, as the store (fs-store.ts) does for every read, resume and export: its
// manifest (format, version number, and its signature when the store signs or a manifest.sig is present), the
// parent link its child holds, and every file the manifest lists against its sha256. A file removed by the run's
// retention policy (retention.ts, recorded in the version's pruned.json) is refused as pruned, not as damage.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { readSafetensors } from '../../proto/safetensors';
import { MANIFEST_SIG_FILE, signatureProblem, type ManifestSigner } from './signature';
import type { Checkpoint, Manifest } from './types';
import { SERVER_STATE_FILE, decodeServerState } from './server-state';
import { ADAPTER_CONFIG_FILE, ADAPTER_FILE, CheckpointIntegrityError, MANIFEST_FILE, MANIFEST_FORMAT, versionDirName } from './run-layout';
import { prunedFiles, VersionPrunedError } from './pruned-record';
import { EMA_ADAPTER_FILE, withAverage } from './ema-files';

const sha256 = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** Where a run's versions are and the key its store requires (none: a manifest.sig found is still checked). */
export interface VersionSource {
  readonly runDir: string;
  readonly versionsDir: string;
  readonly signer: ManifestSigner | undefined;
}

/** A version's manifest bytes and parsed contents; throws CheckpointIntegrityError naming the file. */
export async function readManifest(src: VersionSource, version: number, checkSignature = false): Promise<{ bytes: Buffer; manifest: Manifest }> {
  const file = path.join(src.versionsDir, versionDirName(version), MANIFEST_FILE);
  const label = `${versionDirName(version)}/${MANIFEST_FILE}`;
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CheckpointIntegrityError(`version ${version} does not exist in ${src.runDir}`);
    throw e;
  }
  // Before parsing: a damaged manifest is then reported as not matching its signature, whatever the damage.
  if (checkSignature) await checkSignatureFile(src, version, bytes);
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

/** Throws CheckpointIntegrityError unless manifest.sig is acceptable for these manifest bytes (fs-store.ts's header). */
async function checkSignatureFile(src: VersionSource, version: number, manifestBytes: Buffer): Promise<void> {
  const label = versionDirName(version);
  let sigBytes: Buffer;
  try {
    sigBytes = await fs.readFile(path.join(src.versionsDir, label, MANIFEST_SIG_FILE));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    if (src.signer) throw new CheckpointIntegrityError(`${label}/${MANIFEST_SIG_FILE}: missing; this store signs every version and refuses an unsigned one`);
    return;
  }
  const problem = signatureProblem(sigBytes, manifestBytes, label, src.signer);
  if (problem) throw new CheckpointIntegrityError(problem);
}

/**
 * Version `version`, every listed file checked against its hash. `mayLack` names the files the caller can do
 * without when retention pruned them (export: the server state); any other pruned file refuses the read with
 * VersionPrunedError, a file missing without the record with CheckpointIntegrityError.
 */
export async function readVersion(src: VersionSource, version: number, latest: number | null, mayLack: readonly string[] = []): Promise<Checkpoint> {
  const dir = path.join(src.versionsDir, versionDirName(version));
  const { bytes: manifestBytes, manifest } = await readManifest(src, version, true);
  const manifestSha256 = sha256(manifestBytes);
  // The manifest lists every other file's hash; its own hash is the next version's parent link, so every
  // version but the latest is checked against that.
  if (latest !== null && version < latest) {
    const child = (await readManifest(src, version + 1)).manifest;
    const want = child.parent?.manifestSha256;
    if (want !== manifestSha256) {
      throw new CheckpointIntegrityError(
        `${versionDirName(version)}/${MANIFEST_FILE}: sha256 ${manifestSha256} does not match the parent link ${want} in ${versionDirName(version + 1)}/${MANIFEST_FILE}`,
      );
    }
  }
  const pruned = await prunedFiles(dir, version);
  const refused = [...pruned].filter((n) => n in manifest.files && !mayLack.includes(n)).sort();
  if (refused.length) throw new VersionPrunedError(version, refused);
  const files: Record<string, Buffer> = {};
  for (const [name, want] of Object.entries(manifest.files)) {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(path.join(dir, name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      if (pruned.has(name)) continue; // one the caller may lack, removed by retention
      throw new CheckpointIntegrityError(
        `${versionDirName(version)}/${name}: missing, and not recorded as pruned: damage (\`fedtune verify\` shows every problem)`,
      );
    }
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
    // The average is stored once, in ema/ (ema-files.ts); older versions hold it in the state file too.
    serverState: withAverage(
      files[SERVER_STATE_FILE] ? decodeServerState(files[SERVER_STATE_FILE]) : [],
      files[EMA_ADAPTER_FILE] ? readSafetensors(files[EMA_ADAPTER_FILE]).tensors : null,
    ),
  };
}
