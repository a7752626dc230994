// TLS on the coordinator's gRPC server, from the tls.* configuration keys: a server certificate, and mutual
// TLS when tls.clientCaFile is set. Only file paths are ever logged or recorded; PEM contents stay here.
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { TlsSettings } from './config-types';

/** off: plaintext; tls: server certificate only; mtls: clients must also present a certificate signed by tls.clientCaFile. */
export type TlsMode = 'off' | 'tls' | 'mtls';

export function tlsMode(t: TlsSettings): TlsMode {
  if (!t.certFile) return 'off';
  return t.clientCaFile ? 'mtls' : 'tls';
}

/** Problems with the tls.* keys, each naming its key; empty when they fit together and every file is readable. */
export function tlsProblems(t: TlsSettings): string[] {
  const problems: string[] = [];
  if (Boolean(t.certFile) !== Boolean(t.keyFile)) {
    const [set, unset] = t.certFile ? ['tls.certFile', 'tls.keyFile'] : ['tls.keyFile', 'tls.certFile'];
    problems.push(`${unset} must be set when ${set} is: the server certificate and its private key go together`);
  }
  if (t.clientCaFile && !t.certFile) problems.push('tls.clientCaFile needs tls.certFile and tls.keyFile: mutual TLS is TLS with a server certificate');
  for (const key of ['certFile', 'keyFile', 'clientCaFile'] as const) {
    const file = t[key];
    if (!file) continue;
    try {
      accessSync(file, constants.R_OK);
      if (!statSync(file).isFile()) throw new Error('not a regular file');
    } catch (e) {
      problems.push(`tls.${key} (${JSON.stringify(file)}) must be a readable file: ${(e as Error).message}`);
    }
  }
  return problems;
}

function read(key: keyof TlsSettings, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Error(`tls.${key} (${JSON.stringify(file)}): ${(e as Error).message}`, { cause: e });
  }
}

/** Parses one PEM input the way the TLS server will, so a bad file is reported with its key at start-up. */
function check(key: keyof TlsSettings, file: string, ctx: tls.SecureContextOptions): void {
  try {
    tls.createSecureContext(ctx);
  } catch (e) {
    throw new Error(`tls.${key} (${JSON.stringify(file)}) is not usable: ${(e as Error).message}`, { cause: e });
  }
}

/** Server credentials for the tls.* keys, or null when TLS is off. Throws an Error naming the key of a file that does not parse. */
export function serverCredentials(t: TlsSettings): grpc.ServerCredentials | null {
  if (tlsMode(t) === 'off') return null;
  const cert = read('certFile', t.certFile);
  const key = read('keyFile', t.keyFile);
  check('certFile', t.certFile, { cert });
  check('keyFile', t.keyFile, { key });
  check('keyFile', t.keyFile, { cert, key }); // "key values mismatch": the key does not belong to the certificate
  let ca: Buffer | null = null;
  if (t.clientCaFile) {
    ca = read('clientCaFile', t.clientCaFile);
    // Node ignores a CA input that holds no certificate; with mutual TLS that would refuse every client.
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`tls.clientCaFile (${JSON.stringify(t.clientCaFile)}) holds no PEM certificate`);
    check('clientCaFile', t.clientCaFile, { ca });
  }
  return grpc.ServerCredentials.createSsl(ca, [{ cert_chain: cert, private_key: key }], ca !== null);
}
