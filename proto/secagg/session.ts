// What signatures and the session id cover. The session id hashes the whole round configuration (round tag,
// base checkpoint, threshold, graph, quantisation, layout) and every signed advertisement of U1 in order, so
// keys, shares and masks derived from it cannot be replayed in another round, attempt or model.
import { DOMAIN, cmpId, hashParts } from './bytes';
import type { SecAggRoundConfig } from './config';
import type { Advertisement, SealedShares } from './messages';

const configParts = (c: SecAggRoundConfig): (string | number)[] => [
  c.roundTag,
  c.baseManifestSha256,
  c.threshold,
  c.graph.kind,
  c.graph.kind === 'harary' ? c.graph.k : 0,
  c.clipNorm,
  c.weightCap,
  c.maxClients,
  c.vectorLength,
  c.include.length,
  ...c.include,
  c.selected.length,
  ...c.selected,
  // Appended only when set, so rounds without noise keep the session ids they always had.
  ...(c.noiseMultiplier ? ['noise', c.noiseMultiplier] : []),
  ...(c.clipCountNoise ? ['count', c.clipCountNoise] : []),
];

/** Digest an advertisement's signature covers: the round (tag, checkpoint), the client and both keys. */
export function advertisementDigest(cfg: SecAggRoundConfig, clientId: string, encPublicKey: Uint8Array, maskPublicKey: Uint8Array): Uint8Array {
  return hashParts(DOMAIN.advertise, cfg.roundTag, cfg.baseManifestSha256, clientId, encPublicKey, maskPublicKey);
}

export function computeSessionId(cfg: SecAggRoundConfig, advertisements: readonly Advertisement[]): Uint8Array {
  const parts: (string | number | Uint8Array)[] = [...configParts(cfg), advertisements.length];
  for (const a of advertisements) parts.push(a.clientId, a.encPublicKey, a.maskPublicKey, a.signature);
  return hashParts(DOMAIN.session, ...parts);
}

/** Digest a ShareKeys message's signature covers: session, dealer, H(b_u) and every sealed share in order. */
export function shareKeysDigest(sessionId: Uint8Array, from: string, seedHash: Uint8Array, shares: readonly SealedShares[]): Uint8Array {
  const parts: (string | number | Uint8Array)[] = [sessionId, from, seedHash, shares.length];
  for (const s of shares) parts.push(s.to, s.ciphertext, s.bCommitment, s.skCommitment);
  return hashParts(DOMAIN.shareKeys, ...parts);
}

/** Digest a consistency signature covers: the session and both lists (U2 = U3 ∪ dropped, U3), each sorted. */
export function consistencyDigest(sessionId: Uint8Array, survivors: readonly string[], dropped: readonly string[]): Uint8Array {
  const u2 = [...survivors, ...dropped].sort(cmpId);
  return hashParts(DOMAIN.consistency, sessionId, u2.length, ...u2, survivors.length, ...survivors);
}
