// TLS credentials for FederationClient's `credentials` option, from PEM files: the CA that signed the
// coordinator's certificate (default: the system roots) and, for mutual TLS, this site's certificate and key.
//
//   new FederationClient({ address: 'coordinator.example:50051', name, trainer,
//                          credentials: tlsCredentials({ caFile: 'ca.pem', certFile: 'site.pem', keyFile: 'site.key' }) });
import { readFileSync } from 'node:fs';
import * as tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { ChannelSpec } from './download-range-worker';

export interface TlsClientOptions {
  /** PEM CA bundle to trust for the coordinator's certificate; default: the system roots. */
  readonly caFile?: string;
  /** PEM certificate chain this site presents (mutual TLS); needs keyFile. */
  readonly certFile?: string;
  /** PEM private key of certFile. */
  readonly keyFile?: string;
  /** Check the coordinator's certificate against this name instead of the host in the address. */
  readonly serverNameOverride?: string;
}

function read(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Error(`cannot read the TLS ${what} (${file}): ${(e as Error).message}`, { cause: e });
  }
}

/** The PEM material of credentials made by tlsCredentials(); nothing for any other credentials. */
export type TlsMaterial = NonNullable<ChannelSpec['tls']>;
const material = new WeakMap<grpc.ChannelCredentials, TlsMaterial>();
export const tlsMaterial = (c: grpc.ChannelCredentials): TlsMaterial | undefined => material.get(c);

/** Channel credentials for TLS (or mutual TLS when certFile and keyFile are given). Throws when a file is missing or does not parse. */
export function tlsCredentials(o: TlsClientOptions = {}): grpc.ChannelCredentials {
  if (Boolean(o.certFile) !== Boolean(o.keyFile)) throw new Error('a TLS client certificate needs its key: give certFile and keyFile together, or neither');
  const ca = o.caFile ? read('CA file', o.caFile) : null;
  // Node silently ignores a CA input that holds no certificate; refuse it so the mistake shows here.
  if (ca && !ca.includes('-----BEGIN CERTIFICATE-----')) throw new Error(`the TLS CA file (${o.caFile}) holds no PEM certificate`);
  const cert = o.certFile ? read('certificate', o.certFile) : null;
  const key = o.keyFile ? read('key', o.keyFile) : null;
  const override = o.serverNameOverride;
  const verify: grpc.VerifyOptions = override ? { checkServerIdentity: (_host: string, c: tls.PeerCertificate) => tls.checkServerIdentity(override, c) } : {};
  try {
    const creds = grpc.credentials.createSsl(ca, key, cert, verify);
    // Kept so that a parallel download's worker threads can make the same credentials (download-ranges.ts).
    material.set(creds, { ca, key, cert, ...(override ? { serverNameOverride: override } : {}) });
    return creds;
  } catch (e) {
    // OpenSSL's message names the problem ("key values mismatch", "no start line"), never the key's bytes.
    throw new Error(`unusable TLS files (${[o.caFile, o.certFile, o.keyFile].filter(Boolean).join(', ')}): ${(e as Error).message}`, { cause: e });
  }
}
