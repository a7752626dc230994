// One client's side of one SecAgg round attempt (Bonawitz et al. CCS'17; sparse graph of Bell et al. 2020):
// advertise → shareKeys → receiveShares → maskedInput → consistency → unmask, each exactly once and in order.
// The client assumes the coordinator may deviate. It refuses anything that would reveal its input: a graph
// weaker than the minimum degree, identity keys it does not trust, too few peers, survivor lists that do not
// add up, lists other than the ones it signed, fewer than a quorum of signatures over its own lists (a
// coordinator showing holders different views, issue 13 #1), a second unmask request, and (through the
// ledger) a second sum over the same base checkpoint or the same update.
import { ProtocolError, status } from '../errors';
import { bytesEqual, cmpId, hex, isSortedUnique } from './bytes';
import { consistencyQuorum, holderCount, validateConfig, type SecAggRoundConfig } from './config';
import { holdersOf, isConnected, neighbours } from './graph';
import { signDetached, verifyDetached } from '../crypto/ed25519';
import { isCanonicalX25519 } from '../crypto/x25519';
import { agree, defaultRandom, isLowOrder, pairKey, shareEncryptionKey, x25519KeyPair, type KeyPair, type RandomSource } from './keys';
import type {
  Advertisement,
  ConsistencyCheck,
  ConsistencySignature,
  RevealedShare,
  Roster,
  RoutedShares,
  SealedShares,
  ShareKeysMessage,
  UnmaskRequest,
  UnmaskResponse,
} from './messages';
import { checkRosterIdentities, type IdentityTrust } from './identity';
import { SecAggLedger } from './ledger';
import { addMasks, type Mask } from './prg';
import { open, seal } from './seal';
import { advertisementDigest, computeSessionId, consistencyDigest, shareKeysDigest } from './session';
import { SHARE_BYTES, dealShares, seedCommitment, shareCommitment, shareX } from './shares';

type Stage = 'new' | 'advertised' | 'shared' | 'received' | 'masked' | 'signed' | 'unmasked';

export interface SecAggClientOptions {
  readonly config: SecAggRoundConfig;
  readonly clientId: string;
  /** The client's long-term Ed25519 identity secret key (tweetnacl format, 64 bytes). */
  readonly identitySecretKey: Uint8Array;
  /** Tests only: a deterministic source for keys, seeds and nonces. Defaults to crypto.randomBytes. */
  readonly random?: RandomSource;
  /** Whose word the client takes for peers' identity keys; default the roster's (the coordinator's word). */
  readonly trust?: IdentityTrust;
  /** The site's record across sessions (one per site, shared by its clients); default: this session only. */
  readonly ledger?: SecAggLedger;
  /** The run the site joined: with the base checkpoint, the ledger's key. */
  readonly runId?: string;
}

const refuse = (code: status, msg: string): ProtocolError => new ProtocolError(code, `secagg client: ${msg}`);

export class SecAggClient {
  readonly config: SecAggRoundConfig;
  readonly clientId: string;
  private readonly identitySecretKey: Uint8Array;
  private readonly random: RandomSource;
  private readonly trust: IdentityTrust;
  private readonly ledger: SecAggLedger;
  private readonly runId: string;
  private stage: Stage = 'new';
  private identityKeys: Readonly<Record<string, Uint8Array>> = {};
  /** The lists this client signed in the consistency round, and its signature. */
  private signed?: { check: ConsistencyCheck; signature: ConsistencySignature };
  private enc?: KeyPair;
  private mask?: KeyPair;
  private seed?: Uint8Array; // b_u
  private sessionIdValue?: Uint8Array;
  private ads = new Map<string, Advertisement>();
  private nbrs = new Map<string, Set<string>>();
  private u2: readonly string[] = [];
  /** Shares this client holds, by dealer: [b-share, sk-share]. */
  private held = new Map<string, [Uint8Array, Uint8Array]>();
  private answer?: { check: ConsistencyCheck; response: UnmaskResponse };
  /** X25519(enc sk, peer enc pk) by peer: computed once in shareKeys, reused in receiveShares. */
  private readonly dh = new Map<string, Uint8Array>();

  constructor(opts: SecAggClientOptions) {
    validateConfig(opts.config);
    if (!opts.config.selected.includes(opts.clientId)) throw refuse(status.INVALID_ARGUMENT, `${opts.clientId} is not selected for this round`);
    this.config = opts.config;
    this.clientId = opts.clientId;
    this.identitySecretKey = opts.identitySecretKey;
    this.random = opts.random ?? defaultRandom;
    this.trust = opts.trust ?? { kind: 'coordinator' };
    this.ledger = opts.ledger ?? new SecAggLedger();
    this.runId = opts.runId ?? '';
  }

  get sessionId(): Uint8Array | undefined {
    return this.sessionIdValue;
  }

  private encShared(peer: string): Uint8Array {
    let k = this.dh.get(peer);
    if (!k) this.dh.set(peer, (k = agree(this.enc!.secretKey, this.ads.get(peer)!.encPublicKey)));
    return k;
  }

  private expect(stage: Stage, what: string): void {
    if (this.stage !== stage) throw refuse(status.FAILED_PRECONDITION, `${what} is not allowed at stage '${this.stage}'`);
  }

  /** Stage 1: two fresh X25519 key pairs (share encryption, masks), signed by the identity key. */
  advertise(): Advertisement {
    this.expect('new', 'advertise');
    this.ledger.mayJoin(this.runId, this.config.baseManifestSha256);
    this.enc = x25519KeyPair(this.random);
    this.mask = x25519KeyPair(this.random);
    const digest = advertisementDigest(this.config, this.clientId, this.enc.publicKey, this.mask.publicKey);
    this.stage = 'advertised';
    return {
      clientId: this.clientId,
      encPublicKey: this.enc.publicKey,
      maskPublicKey: this.mask.publicKey,
      signature: signDetached(digest, this.identitySecretKey),
    };
  }

  /** Stage 2: check the roster, derive the session, deal b_u and the mask secret to the holders, sealed. */
  async shareKeys(roster: Roster): Promise<ShareKeysMessage> {
    this.expect('advertised', 'shareKeys');
    const cfg = this.config;
    const ids = roster.advertisements.map((a) => a.clientId);
    if (!isSortedUnique(ids)) throw refuse(status.INVALID_ARGUMENT, 'roster advertisements must be sorted by client id, without repeats');
    if (ids.length < cfg.threshold) throw refuse(status.FAILED_PRECONDITION, `roster has ${ids.length} clients, threshold is ${cfg.threshold}`);
    checkRosterIdentities(this.trust, roster, ids); // before any key of the roster is used
    for (const a of roster.advertisements) {
      if (!cfg.selected.includes(a.clientId)) throw refuse(status.PERMISSION_DENIED, `roster names ${a.clientId}, who is not selected`);
      const idk = roster.identityKeys[a.clientId];
      if (!idk || !verifyDetached(advertisementDigest(cfg, a.clientId, a.encPublicKey, a.maskPublicKey), a.signature, idk)) {
        throw refuse(status.UNAUTHENTICATED, `advertisement of ${a.clientId} has no valid signature for this round`);
      }
      if (isLowOrder(a.encPublicKey) || isLowOrder(a.maskPublicKey))
        throw refuse(status.INVALID_ARGUMENT, `advertisement of ${a.clientId} has a low-order key`);
      if (!isCanonicalX25519(a.encPublicKey) || !isCanonicalX25519(a.maskPublicKey))
        throw refuse(status.INVALID_ARGUMENT, `advertisement of ${a.clientId} has a non-canonical key`);
    }
    const mine = roster.advertisements.find((a) => a.clientId === this.clientId);
    if (!mine || !bytesEqual(mine.encPublicKey, this.enc!.publicKey) || !bytesEqual(mine.maskPublicKey, this.mask!.publicKey)) {
      throw refuse(status.FAILED_PRECONDITION, "roster does not carry this client's own advertisement");
    }
    if (holderCount(cfg.graph, ids.length) < cfg.threshold)
      throw refuse(status.FAILED_PRECONDITION, `too few holders per secret for threshold ${cfg.threshold}`);
    const sessionId = computeSessionId(cfg, roster.advertisements);
    this.identityKeys = Object.fromEntries(ids.map((id) => [id, roster.identityKeys[id]]));
    this.ads = new Map(roster.advertisements.map((a) => [a.clientId, a]));
    this.nbrs = neighbours(ids, cfg.graph, sessionId);
    const holders = holdersOf(this.nbrs, this.clientId);
    const seed = this.random(32);
    const [bShares, skShares] = [await dealShares(seed, holders, cfg.threshold), await dealShares(this.mask!.secretKey, holders, cfg.threshold)];
    const shares: SealedShares[] = holders.map((h, i) => {
      const key = shareEncryptionKey(sessionId, this.clientId, h, this.encShared(h));
      const plaintext = new Uint8Array(2 * SHARE_BYTES);
      plaintext.set(bShares[i], 0);
      plaintext.set(skShares[i], SHARE_BYTES);
      return {
        to: h,
        ciphertext: seal(key, sessionId, this.clientId, h, plaintext, this.random),
        bCommitment: shareCommitment(sessionId, this.clientId, h, 'b', bShares[i]),
        skCommitment: shareCommitment(sessionId, this.clientId, h, 'sk', skShares[i]),
      };
    });
    const seedHash = seedCommitment(sessionId, this.clientId, seed);
    this.seed = seed;
    this.sessionIdValue = sessionId;
    this.stage = 'shared';
    return {
      from: this.clientId,
      seedHash,
      shares,
      signature: signDetached(shareKeysDigest(sessionId, this.clientId, seedHash, shares), this.identitySecretKey),
    };
  }

  /** Stage 2 → 3: open and check the shares dealt to this client by every member of U2 that it holds for. */
  receiveShares(routed: RoutedShares): void {
    this.expect('shared', 'receiveShares');
    const cfg = this.config;
    const sid = this.sessionIdValue!;
    if (!isSortedUnique(routed.u2) || routed.u2.some((v) => !this.ads.has(v))) throw refuse(status.INVALID_ARGUMENT, 'U2 must be a sorted subset of U1');
    if (!routed.u2.includes(this.clientId)) throw refuse(status.FAILED_PRECONDITION, `${this.clientId} is not in U2`);
    const u2 = new Set(routed.u2);
    const myHolders = holdersOf(this.nbrs, this.clientId).filter((v) => u2.has(v));
    if (routed.u2.length < cfg.threshold || myHolders.length < cfg.threshold) {
      throw refuse(
        status.FAILED_PRECONDITION,
        `U2 has ${routed.u2.length} clients (${myHolders.length} of them hold this client's shares); threshold is ${cfg.threshold}`,
      );
    }
    // Dealers whose holders include this client are exactly its neighbours and itself (the graph is symmetric).
    const expected = new Set(myHolders);
    const held = new Map<string, [Uint8Array, Uint8Array]>();
    for (const s of routed.shares) {
      if (!expected.has(s.from) || held.has(s.from)) throw refuse(status.INVALID_ARGUMENT, `unexpected or repeated shares from ${s.from}`);
      const key = shareEncryptionKey(sid, s.from, this.clientId, this.encShared(s.from));
      const pt = open(key, sid, s.from, this.clientId, s.ciphertext);
      if (!pt || pt.length !== 2 * SHARE_BYTES) throw refuse(status.INVALID_ARGUMENT, `shares from ${s.from} do not decrypt for this session`);
      const b = pt.subarray(0, SHARE_BYTES);
      const sk = pt.subarray(SHARE_BYTES);
      const x = shareX(holdersOf(this.nbrs, s.from), this.clientId);
      if (
        b[SHARE_BYTES - 1] !== x ||
        sk[SHARE_BYTES - 1] !== x ||
        !bytesEqual(shareCommitment(sid, s.from, this.clientId, 'b', b), s.bCommitment) ||
        !bytesEqual(shareCommitment(sid, s.from, this.clientId, 'sk', sk), s.skCommitment)
      ) {
        throw refuse(status.INVALID_ARGUMENT, `invalid Shamir share from dealer ${s.from} for holder ${this.clientId}`);
      }
      held.set(s.from, [Uint8Array.from(b), Uint8Array.from(sk)]);
    }
    const missing = [...expected].filter((v) => !held.has(v));
    if (missing.length > 0) throw refuse(status.INVALID_ARGUMENT, `no shares from ${missing.join(', ')}, which are in U2`);
    this.held = held;
    this.dh.clear(); // the share-encryption secrets are done with
    this.u2 = [...routed.u2];
    this.stage = 'received';
  }

  /**
   * Stage 3: y = x + PRG(b_u) + Σ_{v ∈ nbrs(u) ∩ U2} ±PRG(k_uv) mod 2^32 (+ when u < v). `encoded` is not
   * modified unless `inPlace` (then y is `encoded` itself: no second 4-byte-per-value buffer, whose first touch
   * alone costs a plain site's whole upload on some hosts). `updateDigest` (encoding.ts) names the update for the
   * ledger: the same update is masked into one session only. Omitted, the encoded vector stands in (fresh
   * rounding makes it unique: simulations only).
   */
  maskedInput(encoded: Uint32Array, updateDigest?: Uint8Array, inPlace = false): Uint32Array {
    this.expect('received', 'maskedInput');
    if (encoded.length !== this.config.vectorLength)
      throw refuse(status.INVALID_ARGUMENT, `input of ${encoded.length} values, round expects ${this.config.vectorLength}`);
    const digest = updateDigest ? hex(updateDigest) : `encoded:${hex(new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength).subarray(0, 64))}`;
    this.ledger.recordMask(this.runId, this.config.baseManifestSha256, digest, hex(this.sessionIdValue!));
    const masks: Mask[] = [{ key: this.seed!, sign: 1 }];
    for (const v of this.u2) {
      if (v === this.clientId || !this.nbrs.get(this.clientId)!.has(v)) continue;
      const key = pairKey(this.sessionIdValue!, this.clientId, v, agree(this.mask!.secretKey, this.ads.get(v)!.maskPublicKey));
      masks.push({ key, sign: cmpId(this.clientId, v) < 0 ? 1 : -1 });
    }
    const y = inPlace ? encoded : encoded.slice();
    addMasks(y, masks); // all masks in one pass over y
    this.stage = 'masked';
    return y;
  }

  /**
   * Stage 4a: check the coordinator's lists against this client's view and sign (session id, U2, U3). A client
   * signs one pair of lists per session (a repeat of the same lists gets the same signature).
   */
  consistency(check: ConsistencyCheck): ConsistencySignature {
    if (this.signed) {
      if (sameLists(this.signed.check, check)) return this.signed.signature;
      throw refuse(status.FAILED_PRECONDITION, 'already signed different survivor lists in this session');
    }
    this.expect('masked', 'consistency');
    const { survivors, dropped } = check;
    if (!isSortedUnique(survivors) || !isSortedUnique(dropped)) throw refuse(status.INVALID_ARGUMENT, 'survivors and dropped must be sorted and unique');
    const s3 = new Set(survivors);
    if (dropped.some((v) => s3.has(v))) throw refuse(status.INVALID_ARGUMENT, 'a client is both a survivor and dropped');
    const union = [...survivors, ...dropped].sort(cmpId);
    if (union.length !== this.u2.length || union.some((v, i) => v !== this.u2[i])) throw refuse(status.INVALID_ARGUMENT, 'survivors ∪ dropped must equal U2');
    if (survivors.length < this.config.threshold)
      throw refuse(status.FAILED_PRECONDITION, `${survivors.length} survivors, threshold is ${this.config.threshold}`);
    if (!s3.has(this.clientId)) throw refuse(status.FAILED_PRECONDITION, `${this.clientId} sent its input but is not listed as a survivor`);
    if (!isConnected(survivors, this.nbrs))
      throw refuse(status.FAILED_PRECONDITION, "the survivors' graph is disconnected: unmasking would reveal partial sums");
    const signature: ConsistencySignature = {
      from: this.clientId,
      signature: signDetached(consistencyDigest(this.sessionIdValue!, survivors, dropped), this.identitySecretKey),
    };
    this.signed = { check: { survivors: [...survivors], dropped: [...dropped] }, signature };
    this.stage = 'signed';
    return signature;
  }

  /**
   * Stage 4b: b-shares for survivors, mask-sk shares for the dropped, only for the lists this client signed and
   * only with a quorum of valid signatures over them from distinct members of U3. Answered once per session
   * (a repeat gets the same answer) and once per (run, base checkpoint) (the ledger).
   */
  unmask(req: UnmaskRequest): UnmaskResponse {
    if (this.answer) {
      if (sameLists(this.answer.check, req)) return this.answer.response;
      throw refuse(status.FAILED_PRECONDITION, 'already answered a different unmask request in this round');
    }
    this.expect('signed', 'unmask');
    const mine = this.signed!.check;
    if (!sameLists(mine, req)) throw refuse(status.FAILED_PRECONDITION, "the unmask request's lists differ from the lists this client signed");
    const digest = consistencyDigest(this.sessionIdValue!, mine.survivors, mine.dropped);
    const s3 = new Set(mine.survivors);
    const signers = new Set<string>();
    const quorum = consistencyQuorum(this.config.threshold, this.ads.size);
    for (const sig of req.signatures) {
      if (signers.size >= quorum) break; // enough verified; the rest cannot change the answer
      if (!s3.has(sig.from)) throw refuse(status.INVALID_ARGUMENT, `consistency signature from ${sig.from}, who is not a survivor`);
      if (signers.has(sig.from)) throw refuse(status.INVALID_ARGUMENT, `two consistency signatures from ${sig.from}`);
      if (!verifyDetached(digest, sig.signature, this.identityKeys[sig.from])) {
        throw refuse(status.UNAUTHENTICATED, `consistency signature of ${sig.from} does not verify for these lists in this session`);
      }
      signers.add(sig.from);
    }
    if (signers.size < quorum)
      throw refuse(status.FAILED_PRECONDITION, `${signers.size} valid consistency signatures over these lists; ${quorum} needed before revealing shares`);
    this.ledger.recordReveal(this.runId, this.config.baseManifestSha256, hex(this.sessionIdValue!));
    const bShares: RevealedShare[] = [];
    const skShares: RevealedShare[] = [];
    for (const [v, [b, sk]] of [...this.held].sort((p, q) => cmpId(p[0], q[0]))) {
      if (s3.has(v)) bShares.push({ of: v, share: b });
      else skShares.push({ of: v, share: sk });
    }
    const response: UnmaskResponse = { from: this.clientId, bShares, skShares };
    this.answer = { check: mine, response };
    this.seed = undefined; // nothing else will ever be revealed
    this.held.clear();
    this.stage = 'unmasked';
    return response;
  }
}

const sameLists = (a: ConsistencyCheck, b: ConsistencyCheck): boolean =>
  a.survivors.length === b.survivors.length &&
  a.dropped.length === b.dropped.length &&
  a.survivors.every((v, i) => v === b.survivors[i]) &&
  a.dropped.every((v, i) => v === b.dropped[i]);
