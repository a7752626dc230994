// SecAgg messages between their wire (protobuf) and core (proto/secagg/messages.ts) forms. Field by field,
// no logic: validation lives in SecAggClient and SecAggServer, which see exactly what arrived.
import type { SecAggAdvertisement, SecAggAdvertisement__Output } from '../generated/fedtune/v1/SecAggAdvertisement';
import type { SecAggRoster, SecAggRoster__Output } from '../generated/fedtune/v1/SecAggRoster';
import type { SecAggRoutedShares, SecAggRoutedShares__Output } from '../generated/fedtune/v1/SecAggRoutedShares';
import type { SecAggSettings, SecAggSettings__Output } from '../generated/fedtune/v1/SecAggSettings';
import type { SecAggShareKeys, SecAggShareKeys__Output } from '../generated/fedtune/v1/SecAggShareKeys';
import type { SecAggUnmaskRequest, SecAggUnmaskRequest__Output } from '../generated/fedtune/v1/SecAggUnmaskRequest';
import type { SecAggConsistencyCheck, SecAggConsistencyCheck__Output } from '../generated/fedtune/v1/SecAggConsistencyCheck';
import type { SecAggConsistencySignature, SecAggConsistencySignature__Output } from '../generated/fedtune/v1/SecAggConsistencySignature';
import type { SecAggUnmaskResponse, SecAggUnmaskResponse__Output } from '../generated/fedtune/v1/SecAggUnmaskResponse';
import type { SecAggRoundConfig } from './config';
import type { Advertisement, ConsistencyCheck, ConsistencySignature, Roster, RoutedShares, ShareKeysMessage, UnmaskRequest, UnmaskResponse } from './messages';

const b = (x: Uint8Array | null | undefined): Uint8Array => new Uint8Array(x ?? []);

export function settingsToWire(c: SecAggRoundConfig): SecAggSettings {
  return {
    round_tag: c.roundTag,
    selected: [...c.selected],
    threshold: c.threshold,
    graph: c.graph.kind,
    k: c.graph.kind === 'harary' ? c.graph.k : 0,
    clip_norm: c.clipNorm,
    weight_cap: c.weightCap,
    max_clients: c.maxClients,
    include: [...c.include],
    vector_length: c.vectorLength,
    noise_multiplier: c.noiseMultiplier ?? 0,
    clip_count_noise: c.clipCountNoise ?? 0,
  };
}

/** The round config a client rebuilds from its task; baseManifestSha256 comes from the task itself. */
export function settingsFromWire(s: SecAggSettings__Output, baseManifestSha256: string): SecAggRoundConfig {
  return {
    roundTag: s.round_tag,
    baseManifestSha256,
    selected: [...s.selected],
    threshold: s.threshold,
    graph: s.graph === 'harary' ? { kind: 'harary', k: s.k } : { kind: 'full' },
    clipNorm: s.clip_norm,
    weightCap: s.weight_cap,
    maxClients: s.max_clients,
    include: [...s.include],
    vectorLength: s.vector_length,
    ...(s.noise_multiplier ? { noiseMultiplier: s.noise_multiplier } : {}),
    ...(s.clip_count_noise ? { clipCountNoise: s.clip_count_noise } : {}),
  };
}

export const adToWire = (a: Advertisement): SecAggAdvertisement => ({
  client_id: a.clientId,
  enc_public_key: a.encPublicKey,
  mask_public_key: a.maskPublicKey,
  signature: a.signature,
});
export const adFromWire = (a: SecAggAdvertisement__Output | null | undefined): Advertisement => ({
  clientId: a?.client_id ?? '',
  encPublicKey: b(a?.enc_public_key),
  maskPublicKey: b(a?.mask_public_key),
  signature: b(a?.signature),
});

export const rosterToWire = (taskId: string, r: Roster): SecAggRoster => ({
  task_id: taskId,
  advertisements: r.advertisements.map(adToWire),
  identity_keys: Object.fromEntries(Object.entries(r.identityKeys).map(([k, v]) => [k, Buffer.from(v)])),
  certificates: Object.fromEntries(Object.entries(r.certificates ?? {}).map(([k, v]) => [k, Buffer.from(v)])),
});
export const rosterFromWire = (r: SecAggRoster__Output): Roster => ({
  advertisements: r.advertisements.map(adFromWire),
  identityKeys: Object.fromEntries(Object.entries(r.identity_keys).map(([k, v]) => [k, b(v)])),
  certificates: Object.fromEntries(Object.entries(r.certificates ?? {}).map(([k, v]) => [k, b(v)])),
});

export const shareKeysToWire = (m: ShareKeysMessage): SecAggShareKeys => ({
  from: m.from,
  seed_hash: m.seedHash,
  signature: m.signature,
  shares: m.shares.map((s) => ({ to: s.to, ciphertext: s.ciphertext, b_commitment: s.bCommitment, sk_commitment: s.skCommitment })),
});
export const shareKeysFromWire = (m: SecAggShareKeys__Output | null | undefined): ShareKeysMessage => ({
  from: m?.from ?? '',
  seedHash: b(m?.seed_hash),
  signature: b(m?.signature),
  shares: (m?.shares ?? []).map((s) => ({ to: s.to, ciphertext: b(s.ciphertext), bCommitment: b(s.b_commitment), skCommitment: b(s.sk_commitment) })),
});

export const routedToWire = (taskId: string, r: RoutedShares): SecAggRoutedShares => ({
  task_id: taskId,
  u2: [...r.u2],
  shares: r.shares.map((s) => ({ from: s.from, ciphertext: s.ciphertext, b_commitment: s.bCommitment, sk_commitment: s.skCommitment })),
});
export const routedFromWire = (r: SecAggRoutedShares__Output): RoutedShares => ({
  u2: [...r.u2],
  shares: r.shares.map((s) => ({ from: s.from, ciphertext: b(s.ciphertext), bCommitment: b(s.b_commitment), skCommitment: b(s.sk_commitment) })),
});

export const consistencyCheckToWire = (taskId: string, r: ConsistencyCheck): SecAggConsistencyCheck => ({
  task_id: taskId,
  survivors: [...r.survivors],
  dropped: [...r.dropped],
});
export const consistencyCheckFromWire = (r: SecAggConsistencyCheck__Output): ConsistencyCheck => ({ survivors: [...r.survivors], dropped: [...r.dropped] });
export const signatureToWire = (c: ConsistencySignature): SecAggConsistencySignature => ({ from: c.from, signature: c.signature });
export const signatureFromWire = (c: SecAggConsistencySignature__Output | null | undefined): ConsistencySignature => ({
  from: c?.from ?? '',
  signature: b(c?.signature),
});

export const unmaskRequestToWire = (taskId: string, r: UnmaskRequest): SecAggUnmaskRequest => ({
  task_id: taskId,
  survivors: [...r.survivors],
  dropped: [...r.dropped],
  signatures: r.signatures.map(signatureToWire),
});
export const unmaskRequestFromWire = (r: SecAggUnmaskRequest__Output): UnmaskRequest => ({
  survivors: [...r.survivors],
  dropped: [...r.dropped],
  signatures: r.signatures.map(signatureFromWire),
});

export const unmaskResponseToWire = (r: UnmaskResponse): SecAggUnmaskResponse => ({
  from: r.from,
  b_shares: r.bShares.map((s) => ({ of: s.of, share: s.share })),
  sk_shares: r.skShares.map((s) => ({ of: s.of, share: s.share })),
});
export const unmaskResponseFromWire = (r: SecAggUnmaskResponse__Output | null | undefined): UnmaskResponse => ({
  from: r?.from ?? '',
  bShares: (r?.b_shares ?? []).map((s) => ({ of: s.of, share: b(s.share) })),
  skShares: (r?.sk_shares ?? []).map((s) => ({ of: s.of, share: b(s.share) })),
});
