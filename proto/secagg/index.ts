// Wire-agnostic SecAgg / SecAgg+ core: the coordinator learns only the weighted sum of the clients' deltas.
export * from './config';
export * from './encoding';
export { checkAggregate } from './gate';
export * from './messages';
export { SecAggClient, type SecAggClientOptions } from './client';
export { SecAggServer } from './server';
export { addMask, Keystream } from './prg';
export { agree, isLowOrder, pairKey, shareEncryptionKey, x25519KeyPair, defaultRandom, type KeyPair, type RandomSource } from './keys';
export { neighbours, holdersOf, isConnected, sessionPermutation } from './graph';
export { dealShares, reconstruct, shareCommitment, seedCommitment, shareX, SHARE_BYTES, type ShareKind } from './shares';
export { computeSessionId, advertisementDigest, consistencyDigest, shareKeysDigest } from './session';
export { SecAggLedger, fileLedger } from './ledger';
export { certifyIdentity, checkRosterIdentities, identityCertDigest, type IdentityTrust } from './identity';
export { signDetached, verifyDetached } from '../crypto/ed25519';
