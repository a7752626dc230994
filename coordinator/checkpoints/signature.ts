// Manifest signatures: each version directory holds manifest.sig next to manifest.json.
//
// The signed message is exactly the bytes
//
//     "fedtune/manifest/v1" 0x00 || <bytes of manifest.json as written>
//
// (the ASCII domain tag, one NUL byte, then the manifest file byte for byte), signed with Ed25519
// (nacl.sign.detached semantics; computed by proto/crypto/ed25519.ts, which gives the same bytes). The tag keeps a manifest signature from ever being valid as a signature over
// anything else the coordinator's key signs. manifest.sig is stableJson of
//
//     { format: 'fedtune.manifest-sig/1', algorithm: 'ed25519', keyId, publicKey, manifestSha256, signature }
//
// publicKey and signature are base64 (32 and 64 bytes), manifestSha256 is the hex sha256 of manifest.json, and
// keyId is the first 16 hex digits of sha256(publicKey) — derived from the key, so a damaged keyId is detected
// too. Since manifest.json lists the sha256 of every other file and its parent's manifest hash, one signature
// covers the whole version and its place in the chain.
import type nacl from 'tweetnacl';
import { signDetached, verifyDetached } from '../../proto/crypto/ed25519';
import { createHash } from 'node:crypto';
import { keyId as shortKeyId } from '../../proto/crypto/key-file';
import { stableJson } from './atomic-fs';

export const MANIFEST_SIG_FILE = 'manifest.sig';
export const MANIFEST_SIG_FORMAT = 'fedtune.manifest-sig/1';
export const MANIFEST_SIG_DOMAIN = 'fedtune/manifest/v1\0';

/** What the checkpoint store needs to sign manifests; the secret key stays inside `sign`. */
export interface ManifestSigner {
  /** manifestKeyId(publicKey). */
  readonly keyId: string;
  /** Ed25519 public key (32 bytes). */
  readonly publicKey: Uint8Array;
  /** Ed25519 detached signature (64 bytes) over `message`. */
  sign(message: Uint8Array): Uint8Array;
}

/** The contents of manifest.sig. */
export interface ManifestSignature {
  readonly format: typeof MANIFEST_SIG_FORMAT;
  readonly algorithm: 'ed25519';
  readonly keyId: string;
  /** base64, 32 bytes. */
  readonly publicKey: string;
  /** hex sha256 of manifest.json. */
  readonly manifestSha256: string;
  /** base64, 64 bytes. */
  readonly signature: string;
}

const SIG_KEYS = ['algorithm', 'format', 'keyId', 'manifestSha256', 'publicKey', 'signature'];
const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** The id manifest.sig records for an Ed25519 public key. */
export const manifestKeyId = (publicKey: Uint8Array): string => shortKeyId(publicKey);

/** The exact bytes that are signed for a manifest. */
export function manifestSigningMessage(manifestBytes: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(MANIFEST_SIG_DOMAIN, 'utf8'), manifestBytes]);
}

/** A signer from an Ed25519 key pair (the coordinator's `sign` keys). */
export function manifestSigner(keyPair: nacl.SignKeyPair): ManifestSigner {
  const secretKey = keyPair.secretKey;
  return {
    keyId: manifestKeyId(keyPair.publicKey),
    publicKey: keyPair.publicKey,
    sign: (message) => signDetached(message, secretKey),
  };
}

/** The text of manifest.sig for these manifest bytes. */
export function signManifest(manifestBytes: Uint8Array, signer: ManifestSigner): string {
  const sig: ManifestSignature = {
    format: MANIFEST_SIG_FORMAT,
    algorithm: 'ed25519',
    keyId: signer.keyId,
    publicKey: b64(signer.publicKey),
    manifestSha256: sha256(manifestBytes),
    signature: b64(signer.sign(manifestSigningMessage(manifestBytes))),
  };
  return stableJson(sig);
}

/** Strict base64 of exactly `len` bytes (re-encoding must give the same text), or null. */
export function decodeBase64(value: unknown, len: number): Uint8Array | null {
  if (typeof value !== 'string') return null;
  const b = Buffer.from(value, 'base64');
  return b.length === len && b64(b) === value ? new Uint8Array(b) : null;
}

/** A signed record's bytes as one JSON object, or what is wrong with them (manifest.sig, pruned.json). */
export function parseJsonObject(bytes: Uint8Array): { o: Record<string, unknown> } | { error: string } {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (e) {
    return { error: `not valid JSON (${(e as Error).message})` };
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { error: 'not a JSON object' };
  return { o: v as Record<string, unknown> };
}

/** Parses manifest.sig strictly: every field present, nothing extra, every value well-formed. */
export function parseManifestSignature(bytes: Uint8Array): { sig: ManifestSignature } | { error: string } {
  const parsed = parseJsonObject(bytes);
  if ('error' in parsed) return parsed;
  const o = parsed.o;
  const keys = Object.keys(o).sort();
  if (keys.join(',') !== SIG_KEYS.join(',')) return { error: `fields ${keys.join(', ')} are not ${SIG_KEYS.join(', ')}` };
  if (o.format !== MANIFEST_SIG_FORMAT) return { error: `format ${JSON.stringify(o.format)} is not ${MANIFEST_SIG_FORMAT}` };
  if (o.algorithm !== 'ed25519') return { error: `algorithm ${JSON.stringify(o.algorithm)} is not ed25519` };
  if (typeof o.keyId !== 'string' || !/^[0-9a-f]{16}$/.test(o.keyId)) return { error: 'keyId is not 16 hex digits' };
  if (typeof o.manifestSha256 !== 'string' || !/^[0-9a-f]{64}$/.test(o.manifestSha256)) return { error: 'manifestSha256 is not 64 hex digits' };
  if (!decodeBase64(o.publicKey, 32)) return { error: 'publicKey is not 32 bytes of base64' };
  if (!decodeBase64(o.signature, 64)) return { error: 'signature is not 64 bytes of base64' };
  return { sig: o as unknown as ManifestSignature };
}

/** Every way a well-formed manifest.sig can disagree with its manifest, checked independently. */
export interface SignatureCheck {
  readonly sig: ManifestSignature;
  readonly publicKey: Uint8Array;
  /** keyId is the id of publicKey. */
  readonly keyIdMatches: boolean;
  /** The Ed25519 signature verifies over the manifest bytes under the key manifest.sig names. */
  readonly signatureValid: boolean;
  /** manifestSha256 equals the sha256 of the manifest bytes. */
  readonly hashMatches: boolean;
  readonly actualSha256: string;
}

export function checkManifestSignature(sig: ManifestSignature, manifestBytes: Uint8Array): SignatureCheck {
  const publicKey = decodeBase64(sig.publicKey, 32)!; // parseManifestSignature checked it
  const signature = decodeBase64(sig.signature, 64)!;
  const actualSha256 = sha256(manifestBytes);
  return {
    sig,
    publicKey,
    keyIdMatches: sig.keyId === manifestKeyId(publicKey),
    signatureValid: verifyDetached(manifestSigningMessage(manifestBytes), signature, publicKey),
    hashMatches: sig.manifestSha256 === actualSha256,
    actualSha256,
  };
}

export const sameKey = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

/**
 * One sentence for the first thing wrong with a manifest.sig (for the store, which stops at the first
 * problem), or null when it is valid and, if `expected` is given, made with that key. The label names the file.
 */
export function signatureProblem(sigBytes: Uint8Array, manifestBytes: Uint8Array, versionLabel: string, expected?: ManifestSigner): string | null {
  const sigFile = `${versionLabel}/${MANIFEST_SIG_FILE}`;
  const parsed = parseManifestSignature(sigBytes);
  if ('error' in parsed) return `${sigFile}: not a ${MANIFEST_SIG_FORMAT} signature: ${parsed.error}`;
  const c = checkManifestSignature(parsed.sig, manifestBytes);
  if (expected && !sameKey(c.publicKey, expected.publicKey)) {
    return `${sigFile}: signed by key ${c.sig.keyId}, not by this coordinator's key ${expected.keyId}`;
  }
  if (!c.signatureValid && !c.hashMatches) {
    return `${versionLabel}/manifest.json: sha256 ${c.actualSha256} does not match the signed ${c.sig.manifestSha256} in ${MANIFEST_SIG_FILE}`;
  }
  if (!c.signatureValid) return `${sigFile}: ed25519 signature does not verify under key ${c.sig.keyId}`;
  if (!c.hashMatches) return `${sigFile}: manifestSha256 ${c.sig.manifestSha256} does not match manifest.json's sha256 ${c.actualSha256}`;
  if (!c.keyIdMatches) return `${sigFile}: keyId ${c.sig.keyId} is not the id of its publicKey (${manifestKeyId(c.publicKey)})`;
  return null;
}
