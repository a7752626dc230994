// A site's long-term identity: an Ed25519 key pair in an owner-only file, created on first start. The
// coordinator admits the public key (allow-list or a single-use join token) and every upload is signed with it.
import { rename } from 'node:fs/promises';
import nacl from 'tweetnacl';
import { KeyFileError, checkEd25519Secret, checkStoredPublic, decodeKey, encodeKey, keyId, readSecretJson, writeSecretJson } from '../proto/crypto/key-file';
import type { CrashHook } from '../proto/durable-file';

export const IDENTITY_FORMAT = 'fedtune.client-identity/1';

export interface ClientIdentity {
  readonly publicKey: Uint8Array;
  readonly secretKey: Uint8Array;
  /** Short id of the public key, for logs. */
  readonly keyId: string;
}

export function identityFromSecretKey(secretKey: Uint8Array): ClientIdentity {
  const kp = nacl.sign.keyPair.fromSecretKey(secretKey);
  return { publicKey: kp.publicKey, secretKey: kp.secretKey, keyId: keyId(kp.publicKey) };
}

/** A deterministic identity from a 32-byte seed (tests and simulations; real sites use a key file). */
export function identityFromSeed(seed: Uint8Array): ClientIdentity {
  return identityFromSecretKey(nacl.sign.keyPair.fromSeed(seed).secretKey);
}

/**
 * Loads the identity file, or creates it with a fresh key pair when it does not exist (atomically: a crash
 * leaves no file or a complete one). `hook` is a test seam (proto/durable-file.ts stepsFor).
 */
export async function loadOrCreateIdentity(file: string, hook?: CrashHook): Promise<ClientIdentity> {
  const j = await readSecretJson(file);
  if (j) {
    if (j.format !== IDENTITY_FORMAT) throw new KeyFileError(`${file}: format ${JSON.stringify(j.format)} is not ${IDENTITY_FORMAT}`);
    const secret = decodeKey(j.secretKey, 64, `${file}: secretKey`);
    checkEd25519Secret(secret, `${file}: secretKey`);
    const id = identityFromSecretKey(secret);
    checkStoredPublic(j.publicKey, id.publicKey, `${file}: publicKey`);
    return id;
  }
  const id = identityFromSecretKey(nacl.sign.keyPair().secretKey);
  await writeSecretJson(file, { format: IDENTITY_FORMAT, keyId: id.keyId, publicKey: encodeKey(id.publicKey), secretKey: encodeKey(id.secretKey) }, hook);
  return id;
}

/**
 * A voluntary key rotation (or the first step after a compromise): the current key file is moved aside to
 * `<file>.<keyId>.retired` (still owner-only; the site keeps it until the operator has enrolled the new key, then
 * deletes it) and a fresh key pair is created at `file`. The file must exist and load: rotating a key nobody can
 * read would hide the problem. The coordinator keeps admitting the old key until the operator acts
 * (`fedtune enroll rotate`, or `revoke` and a new token), so a site can rotate first and restart after.
 */
export async function rotateIdentity(file: string): Promise<{ old: ClientIdentity; fresh: ClientIdentity; retiredFile: string }> {
  if ((await readSecretJson(file)) === null)
    throw new KeyFileError(`${file} does not exist: there is no identity to rotate (fedtune-site identity <file> creates one)`);
  const old = await loadOrCreateIdentity(file);
  const retiredFile = `${file}.${old.keyId}.retired`;
  await rename(file, retiredFile);
  const fresh = await loadOrCreateIdentity(file);
  return { old, fresh, retiredFile };
}
