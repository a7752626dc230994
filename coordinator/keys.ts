// The coordinator's long-term keys, in one owner-only file (default <run>/keys/coordinator.json):
//   - Ed25519 (`sign`): signs every checkpoint manifest (manifest.sig), so `fedtune verify` can check the chain;
//   - X25519 (`box`): clients seal their uploads to its public half (proto/crypto/sealed-upload.ts).
// Created on first start; the secret halves never leave this module's callers and are never logged.
import nacl from 'tweetnacl';
import { KeyFileError, checkEd25519Secret, checkStoredPublic, decodeKey, encodeKey, keyId, readSecretJson, writeSecretJson } from '../proto/crypto/key-file';
import type { CrashHook } from '../proto/durable-file';

export const COORDINATOR_KEY_FORMAT = 'fedtune.coordinator-key/1';

export interface CoordinatorKeys {
  readonly sign: nacl.SignKeyPair;
  readonly box: nacl.BoxKeyPair;
  /** Short id of both public keys; uploads name it so a rotated key is refused with a clear message. */
  readonly keyId: string;
}

function fromSecrets(signSecret: Uint8Array, boxSecret: Uint8Array): CoordinatorKeys {
  const sign = nacl.sign.keyPair.fromSecretKey(signSecret);
  const box = nacl.box.keyPair.fromSecretKey(boxSecret);
  return { sign, box, keyId: keyId(sign.publicKey, box.publicKey) };
}

/** What to do with a key file that holds no key: the run's signed versions can only be continued with it. */
const ADVICE =
  'restore it from a backup if any version of this run was committed (every version is signed with this key, and a coordinator with another key refuses to continue them); if none was, move it aside and start again to create a new key';

/**
 * Loads the key file; null when there is none. Never creates one: what reads a run's key without being its
 * coordinator (`fedtune checkpoints prune --apply`) must not leave a new key behind, even if the file vanished
 * after it looked.
 */
export async function loadCoordinatorKeys(file: string): Promise<CoordinatorKeys | null> {
  const j = await readSecretJson(file, ADVICE);
  if (!j) return null;
  if (j.format !== COORDINATOR_KEY_FORMAT) throw new KeyFileError(`${file}: format ${JSON.stringify(j.format)} is not ${COORDINATOR_KEY_FORMAT}`);
  const signSecret = decodeKey(j.signSecretKey, 64, `${file}: signSecretKey`);
  checkEd25519Secret(signSecret, `${file}: signSecretKey`);
  const keys = fromSecrets(signSecret, decodeKey(j.boxSecretKey, 32, `${file}: boxSecretKey`));
  checkStoredPublic(j.signPublicKey, keys.sign.publicKey, `${file}: signPublicKey`);
  checkStoredPublic(j.boxPublicKey, keys.box.publicKey, `${file}: boxPublicKey`);
  // The Ed25519 secret key embeds its public half; a file edited by hand could disagree with itself.
  if (typeof j.keyId === 'string' && j.keyId !== keys.keyId) throw new KeyFileError(`${file}: keyId ${j.keyId} does not match its keys (${keys.keyId})`);
  return keys;
}

/**
 * Loads the key file, or creates it with fresh keys when it does not exist (atomically: a crash during the
 * first start leaves no file or a complete one). `hook` is a test seam (proto/durable-file.ts stepsFor).
 */
export async function loadOrCreateCoordinatorKeys(file: string, hook?: CrashHook): Promise<CoordinatorKeys> {
  const loaded = await loadCoordinatorKeys(file);
  if (loaded) return loaded;
  const keys = fromSecrets(nacl.sign.keyPair().secretKey, nacl.box.keyPair().secretKey);
  await writeSecretJson(
    file,
    {
      format: COORDINATOR_KEY_FORMAT,
      keyId: keys.keyId,
      signPublicKey: encodeKey(keys.sign.publicKey),
      boxPublicKey: encodeKey(keys.box.publicKey),
      signSecretKey: encodeKey(keys.sign.secretKey),
      boxSecretKey: encodeKey(keys.box.secretKey),
    },
    hook,
  );
  return keys;
}
