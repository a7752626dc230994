// The operator's signed roster: one certificate per site, the operator's Ed25519 signature over (run id, client
// id, identity public key) (identity.ts). The operator makes it offline with a key only it holds (`fedtune
// roster sign`); the coordinator relays the certificates in every SecAgg roster; each site checks them against
// the operator key it pins. The coordinator can withhold a certificate, never forge one.
import { readFileSync } from 'node:fs';
import nacl from 'tweetnacl';
import { certifyIdentity, identityCertDigest } from './identity';
import { verifyDetached } from '../crypto/ed25519';

export const ROSTER_FORMAT = 'fedtune.secagg-roster/1';

export interface RosterEntry {
  readonly clientId: string;
  readonly name: string;
  readonly publicKey: Uint8Array;
}

export interface RosterFile {
  readonly format: typeof ROSTER_FORMAT;
  readonly runId: string;
  /** base64 Ed25519: what sites pin (`rosterKey`). */
  readonly operatorPublicKey: string;
  readonly sites: Record<string, { readonly name: string; readonly publicKey: string; readonly certificate: string }>;
}

const b64 = (b: Uint8Array): string => Buffer.from(b).toString('base64');

export function signRoster(operatorSecretKey: Uint8Array, runId: string, entries: readonly RosterEntry[]): RosterFile {
  const sites: RosterFile['sites'] = {};
  for (const e of entries)
    sites[e.clientId] = { name: e.name, publicKey: b64(e.publicKey), certificate: b64(certifyIdentity(operatorSecretKey, runId, e.clientId, e.publicKey)) };
  return { format: ROSTER_FORMAT, runId, operatorPublicKey: b64(nacl.sign.keyPair.fromSecretKey(operatorSecretKey).publicKey), sites };
}

/**
 * The certificates of a roster file for `runId`, by client id. Throws (naming no path) when the file is of
 * another format or run, or a certificate does not verify under the file's operator key: an operator mistake
 * is better found here than by every site refusing the round.
 */
export function readRosterCertificates(file: string, runId: string): Record<string, Uint8Array> {
  let j: Partial<RosterFile>;
  try {
    j = JSON.parse(readFileSync(file, 'utf8')) as Partial<RosterFile>;
  } catch (e) {
    throw new Error(`the roster file (secagg.rosterFile) cannot be read: ${(e as NodeJS.ErrnoException).code ?? 'not JSON'}`);
  }
  if (j.format !== ROSTER_FORMAT || typeof j.sites !== 'object' || j.sites === null || typeof j.operatorPublicKey !== 'string')
    throw new Error(`the roster file is not a ${ROSTER_FORMAT} file`);
  if (j.runId !== runId) throw new Error(`the roster file certifies run ${JSON.stringify(j.runId)}, not ${JSON.stringify(runId)}`);
  const op = new Uint8Array(Buffer.from(j.operatorPublicKey, 'base64'));
  const out: Record<string, Uint8Array> = {};
  for (const [clientId, s] of Object.entries(j.sites)) {
    const cert = new Uint8Array(Buffer.from(s.certificate, 'base64'));
    if (!verifyDetached(identityCertDigest(runId, clientId, new Uint8Array(Buffer.from(s.publicKey, 'base64'))), cert, op)) {
      throw new Error(`the roster file's certificate for ${s.name} does not verify under its operator key`);
    }
    out[clientId] = cert;
  }
  return out;
}
