// Secret key files: written once with owner-only permissions (0600 in a 0700 directory) and refused on load
// when anyone else could read them, as ssh does. Keys are never logged; only their public halves and ids are.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';

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

/**
 * Reads a JSON key file, refusing one that group or others can read (POSIX only), or null when it does not
 * exist. The permission check is skipped on Windows, where modes do not carry this meaning.
 */
export async function readSecretJson(file: string): Promise<Record<string, unknown> | null> {
  let st;
  try {
    st = await fs.stat(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    throw new KeyFileError(`permissions ${(st.mode & 0o777).toString(8).padStart(4, '0')} for ${file} are too open: a secret key file must be readable by its owner only (chmod 600)`);
  }
  try {
    const v: unknown = JSON.parse(await fs.readFile(file, 'utf8'));
    if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Record<string, unknown>;
  } catch (e) {
    throw new KeyFileError(`${file} is not a valid key file: ${(e as Error).message}`);
  }
}

/** Creates a key file exclusively (never overwrites an existing key) with mode 0600, its directory 0700. */
export async function writeSecretJson(file: string, value: Record<string, unknown>): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const fh = await fs.open(file, 'wx', 0o600);
  try {
    await fh.writeFile(JSON.stringify(value, null, 2) + '\n');
    await fh.sync();
  } finally {
    await fh.close();
  }
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
