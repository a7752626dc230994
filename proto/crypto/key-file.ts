// Secret key files: written once with owner-only permissions (0600 in a 0700 directory) and refused on load
// when anyone else could read them, as ssh does. Keys are never logged; only their public halves and ids are.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { createAtomically, removeTemps, stepsFor, type CrashHook } from '../durable-file';

export class KeyFileError extends Error {
  override name = 'KeyFileError';
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

/** Decodes a base64 field of exactly `len` bytes, or says which field of which file is wrong. */
export function decodeKey(value: unknown, len: number, what: string): Uint8Array {
  if (typeof value !== 'string') throw new KeyFileError(`${what} is missing`);
  const b = Buffer.from(value, 'base64');
  if (b.length !== len || b64(b) !== value) throw new KeyFileError(`${what} must be ${len} bytes of base64`);
  return new Uint8Array(b);
}

export const encodeKey = b64;

/** A short stable id for public keys (hex of a SHA-256 prefix), what logs and manifests show. */
export function keyId(...publicKeys: Uint8Array[]): string {
  const h = createHash('sha256');
  for (const k of publicKeys) h.update(k);
  return h.digest('hex').slice(0, 16);
}

/** Says what to do about a key file that exists but holds no usable key (the caller knows its role). */
const DEFAULT_ADVICE = 'move it aside and start again to create a new key (anything that trusted the old public key must then be given the new one)';

/**
 * Reads a JSON key file, refusing one that group or others can read (POSIX only), or null when it does not
 * exist. The permission check is skipped on Windows, where modes do not carry this meaning. Temporaries that
 * an interrupted createAtomically left beside it are deleted first. An empty or unparsable file is refused
 * with `advice` (what the operator should do) in the message: it is never overwritten here.
 */
export async function readSecretJson(file: string, advice = DEFAULT_ADVICE): Promise<Record<string, unknown> | null> {
  await removeTemps(file);
  let st;
  try {
    st = await fs.stat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  if (!st.isFile()) throw new KeyFileError(`${file} is not a regular file`);
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new KeyFileError(
      `permissions ${(st.mode & 0o777).toString(8).padStart(4, '0')} for ${file} are too open: a secret key file must be readable by its owner only (chmod 600)`,
    );
  }
  const text = await fs.readFile(file, 'utf8');
  // A 0-byte file is what a non-atomic first write left when killed (before writes were atomic); say so plainly.
  if (text.trim() === '')
    throw new KeyFileError(`${file} is empty (${st.size} bytes): a write of it was interrupted and it holds no key. To recover, ${advice}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new KeyFileError(`${file} is damaged: not valid JSON (${(e as Error).message}). To recover, ${advice}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new KeyFileError(`${file} is damaged: not a JSON object. To recover, ${advice}`);
  return v as Record<string, unknown>;
}

/**
 * Creates a key file with mode 0600 (its directory 0700), atomically and exclusively: it never overwrites an
 * existing key, and a crash at any point leaves either no file or the complete one, never a partial or empty
 * one (proto/durable-file.ts). `hook` is a test seam (see stepsFor).
 */
export async function writeSecretJson(file: string, value: Record<string, unknown>, hook?: CrashHook): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await createAtomically(file, JSON.stringify(value, null, 2) + '\n', stepsFor('key-file', hook), 0o600);
}

/**
 * A 64-byte Ed25519 secret key in tweetnacl's layout is seed ‖ public key. A file edited by hand (or damaged)
 * could pair a seed with another public half: signatures would then verify under neither. Refused here.
 */
export function checkEd25519Secret(secretKey: Uint8Array, what: string): void {
  const derived = nacl.sign.keyPair.fromSeed(secretKey.subarray(0, 32)).publicKey;
  if (Buffer.compare(Buffer.from(derived), Buffer.from(secretKey.subarray(32))) !== 0) {
    throw new KeyFileError(`${what}: the public half does not belong to the seed (the file was edited or damaged)`);
  }
}

/** A stored public key field, when present, must equal the one derived from the secret. */
export function checkStoredPublic(stored: unknown, derived: Uint8Array, what: string): void {
  if (stored === undefined) return;
  if (stored !== encodeKey(derived)) throw new KeyFileError(`${what} does not match the secret key in the same file`);
}
