// The SecAgg stages before the masked inputs, exactly: the server's advertisement and ShareKeys checks, U1 and
// the roster (closeAdvertise), U2 (closeShareKeys, whose pruning cascades) and the routing; the client's
// constructor, advertise and its roster checks in shareKeys. Sites are played by hand (test/secagg-hand.ts), so
// each message can fail exactly one check. Found missing by mutation testing (bench/MUTATION.md, group
// secagg-stages); every refusal by code and whole message, and each leaves the stage able to go on.
import { status } from '@grpc/grpc-js';
import nacl from 'tweetnacl';
import { SecAggClient } from '../proto/secagg/client';
import { SecAggLedger } from '../proto/secagg/ledger';
import { SecAggServer } from '../proto/secagg/server';
import type { Advertisement, Roster, ShareKeysMessage } from '../proto/secagg/messages';
import { advertisementDigest, computeSessionId, shareKeysDigest } from '../proto/secagg/session';
import { signDetached } from '../proto/crypto/ed25519';
import { reconstruct, seedCommitment, shareCommitment } from '../proto/secagg/shares';
import { Site, advertised, configOf, idsOf, seedOf, refused } from './secagg-hand';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
/** An advertisement of `s` with these keys, signed as the protocol signs it (so only the keys are wrong). */
function adWith(s: Site, cfg: ReturnType<typeof configOf>, enc: Uint8Array, mask: Uint8Array): Advertisement {
  return { clientId: s.id, encPublicKey: enc, maskPublicKey: mask, signature: signDetached(advertisementDigest(cfg, s.id, enc, mask), s.idKeys.secretKey) };
}
const LOW = Uint8Array.from({ length: 32 }, (_, i) => (i === 0 ? 1 : 0)); // u = 1: a point of small order
const highBit = (k: Uint8Array): Uint8Array => Uint8Array.from(k, (x, i) => (i === 31 ? x | 0x80 : x)); // the same point, non-canonical

describe('secagg stages before the masked inputs, exactly', function () {
  this.timeout(60_000);

  it('server: each advertisement refusal by code and whole message; U1 and the roster exactly', async () => {
    const ids = idsOf(6);
    const cfg = configOf(ids, { kind: 'full' }, 4);
    const sites = ids.map((id) => new Site(id));
    const outsider = new Site('zz');
    // s05 is selected but has no identity key; zz has one but is not selected.
    const keys = Object.fromEntries([...sites.slice(0, 5), outsider].map((s) => [s.id, s.idKeys.publicKey]));
    const certs = { s01: Uint8Array.of(1), s03: Uint8Array.of(3), s05: Uint8Array.of(5), zz: Uint8Array.of(9) };
    expect(() => new SecAggServer({ ...cfg, threshold: 1 }, keys)).to.throw('secagg config: threshold 1 must be an integer in [2, 6] (holders per secret)');
    const srv = new SecAggServer(cfg, keys, certs);
    expect(srv.survivors).to.deep.equal([]);
    const s0 = sites[0];
    const ad = s0.ad(cfg);
    const { publicKey: enc } = s0.enc;
    const { publicKey: mask } = s0.mask;
    const P = status.PERMISSION_DENIED;
    const I = status.INVALID_ARGUMENT;
    await refused(() => srv.addAdvertisement(sites[5].ad(cfg)), P, 'secagg: s05 is not selected for this round');
    await refused(() => srv.addAdvertisement(outsider.ad(cfg)), P, 'secagg: zz is not selected for this round');
    const sizes = 'secagg: advertisement of s00: keys must be 32 bytes and the signature 64';
    await refused(() => srv.addAdvertisement(adWith(s0, cfg, enc.subarray(0, 31), mask)), I, sizes);
    await refused(() => srv.addAdvertisement(adWith(s0, cfg, enc, Uint8Array.from([...mask, 0]))), I, sizes);
    await refused(() => srv.addAdvertisement({ ...ad, signature: ad.signature.subarray(0, 63) }), I, sizes);
    const bad = Uint8Array.from(ad.signature, (x, i) => (i === 0 ? x ^ 1 : x));
    await refused(
      () => srv.addAdvertisement({ ...ad, signature: bad }),
      status.UNAUTHENTICATED,
      'secagg: advertisement of s00: signature does not verify for this round (hand/r1/a0)',
    );
    const weak = 'secagg: advertisement of s00: low-order public key (all-zero DH share) or a non-canonical encoding';
    for (const [e, m] of [
      [LOW, mask],
      [enc, LOW],
      [highBit(enc), mask],
      [enc, highBit(mask)],
    ])
      await refused(() => srv.addAdvertisement(adWith(s0, cfg, e, m)), I, weak);
    await refused(() => srv.closeShareKeys(), status.FAILED_PRECONDITION, "secagg: closing the share-keys stage is not accepted at stage 'advertise'");
    // In reverse order: the roster sorts them.
    for (const s of [...sites.slice(0, 5)].reverse()) srv.addAdvertisement(s.ad(cfg));
    await refused(() => srv.addAdvertisement(ad), status.ALREADY_EXISTS, 'secagg: s00 already advertised keys in this round');
    expect(srv.stage).to.equal('advertise');
    const roster = srv.closeAdvertise();
    expect(srv.stage).to.equal('shareKeys');
    expect(roster.advertisements.map((a) => a.clientId)).to.deep.equal(ids.slice(0, 5));
    expect(roster.advertisements.map((a) => hex(a.encPublicKey))).to.deep.equal(sites.slice(0, 5).map((s) => hex(s.enc.publicKey)));
    expect(Object.entries(roster.identityKeys).map(([k, v]) => [k, hex(v)])).to.deep.equal(sites.slice(0, 5).map((s) => [s.id, hex(s.idKeys.publicKey)]));
    // Certificates of the advertised clients that have one, only.
    expect(Object.entries(roster.certificates!).map(([k, v]) => [k, hex(v)])).to.deep.equal([
      ['s01', '01'],
      ['s03', '03'],
    ]);
    expect(hex(srv.sessionId!)).to.equal(hex(computeSessionId(cfg, roster.advertisements)));
    await refused(() => srv.addAdvertisement(ad), status.FAILED_PRECONDITION, "secagg: an advertisement is not accepted at stage 'shareKeys'");
    await refused(() => srv.closeAdvertise(), status.FAILED_PRECONDITION, "secagg: closing the advertise stage is not accepted at stage 'shareKeys'");
    // Without certificates the roster has none.
    const plain = new SecAggServer(cfg, keys);
    for (const s of sites.slice(0, 4)) plain.addAdvertisement(s.ad(cfg));
    expect(Object.keys(plain.closeAdvertise())).to.deep.equal(['advertisements', 'identityKeys']);
  });

  it('server: closeAdvertise below the threshold aborts by the whole message and ends the attempt', async () => {
    const ids = idsOf(5);
    const cfg = configOf(ids, { kind: 'full' }, 3);
    const srv = new SecAggServer(cfg, Object.fromEntries(ids.map((id) => [id, new Site(id).idKeys.publicKey])));
    for (const id of ids.slice(0, 2)) srv.addAdvertisement(new Site(id).ad(cfg));
    await refused(() => srv.closeAdvertise(), status.ABORTED, 'secagg: round aborted: 2 of 5 clients advertised keys; threshold is 3');
    expect(srv.stage).to.equal('aborted');
    // Exactly t is enough.
    const ok = new SecAggServer(cfg, Object.fromEntries(ids.map((id) => [id, new Site(id).idKeys.publicKey])));
    for (const id of ids.slice(0, 3)) ok.addAdvertisement(new Site(id).ad(cfg));
    expect(ok.closeAdvertise().advertisements).to.have.length(3);
  });

  /** N sites, all advertised; the server in stage shareKeys, and what each site would send. */
  async function advertisedWithShares(n: number, graph: Parameters<typeof configOf>[1], t: number) {
    const r = advertised(n, graph, t);
    const shares = (id: string): Promise<ShareKeysMessage> => r.byId.get(id)!.shareKeys(r.sid, r.holders(id), t, r.encKeys);
    return { ...r, shares };
  }
  /** `m` re-signed by its dealer after `edit`, so only the edited field is wrong. */
  function resigned(r: Awaited<ReturnType<typeof advertised>>, m: ShareKeysMessage, edit: Partial<ShareKeysMessage>): ShareKeysMessage {
    const e = { ...m, ...edit };
    return { ...e, signature: signDetached(shareKeysDigest(r.sid, e.from, e.seedHash, e.shares), r.byId.get(e.from)!.idKeys.secretKey) };
  }

  it('server: each ShareKeys refusal by code and whole message, leaving the message acceptable afterwards', async () => {
    const r = await advertisedWithShares(5, { kind: 'full' }, 3);
    const m = await r.shares('s00');
    const I = status.INVALID_ARGUMENT;
    const order = 'secagg: ShareKeys from s00: shares must go to exactly its holders [s00, s01, s02, s03, s04] in order';
    await refused(() => r.srv.addShareKeys(resigned(r, m, { shares: m.shares.slice(0, 4) })), I, order);
    await refused(() => r.srv.addShareKeys(resigned(r, m, { shares: [m.shares[1], m.shares[0], ...m.shares.slice(2)] })), I, order);
    const sizes = 'secagg: ShareKeys from s00: wrong sizes in the shares for s02';
    const at2 = (f: Partial<ShareKeysMessage['shares'][number]>): ShareKeysMessage['shares'] => m.shares.map((s, i) => (i === 2 ? { ...s, ...f } : s));
    await refused(() => r.srv.addShareKeys(resigned(r, m, { shares: at2({ ciphertext: m.shares[2].ciphertext.subarray(1) }) })), I, sizes);
    await refused(() => r.srv.addShareKeys(resigned(r, m, { shares: at2({ bCommitment: m.shares[2].bCommitment.subarray(1) }) })), I, sizes);
    await refused(() => r.srv.addShareKeys(resigned(r, m, { shares: at2({ skCommitment: m.shares[2].skCommitment.subarray(1) }) })), I, sizes);
    await refused(() => r.srv.addShareKeys(resigned(r, m, { seedHash: m.seedHash.subarray(1) })), I, 'secagg: ShareKeys from s00: seed hash must be 32 bytes');
    await refused(
      () => r.srv.addShareKeys({ ...m, signature: signDetached(shareKeysDigest(r.sid, 's00', m.seedHash, m.shares), r.sites[1].idKeys.secretKey) }),
      status.UNAUTHENTICATED,
      'secagg: ShareKeys from s00: signature does not verify for this session',
    );
    r.srv.addShareKeys(m);
    await refused(() => r.srv.addShareKeys(m), status.ALREADY_EXISTS, 'secagg: s00 already sent its shares in this round');
    await refused(
      () => r.srv.addMaskedInput('s00', new Uint32Array(r.cfg.vectorLength)),
      status.FAILED_PRECONDITION,
      "secagg: a masked input is not accepted at stage 'shareKeys'",
    );
    // From a selected client that did not advertise.
    const late = await advertisedWithShares(5, { kind: 'full' }, 3);
    const fresh = new SecAggServer(late.cfg, Object.fromEntries(late.sites.map((s) => [s.id, s.idKeys.publicKey])));
    for (const s of late.sites.slice(0, 4)) fresh.addAdvertisement(s.ad(late.cfg));
    await refused(() => fresh.addShareKeys(m), status.FAILED_PRECONDITION, "secagg: a ShareKeys message is not accepted at stage 'advertise'");
    fresh.closeAdvertise();
    await refused(() => fresh.addShareKeys({ ...m, from: 's04' }), status.PERMISSION_DENIED, 'secagg: s04 did not advertise keys in this round');
  });

  it('server: U2 drops a sender whose holders among the senders are fewer than t, then one that this starves; routes exactly', async () => {
    // N = 16, Harary k = 8, t = 5 (nine holders each). s01, s02, s03, s05 and s10 send no shares. Of s14's holders
    // only s06, s07, s11 and s14 sent: it goes. s06's holders that sent were s06, s09, s11, s14 and s15: without
    // s14 four, so it goes too (a single pass over the senders in id order would have kept it).
    const r = await advertisedWithShares(16, { kind: 'harary', k: 8 }, 5);
    expect(r.holders('s14')).to.deep.equal(['s01', 's02', 's03', 's05', 's06', 's07', 's10', 's11', 's14']);
    expect(r.holders('s06')).to.deep.equal(['s01', 's02', 's05', 's06', 's09', 's10', 's11', 's14', 's15']);
    // s04 before s00 (U2 is sorted), the rest in id order (s06 is looked at before s14).
    const senders = ['s04', 's00', ...r.ids.filter((id) => !['s00', 's01', 's02', 's03', 's04', 's05', 's10'].includes(id))];
    const msgs = new Map<string, ShareKeysMessage>();
    for (const id of senders) {
      msgs.set(id, await r.shares(id));
      r.srv.addShareKeys(msgs.get(id)!);
    }
    const { u2, routed } = r.srv.closeShareKeys();
    const want = ['s00', 's04', 's07', 's08', 's09', 's11', 's12', 's13', 's15'];
    expect(u2).to.deep.equal(want);
    expect(r.srv.stage).to.equal('maskedInput');
    await refused(() => routed('s14'), status.PERMISSION_DENIED, 'secagg: s14 is not in U2');
    await refused(() => routed('s01'), status.PERMISSION_DENIED, 'secagg: s01 is not in U2');
    for (const id of want) {
      const got = routed(id);
      expect(got.u2).to.deep.equal(want);
      // Shares from the members of U2 that hold for it (its neighbours and itself), in U2's order, as dealt.
      const from = want.filter((v) => r.holders(id).includes(v));
      expect(got.shares.map((s) => s.from)).to.deep.equal(from);
      expect(got.shares.map((s) => [hex(s.ciphertext), hex(s.bCommitment), hex(s.skCommitment)])).to.deep.equal(
        from.map((v) => {
          const s = msgs.get(v)!.shares.find((x) => x.to === id)!;
          return [hex(s.ciphertext), hex(s.bCommitment), hex(s.skCommitment)];
        }),
      );
    }
    await refused(() => r.srv.addMaskedInput('s14', new Uint32Array(r.cfg.vectorLength)), status.PERMISSION_DENIED, 'secagg: s14 is not in U2');
    await refused(
      () => r.srv.addMaskedInput('s00', new Uint32Array(r.cfg.vectorLength - 1)),
      status.INVALID_ARGUMENT,
      `secagg: masked input from s00 has ${r.cfg.vectorLength - 1} values, expected ${r.cfg.vectorLength}`,
    );
  });

  it('server: U2 that the pruning leaves below t aborts by the whole message', async () => {
    const r = await advertisedWithShares(16, { kind: 'harary', k: 8 }, 5);
    // Five senders, each with fewer than five holders among them once the others go.
    for (const id of ['s00', 's04', 's06', 's07', 's08']) r.srv.addShareKeys(await r.shares(id));
    await refused(() => r.srv.closeShareKeys(), status.ABORTED, 'secagg: round aborted: 0 clients in U2 (5 sent shares); threshold is 5');
    expect(r.srv.stage).to.equal('aborted');
  });
  it('client: refuses a client not selected; advertises fresh keys from its random source, signed; once', async () => {
    const ids = idsOf(5);
    const cfg = configOf(ids, { kind: 'full' }, 3);
    const me = new Site('s00');
    await refused(
      () => new SecAggClient({ config: cfg, clientId: 'zz', identitySecretKey: me.idKeys.secretKey }),
      status.INVALID_ARGUMENT,
      'secagg client: zz is not selected for this round',
    );
    let calls = 0;
    const random = (n: number): Uint8Array => seedOf(`random ${calls++}`).slice(0, n);
    const client = new SecAggClient({ config: cfg, clientId: 's00', identitySecretKey: me.idKeys.secretKey, random });
    const ad = client.advertise();
    const enc = nacl.scalarMult.base(seedOf('random 0'));
    const mask = nacl.scalarMult.base(seedOf('random 1'));
    expect([ad.clientId, hex(ad.encPublicKey), hex(ad.maskPublicKey), hex(ad.signature)]).to.deep.equal([
      's00',
      hex(enc),
      hex(mask),
      hex(signDetached(advertisementDigest(cfg, 's00', enc, mask), me.idKeys.secretKey)),
    ]);
    await refused(() => client.advertise(), status.FAILED_PRECONDITION, "secagg client: advertise is not allowed at stage 'advertised'");
    // Without a run id the site's ledger is keyed by the run id '': a reveal recorded under it bars that base.
    const ledger = new SecAggLedger();
    ledger.recordReveal('', cfg.baseManifestSha256, 'ab'.repeat(32));
    await refused(
      () => new SecAggClient({ config: cfg, clientId: 's00', identitySecretKey: me.idKeys.secretKey, ledger }).advertise(),
      status.FAILED_PRECONDITION,
      'secagg client: already revealed unmask shares for a sum over base checkpoint cdcdcdcdcdcd… of this run; a second sum could isolate an update',
    );
    expect(new SecAggClient({ config: cfg, clientId: 's00', identitySecretKey: me.idKeys.secretKey, ledger, runId: 'r2' }).advertise().clientId).to.equal(
      's00',
    );
  });

  it("client: each roster refusal by code and whole message; then the honest roster's shares, exactly", async () => {
    const ids = idsOf(5);
    const cfg = configOf(ids, { kind: 'full' }, 3);
    const sites = ids.map((id) => new Site(id));
    const me = sites[0];
    let calls = 0;
    const random = (n: number): Uint8Array => seedOf(`random ${calls++}`).slice(0, n);
    const client = new SecAggClient({ config: cfg, clientId: 's00', identitySecretKey: me.idKeys.secretKey, random });
    const roster0: Roster = { advertisements: [], identityKeys: {} };
    await refused(() => client.shareKeys(roster0), status.FAILED_PRECONDITION, "secagg client: shareKeys is not allowed at stage 'new'");
    const mine = client.advertise();
    const ads = [mine, ...sites.slice(1).map((s) => s.ad(cfg))];
    const identityKeys = Object.fromEntries(sites.map((s) => [s.id, s.idKeys.publicKey]));
    const roster: Roster = { advertisements: ads, identityKeys };
    const m = (s: string): string => `secagg client: ${s}`;
    const I = status.INVALID_ARGUMENT;
    const F = status.FAILED_PRECONDITION;
    const U = status.UNAUTHENTICATED;
    const at2 = (a: Advertisement): Roster => ({ ...roster, advertisements: ads.map((x, i) => (i === 2 ? a : x)) });
    const unsorted = m('roster advertisements must be sorted by client id, without repeats');
    await refused(() => client.shareKeys({ ...roster, advertisements: [ads[1], ads[0], ...ads.slice(2)] }), I, unsorted);
    await refused(() => client.shareKeys({ ...roster, advertisements: [ads[0], ads[1], ads[1], ...ads.slice(2)] }), I, unsorted);
    await refused(() => client.shareKeys({ ...roster, advertisements: ads.slice(0, 2) }), F, m('roster has 2 clients, threshold is 3'));
    const zz = new Site('zz');
    await refused(
      () => client.shareKeys({ advertisements: [...ads, zz.ad(cfg)], identityKeys: { ...identityKeys, zz: zz.idKeys.publicKey } }),
      status.PERMISSION_DENIED,
      m('roster names zz, who is not selected'),
    );
    const unsigned = m('advertisement of s02 has no valid signature for this round');
    await refused(() => client.shareKeys({ ...roster, identityKeys: { ...identityKeys, s02: undefined as unknown as Uint8Array } }), U, unsigned);
    await refused(() => client.shareKeys({ ...roster, identityKeys: { ...identityKeys, s02: sites[3].idKeys.publicKey } }), U, unsigned);
    const s2 = sites[2];
    await refused(() => client.shareKeys(at2(adWith(s2, cfg, LOW, s2.mask.publicKey))), I, m('advertisement of s02 has a low-order key'));
    await refused(() => client.shareKeys(at2(adWith(s2, cfg, s2.enc.publicKey, LOW))), I, m('advertisement of s02 has a low-order key'));
    await refused(
      () => client.shareKeys(at2(adWith(s2, cfg, highBit(s2.enc.publicKey), s2.mask.publicKey))),
      I,
      m('advertisement of s02 has a non-canonical key'),
    );
    await refused(
      () => client.shareKeys(at2(adWith(s2, cfg, s2.enc.publicKey, highBit(s2.mask.publicKey)))),
      I,
      m('advertisement of s02 has a non-canonical key'),
    );
    const notMine = m("roster does not carry this client's own advertisement");
    await refused(() => client.shareKeys({ ...roster, advertisements: ads.slice(1) }), F, notMine);
    const withMine = (a: Advertisement): Roster => ({ ...roster, advertisements: [a, ...ads.slice(1)] });
    await refused(() => client.shareKeys(withMine(me.ad(cfg))), F, notMine);
    await refused(() => client.shareKeys(withMine(adWith(me, cfg, mine.encPublicKey, me.mask.publicKey))), F, notMine);
    await refused(() => client.shareKeys(withMine(adWith(me, cfg, me.enc.publicKey, mine.maskPublicKey))), F, notMine);
    // The honest roster: the message a server accepts, each share opening to what its commitments name.
    const msg = await client.shareKeys(roster);
    const sid = computeSessionId(cfg, ads);
    expect(hex(client.sessionId!)).to.equal(hex(sid));
    const seed = seedOf('random 2');
    expect([msg.from, hex(msg.seedHash)]).to.deep.equal(['s00', hex(seedCommitment(sid, 's00', seed))]);
    expect(msg.shares.map((s) => s.to)).to.deep.equal(ids);
    // The other four holders open theirs (the share s00 keeps is sealed to its own key).
    const opened = msg.shares.slice(1).map((s, i) => sites[i + 1].openShares(sid, 's00', mine.encPublicKey, s.ciphertext));
    expect(msg.shares.slice(1).map((s) => [hex(s.bCommitment), hex(s.skCommitment)])).to.deep.equal(
      opened.map(([b, sk], i) => [hex(shareCommitment(sid, 's00', ids[i + 1], 'b', b)), hex(shareCommitment(sid, 's00', ids[i + 1], 'sk', sk))]),
    );
    const rebuilt = async (shares: Uint8Array[]): Promise<string> => hex(await reconstruct(shares, 3));
    expect(await rebuilt(opened.slice(1).map(([b]) => b))).to.equal(hex(seed));
    expect(hex(nacl.scalarMult.base(Buffer.from(await rebuilt(opened.slice(0, 3).map(([, sk]) => sk)), 'hex')))).to.equal(hex(mine.maskPublicKey));
    expect(hex(msg.signature)).to.equal(hex(signDetached(shareKeysDigest(sid, 's00', msg.seedHash, msg.shares), me.idKeys.secretKey)));
    await refused(() => client.shareKeys(roster), F, m("shareKeys is not allowed at stage 'shared'"));
  });
});
