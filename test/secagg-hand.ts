// Sites played by hand for the SecAgg tests (secagg-server-mutants, secagg-client-mutants): each deals, commits,
// seals, masks, signs and reveals with the protocol's primitives (proto/secagg's keys, shares, seal, session and
// prg modules), not through SecAggClient, so a test can make one site deviate from the protocol and work out
// what the honest answer is without the code under test.
import { createHash } from 'node:crypto';
import type { status } from '@grpc/grpc-js';
import nacl from 'tweetnacl';
import type { GraphSpec, SecAggRoundConfig } from '../proto/secagg/config';
import type { Advertisement, ConsistencySignature, RevealedShare, ShareKeysMessage, UnmaskResponse } from '../proto/secagg/messages';
import { agree, pairKey, shareEncryptionKey } from '../proto/secagg/keys';
import { addMask } from '../proto/secagg/prg';
import { open, seal } from '../proto/secagg/seal';
import { advertisementDigest, consistencyDigest, shareKeysDigest } from '../proto/secagg/session';
import { SHARE_BYTES, dealShares, seedCommitment, shareCommitment } from '../proto/secagg/shares';
import { sessionPermutation } from '../proto/secagg/graph';
import { signDetached } from '../proto/crypto/ed25519';
import { ProtocolError } from '../proto/errors';
import { SecAggServer } from '../proto/secagg/server';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

export const seedOf = (s: string): Uint8Array => new Uint8Array(createHash('sha256').update(s).digest());
export const M = 6; // vector length: weight slot + 5 values

/** What a deviating dealer does instead of the protocol (each field replaces one honest step). */
export interface Deviation {
  /** The seed whose commitment it publishes (default: the seed it shares). */
  readonly committedSeed?: Uint8Array;
  /** The mask secret key it shares (default: the one it advertised). */
  readonly sharedMaskKey?: Uint8Array;
  /** Its b-shares, by holder, after dealing (default: as dealt). Commitments are over what this returns. */
  readonly bShares?: (dealt: Uint8Array[], holders: string[]) => Uint8Array[];
  /** Its sk-shares, likewise. */
  readonly skShares?: (dealt: Uint8Array[], holders: string[]) => Uint8Array[];
  /** What it seals to a holder (default: b-share then sk-share). */
  readonly plaintext?: (b: Uint8Array, sk: Uint8Array, holder: string) => Uint8Array;
}

/** A site played by hand: its keys are derived from its id, its input x is fixed. */
export class Site {
  readonly idKeys: nacl.SignKeyPair;
  readonly enc: nacl.BoxKeyPair;
  readonly mask: nacl.BoxKeyPair;
  readonly seed: Uint8Array;
  readonly x: Uint32Array;
  /** Shares this site dealt, by holder: [b, sk]. */
  readonly dealt = new Map<string, [Uint8Array, Uint8Array]>();
  constructor(readonly id: string) {
    this.idKeys = nacl.sign.keyPair.fromSeed(seedOf(`identity ${id}`));
    this.enc = nacl.box.keyPair.fromSecretKey(seedOf(`enc ${id}`));
    this.mask = nacl.box.keyPair.fromSecretKey(seedOf(`mask ${id}`));
    this.seed = seedOf(`seed ${id}`);
    const h = seedOf(`x ${id}`);
    this.x = Uint32Array.from({ length: M }, (_, i) => new DataView(h.buffer).getUint32(4 * i, true));
  }
  ad(cfg: SecAggRoundConfig): Advertisement {
    const { publicKey: encPublicKey } = this.enc;
    const { publicKey: maskPublicKey } = this.mask;
    return {
      clientId: this.id,
      encPublicKey,
      maskPublicKey,
      signature: signDetached(advertisementDigest(cfg, this.id, encPublicKey, maskPublicKey), this.idKeys.secretKey),
    };
  }
  /** Sealed to each holder's advertised encryption key (`encKeys`), as the protocol seals them. */
  async shareKeys(sid: Uint8Array, holders: string[], t: number, encKeys: ReadonlyMap<string, Uint8Array>, dev: Deviation = {}): Promise<ShareKeysMessage> {
    const dealtB = await dealShares(this.seed, holders, t);
    const b = dev.bShares ? dev.bShares(dealtB, holders) : dealtB;
    const dealtSk = await dealShares(dev.sharedMaskKey ?? this.mask.secretKey, holders, t);
    const sk = dev.skShares ? dev.skShares(dealtSk, holders) : dealtSk;
    const shares = holders.map((h, i) => {
      this.dealt.set(h, [b[i], sk[i]]);
      const plaintext = dev.plaintext ? dev.plaintext(b[i], sk[i], h) : Uint8Array.from([...b[i], ...sk[i]]);
      const key = shareEncryptionKey(sid, this.id, h, agree(this.enc.secretKey, encKeys.get(h)!));
      return {
        to: h,
        ciphertext: seal(key, sid, this.id, h, plaintext, (k) => seedOf(`nonce ${this.id} ${h}`).subarray(0, k)),
        bCommitment: shareCommitment(sid, this.id, h, 'b', b[i]),
        skCommitment: shareCommitment(sid, this.id, h, 'sk', sk[i]),
      };
    });
    const seedHash = seedCommitment(sid, this.id, dev.committedSeed ?? this.seed);
    return { from: this.id, seedHash, shares, signature: signDetached(shareKeysDigest(sid, this.id, seedHash, shares), this.idKeys.secretKey) };
  }
  /** Opens what `dealer` sealed to this site: [b-share, sk-share]. */
  openShares(sid: Uint8Array, dealer: string, dealerEncPublicKey: Uint8Array, ciphertext: Uint8Array): [Uint8Array, Uint8Array] {
    const pt = open(shareEncryptionKey(sid, dealer, this.id, agree(this.enc.secretKey, dealerEncPublicKey)), sid, dealer, this.id, ciphertext);
    if (!pt) throw new Error(`shares from ${dealer} to ${this.id} do not open`);
    return [pt.slice(0, SHARE_BYTES), pt.slice(SHARE_BYTES)];
  }
  /** y = x + PRG(b) + Σ over neighbours v in U2 of ±PRG(k_uv), + when this id sorts first. */
  masked(sid: Uint8Array, peers: readonly { readonly id: string; readonly mask: { readonly publicKey: Uint8Array } }[]): Uint32Array {
    const y = this.x.slice();
    addMask(y, this.seed, 1);
    for (const v of peers) if (v.id !== this.id) addMask(y, pairKey(sid, this.id, v.id, agree(this.mask.secretKey, v.mask.publicKey)), this.id < v.id ? 1 : -1);
    return y;
  }
  sign(sid: Uint8Array, survivors: readonly string[], dropped: readonly string[]): ConsistencySignature {
    return { from: this.id, signature: signDetached(consistencyDigest(sid, survivors, dropped), this.idKeys.secretKey) };
  }
  /** The shares this site holds from `dealers`: b for survivors, sk for the dropped. */
  reveal(dealers: readonly Site[], survivors: readonly string[]): UnmaskResponse {
    const bShares: RevealedShare[] = [];
    const skShares: RevealedShare[] = [];
    for (const d of dealers) {
      const [b, sk] = d.dealt.get(this.id)!;
      if (survivors.includes(d.id)) bShares.push({ of: d.id, share: b });
      else skShares.push({ of: d.id, share: sk });
    }
    return { from: this.id, bShares, skShares };
  }
}

export const idsOf = (n: number): string[] => Array.from({ length: n }, (_, i) => `s${String(i).padStart(2, '0')}`);

export function configOf(ids: string[], graph: GraphSpec, threshold: number, vectorLength = M): SecAggRoundConfig {
  return {
    roundTag: 'hand/r1/a0',
    baseManifestSha256: 'cd'.repeat(32),
    selected: ids,
    threshold,
    graph,
    clipNorm: 1,
    weightCap: 100,
    maxClients: 64,
    include: ['x'],
    vectorLength,
  };
}

/** The neighbours of a round: full, or the Harary ring of the session's permutation with k/2 on each side. */
export function neighboursOf(ids: readonly string[], graph: GraphSpec, sid: Uint8Array): Map<string, Set<string>> {
  const nbrs = new Map(ids.map((id) => [id, new Set<string>()]));
  if (graph.kind === 'full') for (const a of ids) for (const b of ids) if (a !== b) nbrs.get(a)!.add(b);
  if (graph.kind === 'harary') {
    const ring = sessionPermutation(ids, sid);
    ring.forEach((a, i) => {
      for (let d = 1; d <= graph.k / 2; d++) {
        nbrs.get(a)!.add(ring[(i + d) % ids.length]);
        nbrs.get(ring[(i + d) % ids.length])!.add(a);
      }
    });
  }
  return nbrs;
}

export const hexOf = (a: Uint32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');

/**
 * Expects `f` to refuse (a site or server played by hand must not answer) with exactly this gRPC status and a
 * message equal to `message`, or matching it when it is a pattern.
 */
export async function refused(f: () => unknown, code: status, message: string | RegExp): Promise<void> {
  let caught: unknown;
  let returned: unknown;
  try {
    returned = await f();
  } catch (e) {
    caught = e;
  }
  expect(returned, 'the site answered instead of refusing').to.equal(undefined);
  expect(caught, `expected a refusal ${typeof message === 'string' ? 'saying' : 'matching'} ${String(message)}`).to.be.instanceOf(ProtocolError);
  const { code: got, message: said } = caught as ProtocolError;
  if (typeof message === 'string') expect([got, said]).to.deep.equal([code, message]);
  else {
    expect(said).to.match(message);
    expect(got, said).to.equal(code);
  }
}

/**
 * N hand-played sites, every one advertised, and the server closed in stage shareKeys: the start the server and
 * stage mutant tests share. `holders(id)`: the share holders of `id` (its neighbours and itself, sorted).
 */
export function advertised(n: number, graph: GraphSpec, t: number) {
  const ids = idsOf(n);
  const cfg = configOf(ids, graph, t);
  const sites = ids.map((id) => new Site(id));
  const byId = new Map(sites.map((s) => [s.id, s]));
  const srv = new SecAggServer(cfg, Object.fromEntries(sites.map((s) => [s.id, s.idKeys.publicKey])));
  for (const s of sites) srv.addAdvertisement(s.ad(cfg));
  srv.closeAdvertise();
  const sid = srv.sessionId!;
  const nbrs = neighboursOf(ids, graph, sid);
  const holders = (id: string): string[] => [...nbrs.get(id)!, id].sort();
  const encKeys = new Map(sites.map((s) => [s.id, s.enc.publicKey]));
  return { ids, cfg, sites, byId, srv, sid, nbrs, holders, encKeys };
}
