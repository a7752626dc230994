// What exactly gets signed. Every signature covers a domain string (so a signature made for one purpose can
// never be replayed as another) followed by the fields, each length-prefixed, so no two field lists share an
// encoding. Ed25519 over these bytes with tweetnacl-format keys, computed by node:crypto (ed25519.ts: the same
// signatures as nacl.sign.detached, many times faster); callers sign small headers, never megabytes.
import { signDetached, verifyDetached } from './ed25519';

export type Field = string | Uint8Array | number | boolean;

/** Domains in use; each names its purpose and version. */
export const DOMAINS = {
  join: 'fedtune/join/v2',
  upload: 'fedtune/upload/v1',
  uploadChunk: 'fedtune/upload-chunk/v1',
} as const;

/** domain \0, then per field: a type byte, a uint32 BE length and the bytes (numbers as uint64 BE). */
export function signedMessage(domain: string, fields: readonly Field[]): Uint8Array {
  const parts: Buffer[] = [Buffer.from(domain + '\0', 'utf8')];
  for (const f of fields) {
    let type: number;
    let body: Buffer;
    if (typeof f === 'string') {
      type = 1;
      body = Buffer.from(f, 'utf8');
    } else if (typeof f === 'number') {
      if (!Number.isSafeInteger(f) || f < 0) throw new RangeError(`cannot sign ${f}: only non-negative safe integers`);
      type = 2;
      body = Buffer.alloc(8);
      body.writeBigUInt64BE(BigInt(f));
    } else if (typeof f === 'boolean') {
      type = 3;
      body = Buffer.from([f ? 1 : 0]);
    } else {
      type = 4;
      body = Buffer.from(f.buffer, f.byteOffset, f.byteLength);
    }
    const head = Buffer.alloc(5);
    head[0] = type;
    head.writeUInt32BE(body.length, 1);
    parts.push(head, body);
  }
  return Buffer.concat(parts);
}

export function sign(domain: string, fields: readonly Field[], secretKey: Uint8Array): Uint8Array {
  return signDetached(signedMessage(domain, fields), secretKey);
}

export function verify(domain: string, fields: readonly Field[], signature: Uint8Array | null | undefined, publicKey: Uint8Array): boolean {
  if (!signature || signature.length !== 64 || publicKey.length !== 32) return false;
  return verifyDetached(signedMessage(domain, fields), signature, publicKey);
}

/** The coordinator's public keys as the site saw them in Hello (the wire's CoordinatorKeys). */
export interface JoinedCoordinator {
  readonly key_id: string;
  readonly sign_public_key: Uint8Array;
  readonly box_public_key: Uint8Array;
}

/**
 * The exact fields a site signs to join (under DOMAINS.join): the challenge binds it to one Hello, and the
 * coordinator's keys (as Hello presented them) to one coordinator, which checks they are its own: a coordinator
 * the site joins cannot relay the signature to another one and act there as the site (issue 13 #3).
 */
export function joinSignedFields(
  protocolVersion: number,
  runId: string,
  challenge: Uint8Array,
  clientName: string,
  publicKey: Uint8Array,
  backend: string,
  coordinator: JoinedCoordinator,
): Field[] {
  return [protocolVersion, runId, challenge, clientName, publicKey, backend, coordinator.key_id, coordinator.sign_public_key, coordinator.box_public_key];
}
