// A version's record of what the run's retention policy removed from it (retention.ts decides, prune.ts removes):
// versions/vNNNNNN/pruned.json. The manifest and its signature always stay, so the chain still verifies end to end;
// the record names the files taken away, is bound to the version's manifest by its sha256, and is signed with the
// coordinator's key (the same Ed25519 key as manifest.sig, under its own domain tag), so `fedtune verify` can tell a
// file removed by policy from a file lost or deleted by hand. The signed message is
//
//     "fedtune/pruned/v1" 0x00 || stableJson(the record without its `signature` field)
//
// It is written before any file goes (atomically: temporary, fsync, rename, fsync the directory), so a crash
// between the two leaves a record naming files still present: `fedtune verify` checks such a file's hash as usual
// and the next prune finishes the removal. A record only ever grows.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { verifyDetached } from '../../proto/crypto/ed25519';
import { stableJson } from './atomic-fs';
import { decodeBase64, manifestKeyId, parseJsonObject, type ManifestSigner } from './signature';
import { ADAPTER_FILE, CheckpointIntegrityError, versionDirName } from './run-layout';
import { SERVER_STATE_FILE } from './server-state';
import { EMA_ADAPTER_CONFIG_FILE, EMA_ADAPTER_FILE } from './ema-files';

export const PRUNED_FILE = 'pruned.json';
export const PRUNED_FORMAT = 'fedtune.pruned/1';
const PRUNED_DOMAIN = 'fedtune/pruned/v1\0';

/** The weights retention may remove: the adapter and its average (always together), and the server state. */
export const ADAPTER_WEIGHTS: readonly string[] = [ADAPTER_FILE, EMA_ADAPTER_FILE, EMA_ADAPTER_CONFIG_FILE];
export const PRUNABLE: readonly string[] = [...ADAPTER_WEIGHTS, SERVER_STATE_FILE];

export interface PrunedSignature {
  readonly algorithm: 'ed25519';
  readonly keyId: string;
  /** base64, 32 bytes. */
  readonly publicKey: string;
  /** base64, 64 bytes. */
  readonly signature: string;
}

export interface PrunedRecord {
  readonly format: typeof PRUNED_FORMAT;
  readonly version: number;
  /** sha256 of the version's manifest.json: the record belongs to this manifest and no other. */
  readonly manifestSha256: string;
  /** The files removed (names as the manifest lists them), sorted. */
  readonly files: readonly string[];
  /** Why, in words (the policy in effect when the files went). */
  readonly reason: string;
  /** Absent when the run is not signed (a store without a signer). */
  readonly signature?: PrunedSignature;
}

const message = (r: PrunedRecord): Buffer => {
  const { signature: _s, ...body } = r;
  return Buffer.concat([Buffer.from(PRUNED_DOMAIN, 'utf8'), Buffer.from(stableJson(body), 'utf8')]);
};

/** The record's text, signed when a signer is given. */
export function encodePruned(r: Omit<PrunedRecord, 'format' | 'signature'>, signer: ManifestSigner | undefined): string {
  const body: PrunedRecord = { format: PRUNED_FORMAT, ...r, files: [...r.files].sort() };
  if (!signer) return stableJson(body);
  const signature: PrunedSignature = {
    algorithm: 'ed25519',
    keyId: signer.keyId,
    publicKey: Buffer.from(signer.publicKey).toString('base64'),
    signature: Buffer.from(signer.sign(message(body))).toString('base64'),
  };
  return stableJson({ ...body, signature });
}

/** Strictly parses a record; the error names what is wrong. Signature validity is checkPrunedSignature's. */
export function parsePruned(bytes: Uint8Array): { record: PrunedRecord } | { error: string } {
  const parsed = parseJsonObject(bytes);
  if ('error' in parsed) return parsed;
  const o = parsed.o;
  if (o.format !== PRUNED_FORMAT) return { error: `format ${JSON.stringify(o.format)} is not ${PRUNED_FORMAT}` };
  if (typeof o.version !== 'number' || !Number.isSafeInteger(o.version)) return { error: 'version is not an integer' };
  if (typeof o.manifestSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.manifestSha256)) return { error: 'manifestSha256 is not 64 hex digits' };
  if (!Array.isArray(o.files) || o.files.length === 0 || !o.files.every((f) => typeof f === 'string' && PRUNABLE.includes(f)))
    return { error: `files is not a non-empty list of ${PRUNABLE.join(', ')}` };
  if (typeof o.reason !== 'string') return { error: 'reason is not a string' };
  if (o.signature !== undefined) {
    const s = o.signature as Record<string, unknown> | null;
    if (
      !s ||
      typeof s !== 'object' ||
      s.algorithm !== 'ed25519' ||
      typeof s.keyId !== 'string' ||
      !decodeBase64(s.publicKey, 32) ||
      !decodeBase64(s.signature, 64)
    )
      return { error: 'signature is not {algorithm ed25519, keyId, publicKey, signature}' };
  }
  return { record: o as unknown as PrunedRecord };
}

/** null when the record's signature verifies under its key and keyId is that key's id; else what is wrong. */
export function prunedSignatureProblem(r: PrunedRecord): string | null {
  if (!r.signature) return 'unsigned';
  const publicKey = decodeBase64(r.signature.publicKey, 32)!;
  if (r.signature.keyId !== manifestKeyId(publicKey)) return `keyId ${r.signature.keyId} is not the id of its publicKey`;
  if (!verifyDetached(message(r), decodeBase64(r.signature.signature, 64)!, publicKey))
    return `ed25519 signature does not verify under its key ${r.signature.keyId}`;
  return null;
}

/** Reads a version directory's record; null when it has none. Throws CheckpointIntegrityError on an unreadable one. */
export async function readPruned(dir: string, version: number): Promise<PrunedRecord | null> {
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(path.join(dir, PRUNED_FILE));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const p = parsePruned(bytes);
  if ('error' in p) throw new CheckpointIntegrityError(`${versionDirName(version)}/${PRUNED_FILE}: ${p.error}`);
  if (p.record.version !== version) throw new CheckpointIntegrityError(`${versionDirName(version)}/${PRUNED_FILE}: names version ${p.record.version}`);
  return p.record;
}

/** The names a version's record says were removed (empty without a record). */
export async function prunedFiles(dir: string, version: number): Promise<Set<string>> {
  return new Set((await readPruned(dir, version))?.files ?? []);
}

const WHAT: Record<string, string> = {
  [ADAPTER_FILE]: 'its adapter',
  [SERVER_STATE_FILE]: 'its server optimiser state',
  [EMA_ADAPTER_FILE]: 'its averaged adapter',
};

/** A read or export of a version whose needed files retention removed. The message names no path. */
export class VersionPrunedError extends Error {
  override name = 'VersionPrunedError';
  constructor(
    readonly version: number,
    readonly files: readonly string[],
  ) {
    const what = [...new Set(files.map((f) => WHAT[f] ?? WHAT[EMA_ADAPTER_FILE]))].join(' and ');
    super(
      `${versionDirName(version)}: ${what} ${files.length > 1 ? 'were' : 'was'} removed by the run's retention policy (checkpoints.keepAdapters, keepEvery, keepServerState; recorded in its pruned.json, its manifest and signature kept), so it cannot be used here; \`fedtune verify\` names the versions retention pruned`,
    );
  }
}

/** The record's signing key, for a caller that checks it against a trusted one. */
export const prunedKey = (r: PrunedRecord): Uint8Array | null => (r.signature ? decodeBase64(r.signature.publicKey, 32) : null);
