// The SecAgg client from receiving its shares on (proto/secagg/client.ts: receiveShares, maskedInput,
// consistency, unmask and the list comparison): the real SecAggClient as site s00 among sites played by hand
// (test/secagg-hand.ts), with this file as the coordinator, which routes what it likes, so each check of the
// client meets a message that fails exactly that check. Found missing by mutation testing (bench/MUTATION.md,
// group secagg-client); every refusal by code and whole message, every answer byte for byte.
import { status } from '@grpc/grpc-js';
import { SecAggClient } from '../proto/secagg/client';
import type { GraphSpec } from '../proto/secagg/config';
import { SecAggLedger } from '../proto/secagg/ledger';
import type { ConsistencyCheck, RoutedShares, ShareKeysMessage, UnmaskRequest } from '../proto/secagg/messages';
import { addMask } from '../proto/secagg/prg';
import { agree, pairKey } from '../proto/secagg/keys';
import { computeSessionId, consistencyDigest } from '../proto/secagg/session';
import { SHARE_BYTES, reconstruct, shareCommitment } from '../proto/secagg/shares';
import { sessionPermutation } from '../proto/secagg/graph';
import { verifyDetached } from '../proto/crypto/ed25519';
import { M, Site, configOf, hexOf, idsOf, neighboursOf, seedOf, type Deviation, refused } from './secagg-hand';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ME = 's00';
const BASE = 'cd'.repeat(32);
type LedgerState = { revealed: Record<string, string>; masked: Record<string, Record<string, string>> };
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** s00 is the real client, the others are played by hand. Through every site's ShareKeys message. */
async function dealt(n: number, graph: GraphSpec, t: number, dev: Record<string, Deviation> = {}, vectorLength = M, me = ME) {
  const ids = idsOf(n);
  const cfg = configOf(ids, graph, t, vectorLength);
  const sites = ids.map((id) => new Site(id));
  const byId = new Map(sites.map((s) => [s.id, s]));
  const ledgerStates: LedgerState[] = [];
  const ledger = new SecAggLedger((s) => ledgerStates.push(JSON.parse(JSON.stringify(s)) as LedgerState));
  const client = new SecAggClient({ config: cfg, clientId: me, identitySecretKey: byId.get(me)!.idKeys.secretKey, ledger, runId: 'run-h' });
  const mine = client.advertise();
  const ads = sites.map((s) => (s.id === me ? mine : s.ad(cfg)));
  const roster = { advertisements: ads, identityKeys: Object.fromEntries(sites.map((s) => [s.id, s.idKeys.publicKey])) };
  const own = await client.shareKeys(roster);
  const sid = computeSessionId(cfg, ads);
  expect(hex(client.sessionId!)).to.equal(hex(sid));
  const nbrs = neighboursOf(ids, graph, sid);
  const holders = (id: string): string[] => [...nbrs.get(id)!, id].sort();
  const encKeys = new Map(ads.map((a) => [a.clientId, a.encPublicKey]));
  const msgs = new Map<string, ShareKeysMessage>([[me, own]]);
  for (const s of sites) if (s.id !== me) msgs.set(s.id, await s.shareKeys(sid, holders(s.id), t, encKeys, dev[s.id]));
  /** What an honest coordinator routes to s00 for this U2. */
  const routed = (u2: readonly string[]): RoutedShares => ({
    u2,
    shares: holders(me)
      .filter((d) => u2.includes(d))
      .map((d) => {
        const s = msgs.get(d)!.shares.find((x) => x.to === me)!;
        return { from: d, ciphertext: s.ciphertext, bCommitment: s.bCommitment, skCommitment: s.skCommitment };
      }),
  });
  return { ids, cfg, sites, byId, client, sid, nbrs, holders, own, routed, ledgerStates, ads, mine };
}

/** N = 5, t = 3, full graph: s00 received, masked and signed `check`; so did every other survivor. */
async function signed(check: ConsistencyCheck, reversed = false) {
  const r = await dealt(5, { kind: 'full' }, 3);
  const routed = r.routed(r.ids);
  r.client.receiveShares(reversed ? { ...routed, shares: [...routed.shares].reverse() } : routed);
  r.client.maskedInput(new Uint32Array(M), seedOf('update'));
  const mine = r.client.consistency(check);
  const sigs = check.survivors.map((id) => (id === ME ? mine : r.byId.get(id)!.sign(r.sid, check.survivors, check.dropped)));
  return { ...r, mine, sigs };
}

const msg = (m: string): string => `secagg client: ${m}`;
const flip = (b: Uint8Array, at: number, to: number): Uint8Array => Uint8Array.from(b, (x, j) => (j === at ? to : x));

describe('secagg client, exactly (against a coordinator and sites played by hand)', function () {
  this.timeout(60_000);

  it('receiveShares refuses each bad routing and each bad share, naming the dealer; then takes the good ones', async () => {
    // s01 deals a b-share with x = 9, s02 an sk-share with x = 9 (each committed to), s03 seals 65 bytes.
    const dev: Record<string, Deviation> = {
      s01: { bShares: (d) => d.map((s, i) => (i === 0 ? flip(s, SHARE_BYTES - 1, 9) : s)) },
      s02: { skShares: (d) => d.map((s, i) => (i === 0 ? flip(s, SHARE_BYTES - 1, 9) : s)) },
      s03: { plaintext: (b, sk) => Uint8Array.from([...b, ...sk.subarray(1)]) },
    };
    const r = await dealt(7, { kind: 'full' }, 4, dev);
    const all = r.routed(r.ids);
    const from = (...ds: string[]): RoutedShares => ({ u2: r.ids, shares: all.shares.filter((s) => ds.includes(s.from)) });
    await refused(() => r.client.receiveShares({ ...all, u2: ['s01', 's00'] }), status.INVALID_ARGUMENT, msg('U2 must be a sorted subset of U1'));
    await refused(() => r.client.receiveShares({ ...all, u2: [...r.ids, 's99'] }), status.INVALID_ARGUMENT, msg('U2 must be a sorted subset of U1'));
    await refused(() => r.client.receiveShares({ ...all, u2: r.ids.slice(1) }), status.FAILED_PRECONDITION, msg('s00 is not in U2'));
    await refused(
      () => r.client.receiveShares({ ...all, u2: r.ids.slice(0, 3) }),
      status.FAILED_PRECONDITION,
      msg("U2 has 3 clients (3 of them hold this client's shares); threshold is 4"),
    );
    await refused(
      () => r.client.receiveShares({ ...all, shares: [all.shares[5], all.shares[5]] }),
      status.INVALID_ARGUMENT,
      msg('unexpected or repeated shares from s05'),
    );
    const u2 = ['s00', 's02', 's04', 's05', 's06'];
    await refused(
      () => r.client.receiveShares({ u2, shares: all.shares.filter((s) => s.from !== 's03') }),
      status.INVALID_ARGUMENT,
      msg('unexpected or repeated shares from s01'),
    );
    const misrouted = { ...all.shares[4], ciphertext: all.shares[5].ciphertext };
    await refused(
      () => r.client.receiveShares({ u2: r.ids, shares: [misrouted] }),
      status.INVALID_ARGUMENT,
      msg('shares from s04 do not decrypt for this session'),
    );
    await refused(() => r.client.receiveShares(from('s03')), status.INVALID_ARGUMENT, msg('shares from s03 do not decrypt for this session'));
    for (const d of ['s01', 's02'])
      await refused(() => r.client.receiveShares(from(d)), status.INVALID_ARGUMENT, msg(`invalid Shamir share from dealer ${d} for holder s00`));
    // Each commitment alone: the other kind's commitment in its place.
    const [s4] = from('s04').shares;
    for (const bad of [
      { ...s4, bCommitment: s4.skCommitment },
      { ...s4, skCommitment: s4.bCommitment },
    ]) {
      await refused(
        () => r.client.receiveShares({ u2: r.ids, shares: [bad] }),
        status.INVALID_ARGUMENT,
        msg('invalid Shamir share from dealer s04 for holder s00'),
      );
    }
    await refused(
      () => r.client.receiveShares(from('s00', 's04', 's05', 's06')),
      status.INVALID_ARGUMENT,
      msg('no shares from s01, s02, s03, which are in U2'),
    );
    // Without the three bad dealers in U2, the rest is taken (and then a second call is out of turn).
    r.client.receiveShares(r.routed(['s00', 's04', 's05', 's06']));
    await refused(() => r.client.receiveShares(all), status.FAILED_PRECONDITION, msg("receiveShares is not allowed at stage 'received'"));
  });

  it('receiveShares under SecAgg+ counts the holders of its own shares in U2, not U2', async () => {
    const r = await dealt(33, { kind: 'harary', k: 12 }, 7);
    const far = r.ids.filter((v) => v !== ME && !r.nbrs.get(ME)!.has(v));
    const u2 = [ME, ...far.slice(0, 8)];
    await refused(
      () => r.client.receiveShares(r.routed(u2)),
      status.FAILED_PRECONDITION,
      msg("U2 has 9 clients (1 of them hold this client's shares); threshold is 7"),
    );
  });

  it('maskedInput: y = x + PRG(b) ± the pair masks of its neighbours in U2, exactly as the holders of its shares rebuild it', async () => {
    const me = 's16'; // neighbours on both sides of its id: pair masks of both signs
    const r = await dealt(33, { kind: 'harary', k: 12 }, 7, {}, M, me);
    const gone = [...r.nbrs.get(me)!].sort()[0]; // a neighbour that sent no shares: no pair mask with it
    const u2 = r.ids.filter((v) => v !== gone);
    r.client.receiveShares(r.routed(u2));
    await refused(() => r.client.maskedInput(new Uint32Array(M - 1)), status.INVALID_ARGUMENT, msg(`input of ${M - 1} values, round expects ${M}`));
    const x = Uint32Array.from({ length: M }, (_, i) => 1000 * i + 7);
    const before = hexOf(x);
    const y = r.client.maskedInput(x, seedOf('update'));
    expect(hexOf(x)).to.equal(before); // not in place
    // b from t of the b-shares s00 sealed to its holders (opened by them), the pair keys from their side of X25519.
    const holders = r.holders(me).filter((h) => h !== me);
    const bShares = holders
      .slice(0, 7)
      .map((h) => r.byId.get(h)!.openShares(r.sid, me, r.mine.encPublicKey, r.own.shares.find((s) => s.to === h)!.ciphertext)[0]);
    const b = await reconstruct(bShares, 7);
    const want = x.slice();
    addMask(want, b, 1);
    expect([...r.nbrs.get(me)!].some((v) => v < me) && [...r.nbrs.get(me)!].some((v) => v > me)).to.equal(true);
    for (const v of r.nbrs.get(me)!) {
      if (v === gone) continue;
      addMask(want, pairKey(r.sid, me, v, agree(r.byId.get(v)!.mask.secretKey, r.mine.maskPublicKey)), me < v ? 1 : -1);
    }
    expect(hexOf(y)).to.equal(hexOf(want));
    expect(r.ledgerStates.at(-1)!.masked).to.deep.equal({ [`run-h\u0000${BASE}`]: { [hex(seedOf('update'))]: hex(r.sid) } });
    await refused(() => r.client.maskedInput(x), status.FAILED_PRECONDITION, msg("maskedInput is not allowed at stage 'masked'"));
  });

  it('maskedInput in place masks the vector it is given; without a digest the ledger keys the update by its first 64 bytes', async () => {
    const r = await dealt(5, { kind: 'full' }, 3, {}, 20);
    r.client.receiveShares(r.routed(r.ids));
    const x = Uint32Array.from({ length: 20 }, (_, i) => i);
    const y = r.client.maskedInput(x, undefined, true);
    expect(y).to.equal(x);
    expect(r.ledgerStates.at(-1)!.masked).to.deep.equal({
      [`run-h\u0000${BASE}`]: { [`encoded:${Buffer.from(Uint32Array.from({ length: 16 }, (_, i) => i).buffer).toString('hex')}`]: hex(r.sid) },
    });
  });

  it('consistency refuses lists that do not add up, naming why; signs the session and both lists; a repeat gets the same signature', async () => {
    const r = await dealt(5, { kind: 'full' }, 3);
    r.client.receiveShares(r.routed(r.ids));
    await refused(
      () => r.client.consistency({ survivors: r.ids, dropped: [] }),
      status.FAILED_PRECONDITION,
      msg("consistency is not allowed at stage 'received'"),
    );
    r.client.maskedInput(new Uint32Array(M), seedOf('u'));
    const cases: [ConsistencyCheck, status, string][] = [
      [{ survivors: ['s00', 's02', 's01', 's03'], dropped: ['s04'] }, status.INVALID_ARGUMENT, 'survivors and dropped must be sorted and unique'],
      [{ survivors: ['s00', 's01', 's02'], dropped: ['s04', 's03'] }, status.INVALID_ARGUMENT, 'survivors and dropped must be sorted and unique'],
      [{ survivors: ['s00', 's01', 's02', 's03'], dropped: ['s03', 's04'] }, status.INVALID_ARGUMENT, 'a client is both a survivor and dropped'],
      [{ survivors: ['s00', 's01', 's02', 's03'], dropped: [] }, status.INVALID_ARGUMENT, 'survivors ∪ dropped must equal U2'],
      [{ survivors: ['s00', 's01', 's02', 's03'], dropped: ['s05'] }, status.INVALID_ARGUMENT, 'survivors ∪ dropped must equal U2'],
      [{ survivors: ['s00', 's01'], dropped: ['s02', 's03', 's04'] }, status.FAILED_PRECONDITION, '2 survivors, threshold is 3'],
      [{ survivors: ['s01', 's02', 's03', 's04'], dropped: ['s00'] }, status.FAILED_PRECONDITION, 's00 sent its input but is not listed as a survivor'],
    ];
    for (const [check, code, m] of cases) await refused(() => r.client.consistency(check), code, msg(m));
    const check = { survivors: ['s00', 's01', 's02', 's03'], dropped: ['s04'] };
    const sig = r.client.consistency(check);
    expect(sig.from).to.equal(ME);
    expect(verifyDetached(consistencyDigest(r.sid, check.survivors, check.dropped), sig.signature, r.byId.get(ME)!.idKeys.publicKey)).to.equal(true);
    expect(r.client.consistency({ survivors: [...check.survivors], dropped: [...check.dropped] })).to.equal(sig);
    for (const other of [
      { survivors: ['s00', 's01', 's02', 's04'], dropped: ['s03'] },
      { survivors: ['s00', 's01', 's02', 's03', 's04'], dropped: [] },
    ]) {
      await refused(() => r.client.consistency(other), status.FAILED_PRECONDITION, msg('already signed different survivor lists in this session'));
    }
  });

  it('consistency under SecAgg+ refuses survivors whose graph is disconnected', async () => {
    const r = await dealt(33, { kind: 'harary', k: 12 }, 7);
    r.client.receiveShares(r.routed(r.ids));
    r.client.maskedInput(new Uint32Array(M), seedOf('u'));
    // Two gaps of 6 on the session's ring, s00 in one of the two arcs.
    const ring = sessionPermutation(r.ids, r.sid);
    const at = ring.indexOf(ME);
    const gone = new Set([1, 2, 3, 4, 5, 6, 17, 18, 19, 20, 21, 22].map((d) => ring[(at + d) % 33]));
    const check = { survivors: r.ids.filter((v) => !gone.has(v)), dropped: r.ids.filter((v) => gone.has(v)) };
    await refused(
      () => r.client.consistency(check),
      status.FAILED_PRECONDITION,
      msg("the survivors' graph is disconnected: unmasking would reveal partial sums"),
    );
  });

  it('unmask: only for the lists it signed, only with a quorum of valid signatures from distinct survivors; the answer exactly', async () => {
    const check = { survivors: ['s00', 's01', 's02', 's03'], dropped: ['s04'] };
    const r = await signed(check);
    const [s0, s1, s2, s3] = r.sigs;
    const req = (over: Partial<UnmaskRequest>): UnmaskRequest => ({ ...check, signatures: [s0, s1, s2], ...over });
    const differ = "the unmask request's lists differ from the lists this client signed";
    for (const lists of [
      { survivors: ['s00', 's01', 's02', 's04'], dropped: ['s03'] },
      { survivors: ['s00', 's01', 's02', 's03'], dropped: ['s05'] },
      { survivors: ['s00', 's01', 's02', 's03', 's04'], dropped: ['s04'] },
      { survivors: ['s00', 's01', 's02', 's03'], dropped: ['s04', 's05'] },
    ]) {
      await refused(() => r.client.unmask(req(lists)), status.FAILED_PRECONDITION, msg(differ));
    }
    const dropped = r.byId.get('s04')!.sign(r.sid, check.survivors, check.dropped);
    await refused(
      () => r.client.unmask(req({ signatures: [s0, dropped, s1] })),
      status.INVALID_ARGUMENT,
      msg('consistency signature from s04, who is not a survivor'),
    );
    await refused(() => r.client.unmask(req({ signatures: [s1, s1, s2] })), status.INVALID_ARGUMENT, msg('two consistency signatures from s01'));
    const forged = { from: 's02', signature: s3.signature };
    await refused(
      () => r.client.unmask(req({ signatures: [s0, forged, s1] })),
      status.UNAUTHENTICATED,
      msg('consistency signature of s02 does not verify for these lists in this session'),
    );
    await refused(
      () => r.client.unmask(req({ signatures: [s3, s1] })),
      status.FAILED_PRECONDITION,
      msg('2 valid consistency signatures over these lists; 3 needed before revealing shares'),
    );
    expect(r.ledgerStates.at(-1)!.revealed).to.deep.equal({});
    // A quorum first: what follows it is not looked at (a forged or a stranger's signature).
    const full = req({ signatures: [s2, s0, s1, forged, dropped] });
    const resp = r.client.unmask(full);
    expect(r.ledgerStates.at(-1)!.revealed).to.deep.equal({ [`run-h\u0000${BASE}`]: hex(r.sid) });
    // b-shares of the survivors and the dropped site's sk-share, in dealer order, each the one dealt to s00.
    expect(resp.from).to.equal(ME);
    expect(resp.bShares.map((s) => s.of)).to.deep.equal(['s00', 's01', 's02', 's03']);
    expect(resp.skShares.map((s) => s.of)).to.deep.equal(['s04']);
    for (const s of resp.bShares.slice(1)) expect(hex(s.share)).to.equal(hex(r.byId.get(s.of)!.dealt.get(ME)![0]));
    expect(hex(resp.skShares[0].share)).to.equal(hex(r.byId.get('s04')!.dealt.get(ME)![1]));
    expect(hex(shareCommitment(r.sid, ME, ME, 'b', resp.bShares[0].share))).to.equal(hex(r.own.shares.find((s) => s.to === ME)!.bCommitment));
    expect(r.client.unmask({ ...check, signatures: [s0, s1, s2] })).to.equal(resp); // the same lists: the same answer
    await refused(
      () => r.client.unmask(req({ survivors: ['s00', 's01', 's02', 's04'], dropped: ['s03'] })),
      status.FAILED_PRECONDITION,
      msg('already answered a different unmask request in this round'),
    );
    await refused(
      () => r.client.unmask(req({ survivors: ['s00', 's01', 's02', 's03'], dropped: ['s05'] })),
      status.FAILED_PRECONDITION,
      msg('already answered a different unmask request in this round'),
    );
  });

  it('unmask with exactly t survivors and two dropped: lists that differ in one place only are refused; shares routed in any order are answered in dealer order', async () => {
    const check = { survivors: ['s00', 's01', 's02'], dropped: ['s03', 's04'] };
    const r = await signed(check, true); // t = 3 survivors is enough to sign
    const signatures = r.sigs;
    for (const lists of [
      { survivors: ['s00', 's01', 's03'], dropped: ['s03', 's04'] },
      { survivors: ['s00', 's01', 's02'], dropped: ['s03', 's05'] },
      { survivors: ['s00', 's01', 's02'], dropped: ['s05', 's04'] },
    ]) {
      await refused(
        () => r.client.unmask({ ...lists, signatures }),
        status.FAILED_PRECONDITION,
        msg("the unmask request's lists differ from the lists this client signed"),
      );
    }
    const resp = r.client.unmask({ ...check, signatures });
    expect([resp.bShares.map((s) => s.of), resp.skShares.map((s) => s.of)]).to.deep.equal([check.survivors, check.dropped]);
    for (const s of resp.skShares) expect(hex(s.share)).to.equal(hex(r.byId.get(s.of)!.dealt.get(ME)![1]));
  });

  it('unmask refuses before the client signed, naming the stage', async () => {
    const r = await dealt(5, { kind: 'full' }, 3);
    r.client.receiveShares(r.routed(r.ids));
    await refused(
      () => r.client.unmask({ survivors: r.ids, dropped: [], signatures: [] }),
      status.FAILED_PRECONDITION,
      msg("unmask is not allowed at stage 'received'"),
    );
  });
});
