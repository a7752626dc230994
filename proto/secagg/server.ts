// The coordinator's side of one SecAgg round attempt. It routes sealed shares it cannot read, sums masked
// inputs as they arrive (O(m) memory), and in the end removes the survivors' self masks and the dropped
// clients' pair masks, learning only Σ x_u over the survivors U3. Every add* validates fully before it
// changes anything, so a rejected message leaves the state as it was; close* calls that cannot continue
// (fewer than t clients) throw ABORTED and end the attempt.
import { ProtocolError, status } from '../errors';
import nacl from 'tweetnacl';
import { bytesEqual, cmpId } from './bytes';
import { consistencyQuorum, holderCount, validateConfig, type SecAggRoundConfig } from './config';
import { holdersOf, isConnected, neighbours } from './graph';
import { verifyDetached } from '../crypto/ed25519';
import { isCanonicalX25519 } from '../crypto/x25519';
import { agree, isLowOrder, pairKey } from './keys';
import type {
  Advertisement,
  ConsistencyCheck,
  ConsistencySignature,
  RevealedShare,
  Roster,
  RoutedShares,
  ShareKeysMessage,
  UnmaskRequest,
  UnmaskResponse,
} from './messages';
import { MaskedSum, type MaskedFeed } from './masked-sum';
import { addMasks, type Mask } from './prg';
import { SEAL_OVERHEAD } from './seal';
import { advertisementDigest, computeSessionId, consistencyDigest, shareKeysDigest } from './session';
import { SHARE_BYTES, reconstruct, seedCommitment, shareCommitment, shareX } from './shares';

type Stage = 'advertise' | 'shareKeys' | 'maskedInput' | 'consistency' | 'unmask' | 'done' | 'aborted';

const err = (code: status, msg: string): ProtocolError => new ProtocolError(code, `secagg: ${msg}`);

export class SecAggServer {
  readonly config: SecAggRoundConfig;
  private readonly identityKeys: Readonly<Record<string, Uint8Array>>;
  private stageValue: Stage = 'advertise';
  private readonly ads = new Map<string, Advertisement>();
  private sid?: Uint8Array;
  private nbrs = new Map<string, Set<string>>();
  private readonly shareMsgs = new Map<string, ShareKeysMessage>();
  private u2: string[] = [];
  /** Σ y_u mod 2^32, fed chunk by chunk as masked uploads arrive (masked-sum.ts). */
  private readonly masked: MaskedSum;
  private readonly inputs = new Set<string>();
  private u3: string[] = [];
  private dropped: string[] = [];
  private readonly signatures = new Map<string, ConsistencySignature>();
  private readonly responders = new Set<string>();
  /** Operator certificates of the identity keys, relayed in the roster (identity.ts). */
  private readonly certificates?: Readonly<Record<string, Uint8Array>>;
  /** Revealed shares by dealer, then holder. */
  private readonly bShares = new Map<string, Map<string, Uint8Array>>();
  private readonly skShares = new Map<string, Map<string, Uint8Array>>();

  constructor(config: SecAggRoundConfig, identityKeys: Readonly<Record<string, Uint8Array>>, certificates?: Readonly<Record<string, Uint8Array>>) {
    validateConfig(config);
    this.config = config;
    this.identityKeys = identityKeys;
    this.certificates = certificates;
    this.masked = new MaskedSum(config.vectorLength);
  }

  get stage(): Stage {
    return this.stageValue;
  }
  get sessionId(): Uint8Array | undefined {
    return this.sid;
  }
  /** U3: the clients whose inputs the final sum covers (set by closeMaskedInput). */
  get survivors(): readonly string[] {
    return this.u3;
  }

  private expect(stage: Stage, what: string): void {
    if (this.stageValue !== stage) throw err(status.FAILED_PRECONDITION, `${what} is not accepted at stage '${this.stageValue}'`);
  }

  private abort(msg: string): never {
    this.stageValue = 'aborted';
    this.masked.drop();
    throw err(status.ABORTED, `round aborted: ${msg}`);
  }

  addAdvertisement(ad: Advertisement): void {
    this.expect('advertise', 'an advertisement');
    const idk = this.identityKeys[ad.clientId];
    if (!this.config.selected.includes(ad.clientId) || !idk) throw err(status.PERMISSION_DENIED, `${ad.clientId} is not selected for this round`);
    if (ad.encPublicKey.length !== 32 || ad.maskPublicKey.length !== 32 || ad.signature.length !== 64) {
      throw err(status.INVALID_ARGUMENT, `advertisement of ${ad.clientId}: keys must be 32 bytes and the signature 64`);
    }
    if (!verifyDetached(advertisementDigest(this.config, ad.clientId, ad.encPublicKey, ad.maskPublicKey), ad.signature, idk)) {
      throw err(status.UNAUTHENTICATED, `advertisement of ${ad.clientId}: signature does not verify for this round (${this.config.roundTag})`);
    }
    if (isLowOrder(ad.encPublicKey) || isLowOrder(ad.maskPublicKey) || !isCanonicalX25519(ad.encPublicKey) || !isCanonicalX25519(ad.maskPublicKey)) {
      throw err(status.INVALID_ARGUMENT, `advertisement of ${ad.clientId}: low-order public key (all-zero DH share) or a non-canonical encoding`);
    }
    if (this.ads.has(ad.clientId)) throw err(status.ALREADY_EXISTS, `${ad.clientId} already advertised keys in this round`);
    this.ads.set(ad.clientId, ad);
  }

  /** Ends stage 1: fixes U1, the session id and the graph. ABORTED when fewer than t clients advertised. */
  closeAdvertise(): Roster {
    this.expect('advertise', 'closing the advertise stage');
    const ids = [...this.ads.keys()].sort(cmpId);
    if (ids.length < this.config.threshold || holderCount(this.config.graph, ids.length) < this.config.threshold) {
      this.abort(`${ids.length} of ${this.config.selected.length} clients advertised keys; threshold is ${this.config.threshold}`);
    }
    const advertisements = ids.map((id) => this.ads.get(id)!);
    this.sid = computeSessionId(this.config, advertisements);
    this.nbrs = neighbours(ids, this.config.graph, this.sid);
    this.stageValue = 'shareKeys';
    const roster: Roster = { advertisements, identityKeys: Object.fromEntries(ids.map((id) => [id, this.identityKeys[id]])) };
    const certs = this.certificates;
    return certs ? { ...roster, certificates: Object.fromEntries(ids.filter((id) => certs[id]).map((id) => [id, certs[id]])) } : roster;
  }

  addShareKeys(msg: ShareKeysMessage): void {
    this.expect('shareKeys', 'a ShareKeys message');
    const from = msg.from;
    if (!this.ads.has(from)) throw err(status.PERMISSION_DENIED, `${from} did not advertise keys in this round`);
    const holders = holdersOf(this.nbrs, from);
    if (msg.shares.length !== holders.length || msg.shares.some((s, i) => s.to !== holders[i])) {
      throw err(status.INVALID_ARGUMENT, `ShareKeys from ${from}: shares must go to exactly its holders [${holders.join(', ')}] in order`);
    }
    for (const s of msg.shares) {
      if (s.ciphertext.length !== 2 * SHARE_BYTES + SEAL_OVERHEAD || s.bCommitment.length !== 32 || s.skCommitment.length !== 32) {
        throw err(status.INVALID_ARGUMENT, `ShareKeys from ${from}: wrong sizes in the shares for ${s.to}`);
      }
    }
    if (msg.seedHash.length !== 32) throw err(status.INVALID_ARGUMENT, `ShareKeys from ${from}: seed hash must be 32 bytes`);
    if (!verifyDetached(shareKeysDigest(this.sid!, from, msg.seedHash, msg.shares), msg.signature, this.identityKeys[from])) {
      throw err(status.UNAUTHENTICATED, `ShareKeys from ${from}: signature does not verify for this session`);
    }
    if (this.shareMsgs.has(from)) throw err(status.ALREADY_EXISTS, `${from} already sent its shares in this round`);
    this.shareMsgs.set(from, msg);
  }

  /**
   * Ends stage 2. U2 = senders, less any whose holders within U2 are fewer than t (their secrets could never be
   * rebuilt; dropping one can starve another, hence the loop). ABORTED when |U2| < t.
   */
  closeShareKeys(): { u2: string[]; routed: (clientId: string) => RoutedShares } {
    this.expect('shareKeys', 'closing the share-keys stage');
    const u2 = new Set(this.shareMsgs.keys());
    for (let changed = true; changed;) {
      changed = false;
      for (const v of [...u2]) {
        if (holdersOf(this.nbrs, v).filter((h) => u2.has(h)).length < this.config.threshold) {
          u2.delete(v);
          changed = true;
        }
      }
    }
    if (u2.size < this.config.threshold) this.abort(`${u2.size} clients in U2 (${this.shareMsgs.size} sent shares); threshold is ${this.config.threshold}`);
    this.u2 = [...u2].sort(cmpId);
    this.stageValue = 'maskedInput';
    const u2List = this.u2;
    const routed = (clientId: string): RoutedShares => {
      if (!u2.has(clientId)) throw err(status.PERMISSION_DENIED, `${clientId} is not in U2`);
      const shares = u2List
        .filter((v) => v === clientId || this.nbrs.get(clientId)!.has(v))
        .map((v) => {
          const s = this.shareMsgs.get(v)!.shares.find((x) => x.to === clientId)!;
          return { from: v, ciphertext: s.ciphertext, bCommitment: s.bCommitment, skCommitment: s.skCommitment };
        });
      return { u2: u2List, shares };
    };
    return { u2: [...u2List], routed };
  }

  /** Adds y_u to the running sum (mod 2^32); y is not kept. */
  addMaskedInput(clientId: string, y: Uint32Array): void {
    this.expect('maskedInput', 'a masked input');
    if (!this.u2.includes(clientId)) throw err(status.PERMISSION_DENIED, `${clientId} is not in U2`);
    if (y.length !== this.config.vectorLength)
      throw err(status.INVALID_ARGUMENT, `masked input from ${clientId} has ${y.length} values, expected ${this.config.vectorLength}`);
    const f = this.openMaskedInput(clientId);
    f.push(new Uint8Array(y.buffer, y.byteOffset, y.byteLength));
    this.acceptMaskedInput(clientId, f);
  }

  /**
   * A masked input streaming in: checked like addMaskedInput before any value, then its bytes go into the running
   * sum chunk by chunk (push, any split). It counts once acceptMaskedInput takes it; one that does not must be
   * taken back (abandon, then undo with the same bytes again) before finish() reads the sum.
   */
  openMaskedInput(clientId: string): MaskedFeed {
    this.expect('maskedInput', 'a masked input');
    if (!this.u2.includes(clientId)) throw err(status.PERMISSION_DENIED, `${clientId} is not in U2`);
    if (this.inputs.has(clientId)) throw err(status.ALREADY_EXISTS, `${clientId} already sent its masked input`);
    return this.masked.feed();
  }

  /** The streamed input counts: every value arrived while the masked-input stage is still open. */
  acceptMaskedInput(clientId: string, f: MaskedFeed): void {
    this.expect('maskedInput', 'a masked input');
    if (this.inputs.has(clientId)) throw err(status.ALREADY_EXISTS, `${clientId} already sent its masked input`);
    if (!f.complete) throw err(status.DATA_LOSS, `masked input from ${clientId} ends before its ${this.config.vectorLength} values`);
    f.accept();
    this.inputs.add(clientId);
  }

  /** Ends stage 3: U3 = senders of masked inputs. ABORTED if |U3| < t, a secret lacks t live holders, or G[U3] is disconnected. */
  closeMaskedInput(): ConsistencyCheck {
    this.expect('maskedInput', 'closing the masked-input stage');
    const u3 = this.u2.filter((v) => this.inputs.has(v));
    const s3 = new Set(u3);
    if (u3.length < this.config.threshold) this.abort(`${u3.length} masked inputs; threshold is ${this.config.threshold}`);
    const starved = this.u2.filter((v) => holdersOf(this.nbrs, v).filter((h) => s3.has(h)).length < this.config.threshold);
    if (starved.length > 0) this.abort(`fewer than ${this.config.threshold} live holders for the secrets of ${starved.join(', ')}`);
    if (!isConnected(u3, this.nbrs)) this.abort("the survivors' graph is disconnected");
    this.u3 = u3;
    this.dropped = this.u2.filter((v) => !s3.has(v));
    this.stageValue = 'consistency';
    return { survivors: [...u3], dropped: [...this.dropped] };
  }

  /** Stage 4a: a survivor's signature over (session id, U2, U3), checked against its identity key. */
  addConsistency(sig: ConsistencySignature): void {
    this.expect('consistency', 'a consistency signature');
    if (!this.u3.includes(sig.from)) throw err(status.PERMISSION_DENIED, `${sig.from} is not a survivor (U3)`);
    if (sig.signature.length !== 64 || !verifyDetached(consistencyDigest(this.sid!, this.u3, this.dropped), sig.signature, this.identityKeys[sig.from])) {
      throw err(status.UNAUTHENTICATED, `consistency signature of ${sig.from} does not verify for this session's lists`);
    }
    if (this.signatures.has(sig.from)) throw err(status.ALREADY_EXISTS, `${sig.from} already signed the lists`);
    this.signatures.set(sig.from, sig);
  }

  /** Signatures still needed before the unmask request can go out. */
  signaturesMissing(): number {
    return Math.max(0, consistencyQuorum(this.config.threshold, this.ads.size) - this.signatures.size);
  }

  /** Ends stage 4a: the unmask request carries every signature; ABORTED below the quorum. */
  closeConsistency(): UnmaskRequest {
    this.expect('consistency', 'closing the consistency stage');
    const quorum = consistencyQuorum(this.config.threshold, this.ads.size);
    if (this.signatures.size < quorum) this.abort(`${this.signatures.size} survivors signed the lists; ${quorum} needed`);
    this.stageValue = 'unmask';
    const signatures = [...this.signatures.values()].sort((a, b) => cmpId(a.from, b.from));
    return { survivors: [...this.u3], dropped: [...this.dropped], signatures };
  }

  /** The survivors who signed: the only ones an unmask request goes to. */
  get signers(): readonly string[] {
    return [...this.signatures.keys()].sort(cmpId);
  }

  addUnmaskResponse(resp: UnmaskResponse): void {
    this.expect('unmask', 'an unmask response');
    const from = resp.from;
    if (!this.signatures.has(from)) throw err(status.PERMISSION_DENIED, `${from} is not a survivor that signed the lists`);
    const u3 = new Set(this.u3);
    const dropped = new Set(this.dropped);
    const seen = new Set<string>();
    const check = (r: RevealedShare, kind: 'b' | 'sk'): void => {
      const v = r.of;
      if (!u3.has(v) && !dropped.has(v)) throw err(status.INVALID_ARGUMENT, `${from} sent a share for ${v}, which is not in U2`);
      if (kind === 'sk' && u3.has(v))
        throw err(status.INVALID_ARGUMENT, `${from} sent a mask-key share for ${v}: a share for a client that both sent input and is reported dropped`);
      if (kind === 'b' && dropped.has(v))
        throw err(
          status.INVALID_ARGUMENT,
          `${from} sent a seed share for ${v}, which dropped: a share for a client that both sent input and is reported dropped`,
        );
      if (seen.has(v)) throw err(status.INVALID_ARGUMENT, `${from} sent two shares for ${v}`);
      seen.add(v);
      const holders = holdersOf(this.nbrs, v);
      const dealt = this.shareMsgs.get(v)!.shares.find((s) => s.to === from);
      if (!dealt) throw err(status.INVALID_ARGUMENT, `${from} holds no shares of ${v}`);
      const ok =
        r.share.length === SHARE_BYTES &&
        r.share[SHARE_BYTES - 1] === shareX(holders, from) &&
        bytesEqual(shareCommitment(this.sid!, v, from, kind, r.share), kind === 'b' ? dealt.bCommitment : dealt.skCommitment);
      if (!ok) throw err(status.INVALID_ARGUMENT, `invalid Shamir share from holder ${from} for dealer ${v} (${kind})`);
    };
    for (const r of resp.bShares) check(r, 'b');
    for (const r of resp.skShares) check(r, 'sk');
    if (this.responders.has(from)) throw err(status.ALREADY_EXISTS, `${from} already answered the unmask request`);
    const put = (m: Map<string, Map<string, Uint8Array>>, r: RevealedShare): void => {
      if (!m.has(r.of)) m.set(r.of, new Map());
      m.get(r.of)!.set(from, Uint8Array.from(r.share));
    };
    for (const r of resp.bShares) put(this.bShares, r);
    for (const r of resp.skShares) put(this.skShares, r);
    this.responders.add(from);
  }

  /** Secrets that still lack t shares: survivors' seeds and dropped clients' mask keys. */
  missing(): string[] {
    const t = this.config.threshold;
    return [
      ...this.u3.filter((u) => (this.bShares.get(u)?.size ?? 0) < t).map((u) => `b(${u})`),
      ...this.dropped.filter((v) => (this.skShares.get(v)?.size ?? 0) < t).map((v) => `sk(${v})`),
    ];
  }

  ready(): boolean {
    return this.stageValue === 'unmask' && this.missing().length === 0;
  }

  /** Σ_{u ∈ U3} x_u mod 2^32. ABORTED when a secret cannot be rebuilt or does not match its commitment. */
  async finish(): Promise<Uint32Array> {
    this.expect('unmask', 'finish');
    const missing = this.missing();
    if (missing.length > 0) this.abort(`too few unmask responses to rebuild ${missing.join(', ')}`);
    const t = this.config.threshold;
    const sorted = (m: Map<string, Uint8Array>): Uint8Array[] => [...m].sort((a, b) => cmpId(a[0], b[0])).map((e) => e[1]);
    const seeds: [string, Uint8Array][] = [];
    for (const u of this.u3) {
      const b = await reconstruct(sorted(this.bShares.get(u)!), t);
      if (!bytesEqual(seedCommitment(this.sid!, u, b), this.shareMsgs.get(u)!.seedHash))
        this.abort(`the rebuilt mask seed of ${u} does not match its commitment`);
      seeds.push([u, b]);
    }
    const keys: [string, Uint8Array][] = [];
    for (const v of this.dropped) {
      const sk = await reconstruct(sorted(this.skShares.get(v)!), t);
      if (!bytesEqual(nacl.scalarMult.base(sk), this.ads.get(v)!.maskPublicKey))
        this.abort(`the rebuilt mask key of ${v} does not match its advertised public key`);
      keys.push([v, sk]);
    }
    // An input that did not count is still partly in the sum until it is taken back: nothing sound can come of it.
    if (this.masked.unsettled > 0) this.abort(`${this.masked.unsettled} masked inputs that were not accepted are still partly in the sum`);
    const acc = this.masked.take();
    // Every mask to remove, then one pass over the sum: |U3| self masks and, per dropped v, one pair mask
    // per surviving neighbour. Nothing else here touches all m values.
    const masks: Mask[] = seeds.map(([, b]) => ({ key: b, sign: -1 }));
    const u3 = new Set(this.u3);
    for (const [v, sk] of keys) {
      for (const u of this.nbrs.get(v)!) {
        if (!u3.has(u)) continue;
        // u added +PRG when u < v, −PRG otherwise; undo it.
        masks.push({ key: pairKey(this.sid!, u, v, agree(sk, this.ads.get(u)!.maskPublicKey)), sign: cmpId(u, v) < 0 ? -1 : 1 });
      }
    }
    addMasks(acc, masks);
    this.stageValue = 'done';
    return acc;
  }
}
