// The SecAgg messages as plain interfaces (bytes as Uint8Array), to be mirrored 1:1 by protobuf messages, and
// their sizes on the wire (payload bytes plus ~2 bytes of tag/length per field, as protobuf would add).

/** Stage 1, client → server: two fresh X25519 public keys signed by the client's Ed25519 identity. */
export interface Advertisement {
  readonly clientId: string;
  readonly encPublicKey: Uint8Array;
  readonly maskPublicKey: Uint8Array;
  readonly signature: Uint8Array;
}

/**
 * Server → clients after stage 1: U1's advertisements (sorted by id) and their identity public keys, with the
 * operator's certificate for each key when the run has one (identity.ts: what a site trusts).
 */
export interface Roster {
  readonly advertisements: readonly Advertisement[];
  readonly identityKeys: Readonly<Record<string, Uint8Array>>;
  readonly certificates?: Readonly<Record<string, Uint8Array>>;
}

/** One holder's pair of shares (b_u and mask sk), sealed to it, with the dealer's commitments to both. */
export interface SealedShares {
  readonly to: string;
  readonly ciphertext: Uint8Array;
  readonly bCommitment: Uint8Array;
  readonly skCommitment: Uint8Array;
}

/** Stage 2, client → server: sealed shares for every holder (its neighbours and itself), H(b_u), signature. */
export interface ShareKeysMessage {
  readonly from: string;
  readonly seedHash: Uint8Array;
  readonly shares: readonly SealedShares[];
  readonly signature: Uint8Array;
}

export interface RoutedShare {
  readonly from: string;
  readonly ciphertext: Uint8Array;
  readonly bCommitment: Uint8Array;
  readonly skCommitment: Uint8Array;
}

/** Server → one client after stage 2: U2 and the shares dealt to it by members of U2. */
export interface RoutedShares {
  readonly u2: readonly string[];
  readonly shares: readonly RoutedShare[];
}

/** Server → survivors after stage 3: the lists each survivor signs, U3 (sent masked input) and U2 \ U3, sorted. */
export interface ConsistencyCheck {
  readonly survivors: readonly string[];
  readonly dropped: readonly string[];
}

/** Stage 4a, client → server: the client's identity signature over (session id, U2, U3) (consistencyDigest). */
export interface ConsistencySignature {
  readonly from: string;
  readonly signature: Uint8Array;
}

/**
 * Server → signers after the consistency round: the same lists and the signatures it collected over them. A site
 * reveals only when enough members of U3 signed exactly the lists it signed (Bonawitz et al., round 4).
 */
export interface UnmaskRequest extends ConsistencyCheck {
  readonly signatures: readonly ConsistencySignature[];
}

export interface RevealedShare {
  readonly of: string;
  readonly share: Uint8Array;
}

/** Stage 4, client → server: b-shares of survivors and mask-sk shares of dropped clients, never both for one. */
export interface UnmaskResponse {
  readonly from: string;
  readonly bShares: readonly RevealedShare[];
  readonly skShares: readonly RevealedShare[];
}

const F = 2; // per-field protobuf overhead (tag + length), close enough for fields under 128 bytes
const str = (s: string): number => Buffer.byteLength(s, 'utf8') + F;
const bytes = (b: Uint8Array): number => b.length + F;
const revealed = (r: RevealedShare): number => str(r.of) + bytes(r.share) + F;

export const wireBytes = {
  advertisement: (a: Advertisement): number => str(a.clientId) + bytes(a.encPublicKey) + bytes(a.maskPublicKey) + bytes(a.signature),
  roster: (r: Roster): number =>
    r.advertisements.reduce((s, a) => s + wireBytes.advertisement(a) + F, 0) +
    Object.entries(r.identityKeys).reduce((s, [id, k]) => s + str(id) + bytes(k) + F, 0) +
    Object.entries(r.certificates ?? {}).reduce((s, [id, k]) => s + str(id) + bytes(k) + F, 0),
  shareKeys: (m: ShareKeysMessage): number =>
    str(m.from) +
    bytes(m.seedHash) +
    bytes(m.signature) +
    m.shares.reduce((s, x) => s + str(x.to) + bytes(x.ciphertext) + bytes(x.bCommitment) + bytes(x.skCommitment) + F, 0),
  routedShares: (r: RoutedShares): number =>
    r.u2.reduce((s, id) => s + str(id), 0) +
    r.shares.reduce((s, x) => s + str(x.from) + bytes(x.ciphertext) + bytes(x.bCommitment) + bytes(x.skCommitment) + F, 0),
  /** A masked (or plain) vector: 4 bytes per element plus the client id. */
  vector: (clientId: string, length: number): number => str(clientId) + 4 * length + F,
  consistencyCheck: (r: ConsistencyCheck): number => [...r.survivors, ...r.dropped].reduce((s, id) => s + str(id), 0),
  consistencySignature: (c: ConsistencySignature): number => str(c.from) + bytes(c.signature),
  unmaskRequest: (r: UnmaskRequest): number => wireBytes.consistencyCheck(r) + r.signatures.reduce((s, c) => s + wireBytes.consistencySignature(c) + F, 0),
  unmaskResponse: (r: UnmaskResponse): number => str(r.from) + [...r.bShares, ...r.skShares].reduce((s, x) => s + revealed(x), 0),
};
