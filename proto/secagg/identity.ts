// Whose word a site takes for its peers' identity keys. The roster arrives from the coordinator, so a site that
// believed the roster's keys would seal its shares to whoever the coordinator says a peer is (issue 13 #2). A site
// checks each key against something the coordinator cannot forge: a certificate signed by the operator's key,
// which the site pins, or an allow-list file the site holds. 'coordinator' (the roster as sent) exists for
// simulations and tests; with it the coordinator remains the key authority.
import { ProtocolError, status } from '../errors';
import { signDetached, verifyDetached } from '../crypto/ed25519';
import { bytesEqual, DOMAIN, hashParts, hex } from './bytes';
import type { Roster } from './messages';

export type IdentityTrust =
  | { readonly kind: 'coordinator' }
  | { readonly kind: 'allowList'; readonly keys: Readonly<Record<string, Uint8Array>> }
  | { readonly kind: 'operator'; readonly publicKey: Uint8Array; readonly runId: string };

/** What the operator's certificate for one site covers: the run, the site's id and its Ed25519 public key. */
export function identityCertDigest(runId: string, clientId: string, publicKey: Uint8Array): Uint8Array {
  return hashParts(DOMAIN.identityCert, runId, clientId, publicKey);
}

/** The operator (offline, with its own key) certifies that `publicKey` is `clientId`'s identity in `runId`. */
export function certifyIdentity(operatorSecretKey: Uint8Array, runId: string, clientId: string, publicKey: Uint8Array): Uint8Array {
  return signDetached(identityCertDigest(runId, clientId, publicKey), operatorSecretKey);
}

const refuse = (msg: string): ProtocolError => new ProtocolError(status.UNAUTHENTICATED, `secagg client: ${msg}`);

// Certificates that verified, by the exact bytes checked (operator key, digest, signature). A certificate covers
// (run, site, key), so a site sees the same bytes every round of a run: it verifies each peer's certificate once
// per run instead of once per round (~100 Ed25519 checks a round at N = 100). Ed25519 verification is
// deterministic, so a remembered success is the answer a new check would give; failures are not remembered.
const certified = new Set<string>();

function certificateValid(operatorKey: Uint8Array, digest: Uint8Array, cert: Uint8Array): boolean {
  const id = hex(operatorKey) + hex(digest) + hex(cert);
  if (certified.has(id)) return true;
  if (!verifyDetached(digest, cert, operatorKey)) return false;
  if (certified.size >= 65536) certified.clear();
  certified.add(id);
  return true;
}

/** Throws UNAUTHENTICATED unless every id's identity key in the roster is one the site trusts. */
export function checkRosterIdentities(trust: IdentityTrust, roster: Roster, ids: readonly string[]): void {
  if (trust.kind === 'coordinator') return;
  for (const id of ids) {
    const key = roster.identityKeys[id];
    if (!key) throw refuse(`roster carries no identity key for ${id}`);
    if (trust.kind === 'allowList') {
      const pinned = trust.keys[id];
      if (!pinned) throw refuse(`${id} is not in this site's allow-list of identity keys`);
      if (!bytesEqual(pinned, key)) throw refuse(`the roster's identity key for ${id} is not the one this site trusts`);
    } else {
      const cert = roster.certificates?.[id];
      if (!cert || !certificateValid(trust.publicKey, identityCertDigest(trust.runId, id, key), cert)) {
        throw refuse(`the roster's identity key for ${id} has no valid certificate from the pinned roster key`);
      }
    }
  }
}
