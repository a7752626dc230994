// proto/secagg's server refusing every bad message of a round in memory, each with its status and words, each
// leaving the state unchanged: the round still ends bit-identical.
// The invariant throughout: the server's result is bit-identical to plain fixed-point FedAvg
// (decodeSum(sumVectors(encoded))) over U3. Shared set-up: test/secagg-core-kit.ts.
import { status } from '@grpc/grpc-js';
import { SecAggClient, SecAggServer, sumVectors, advertisementDigest, signDetached, type Advertisement, type UnmaskResponse } from '../proto/secagg';
import { expectRejection, hexOf, setup } from './secagg-core-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('secagg rejections', function () {
  this.timeout(30_000);

  it('advertisements: unselected, bad signature, replay from another attempt, low-order or non-canonical key, duplicate, wrong stage', async () => {
    const s = setup(6, { threshold: 4 });
    const srv = new SecAggServer(s.cfg, Object.fromEntries(s.ids.map((id, i) => [id, s.identities[i].publicKey])));
    const clients = s.ids.map((id, i) => new SecAggClient({ config: s.cfg, clientId: id, identitySecretKey: s.identities[i].secretKey }));
    const ads = clients.map((c) => c.advertise());
    await expectRejection(() => srv.addAdvertisement({ ...ads[0], clientId: 'mallory' }), status.PERMISSION_DENIED, /not selected/);
    await expectRejection(() => srv.addAdvertisement({ ...ads[0], signature: ads[1].signature }), status.UNAUTHENTICATED, /signature/);
    const other = new SecAggClient({
      config: { ...s.cfg, roundTag: 'run1/r1/a1' },
      clientId: s.ids[0],
      identitySecretKey: s.identities[0].secretKey,
    }).advertise();
    await expectRejection(() => srv.addAdvertisement(other), status.UNAUTHENTICATED, /does not verify for this round/);
    const low = new Uint8Array(32);
    low[0] = 1;
    const lowAd: Advertisement = {
      clientId: s.ids[0],
      encPublicKey: low,
      maskPublicKey: ads[0].maskPublicKey,
      signature: signDetached(advertisementDigest(s.cfg, s.ids[0], low, ads[0].maskPublicKey), s.identities[0].secretKey),
    };
    await expectRejection(() => srv.addAdvertisement(lowAd), status.INVALID_ARGUMENT, /low-order/);
    // Bit 255 set: X25519 ignores it, so this names the same point as an honest key under a second encoding.
    const alias = Uint8Array.from(ads[0].encPublicKey);
    alias[31] |= 0x80;
    const aliasAd: Advertisement = {
      clientId: s.ids[0],
      encPublicKey: alias,
      maskPublicKey: ads[0].maskPublicKey,
      signature: signDetached(advertisementDigest(s.cfg, s.ids[0], alias, ads[0].maskPublicKey), s.identities[0].secretKey),
    };
    await expectRejection(() => srv.addAdvertisement(aliasAd), status.INVALID_ARGUMENT, /non-canonical/);
    srv.addAdvertisement(ads[0]);
    await expectRejection(() => srv.addAdvertisement(ads[0]), status.ALREADY_EXISTS, /already advertised/);
    for (const a of ads.slice(1)) srv.addAdvertisement(a);
    const roster = srv.closeAdvertise();
    await expectRejection(() => srv.addAdvertisement(ads[0]), status.FAILED_PRECONDITION, /not accepted at stage/);
    // A client refuses a roster carrying a forged advertisement.
    const forged = { ...roster, advertisements: roster.advertisements.map((a, i) => (i === 2 ? { ...a, maskPublicKey: ads[3].maskPublicKey } : a)) };
    await expectRejection(() => clients[0].shareKeys(forged), status.UNAUTHENTICATED, /no valid signature/);
  });

  it('closeAdvertise aborts below the threshold', async () => {
    const s = setup(5);
    const srv = new SecAggServer(s.cfg, Object.fromEntries(s.ids.map((id, i) => [id, s.identities[i].publicKey])));
    for (let i = 0; i < 2; i++)
      srv.addAdvertisement(new SecAggClient({ config: s.cfg, clientId: s.ids[i], identitySecretKey: s.identities[i].secretKey }).advertise());
    await expectRejection(() => srv.closeAdvertise(), status.ABORTED, /2 of 5 clients advertised keys; threshold is 3/);
  });

  it('every later-stage rejection, each leaving the state unchanged: the round still ends bit-identical', async () => {
    const s = setup(6, { threshold: 4 });
    const srv = new SecAggServer(s.cfg, Object.fromEntries(s.ids.map((id, i) => [id, s.identities[i].publicKey])));
    const clients = s.ids.map((id, i) => new SecAggClient({ config: s.cfg, clientId: id, identitySecretKey: s.identities[i].secretKey }));
    for (const c of clients) srv.addAdvertisement(c.advertise());
    const roster = srv.closeAdvertise();
    const msgs = await Promise.all(clients.map((c) => c.shareKeys(roster)));
    const [m0] = msgs;
    await expectRejection(() => srv.addShareKeys({ ...m0, from: 'mallory' }), status.PERMISSION_DENIED, /did not advertise/);
    await expectRejection(() => srv.addShareKeys({ ...m0, shares: m0.shares.slice(1) }), status.INVALID_ARGUMENT, /exactly its holders/);
    await expectRejection(
      () => srv.addShareKeys({ ...m0, shares: m0.shares.map((x, i) => (i ? x : { ...x, ciphertext: x.ciphertext.subarray(1) })) }),
      status.INVALID_ARGUMENT,
      /wrong sizes/,
    );
    const tampered = m0.shares.map((x, i) => (i ? x : { ...x, ciphertext: Uint8Array.from(x.ciphertext, (b, j) => (j === 20 ? b ^ 1 : b)) }));
    await expectRejection(() => srv.addShareKeys({ ...m0, shares: tampered }), status.UNAUTHENTICATED, /signature does not verify/);
    for (const m of msgs.slice(0, 5)) srv.addShareKeys(m);
    await expectRejection(() => srv.addShareKeys(m0), status.ALREADY_EXISTS, /already sent its shares/);
    const { u2, routed } = srv.closeShareKeys(); // c005 dropped before its shares arrived
    expect(u2).to.deep.equal(s.ids.slice(0, 5));
    await expectRejection(() => routed(s.ids[5]), status.PERMISSION_DENIED, /not in U2/);
    await expectRejection(() => clients[5].receiveShares(routed(s.ids[0])), status.FAILED_PRECONDITION, /not in U2/);
    // The client checks each routed share against the dealer's commitment.
    const r0 = routed(s.ids[0]);
    const badCommit = { ...r0, shares: r0.shares.map((x, i) => (i === 1 ? { ...x, bCommitment: r0.shares[2].bCommitment } : x)) };
    await expectRejection(() => clients[0].receiveShares(badCommit), status.INVALID_ARGUMENT, /invalid Shamir share from dealer c001 for holder c000/);
    for (let i = 0; i < 5; i++) clients[i].receiveShares(routed(s.ids[i]));
    const ys = clients.slice(0, 5).map((c) => c.maskedInput(s.encoded.get(c.clientId)!));
    await expectRejection(() => srv.addMaskedInput(s.ids[5], ys[0]), status.PERMISSION_DENIED, /not in U2/);
    await expectRejection(() => srv.addMaskedInput(s.ids[0], ys[0].subarray(1)), status.INVALID_ARGUMENT, /values, expected/);
    for (let i = 0; i < 4; i++) srv.addMaskedInput(s.ids[i], ys[i]); // c004 drops after its shares
    await expectRejection(() => srv.addMaskedInput(s.ids[0], ys[0]), status.ALREADY_EXISTS, /already sent/);
    const check = srv.closeMaskedInput();
    expect(check).to.deep.equal({ survivors: s.ids.slice(0, 4), dropped: [s.ids[4]] });
    // Client-side checks of the lists before it signs them.
    await expectRejection(
      () => clients[0].consistency({ survivors: s.ids.slice(0, 4), dropped: [s.ids[3], s.ids[4]] }),
      status.INVALID_ARGUMENT,
      /both a survivor and dropped/,
    );
    await expectRejection(
      () => clients[0].consistency({ survivors: s.ids.slice(1, 4), dropped: [s.ids[0], s.ids[4]] }),
      status.FAILED_PRECONDITION,
      /survivors, threshold/,
    );
    await expectRejection(() => clients[0].consistency({ survivors: s.ids.slice(0, 4), dropped: [] }), status.INVALID_ARGUMENT, /must equal U2/);
    await expectRejection(
      () => clients[0].consistency({ survivors: s.ids.slice(1, 5), dropped: [s.ids[0]] }),
      status.FAILED_PRECONDITION,
      /not listed as a survivor/,
    );
    await expectRejection(() => clients[0].unmask({ ...check, signatures: [] }), status.FAILED_PRECONDITION, /unmask is not allowed at stage 'masked'/);
    const sigs = clients.slice(0, 4).map((c) => c.consistency(check));
    expect(clients[0].consistency(check)).to.equal(sigs[0]); // a repeat gets the same signature
    await expectRejection(() => srv.addConsistency({ ...sigs[0], from: s.ids[4] }), status.PERMISSION_DENIED, /not a survivor/);
    await expectRejection(() => srv.addConsistency({ ...sigs[0], signature: sigs[1].signature }), status.UNAUTHENTICATED, /does not verify/);
    srv.addConsistency(sigs[0]);
    await expectRejection(() => srv.addConsistency(sigs[0]), status.ALREADY_EXISTS, /already signed/);
    for (const x of sigs.slice(1)) srv.addConsistency(x);
    const req = srv.closeConsistency();
    expect(req.signatures.map((x) => x.from)).to.deep.equal(s.ids.slice(0, 4));
    const resps = clients.slice(0, 4).map((c) => c.unmask(req));
    expect(clients[0].unmask(req)).to.equal(resps[0]); // a repeat gets the same answer
    await expectRejection(
      () => clients[0].unmask({ survivors: s.ids.slice(0, 3).concat(s.ids[4]), dropped: [s.ids[3]], signatures: req.signatures }),
      status.FAILED_PRECONDITION,
      /already answered a different/,
    );
    const r = resps[0];
    const bOf = (v: string): Uint8Array => r.bShares.find((x) => x.of === v)!.share;
    const cases: [UnmaskResponse, status, RegExp][] = [
      [{ ...r, from: s.ids[4] }, status.PERMISSION_DENIED, /not a survivor/],
      [{ ...r, bShares: [...r.bShares, { of: s.ids[5], share: bOf(s.ids[1]) }] }, status.INVALID_ARGUMENT, /which is not in U2/],
      [
        { ...r, skShares: [...r.skShares, { of: s.ids[1], share: bOf(s.ids[1]) }] },
        status.INVALID_ARGUMENT,
        /a share for a client that both sent input and is reported dropped/,
      ],
      [
        { ...r, bShares: [...r.bShares, { of: s.ids[4], share: bOf(s.ids[1]) }] },
        status.INVALID_ARGUMENT,
        /a share for a client that both sent input and is reported dropped/,
      ],
      [
        { ...r, bShares: r.bShares.map((x) => (x.of === s.ids[2] ? { of: x.of, share: Uint8Array.from(x.share, (b, j) => (j === 0 ? b ^ 1 : b)) } : x)) },
        status.INVALID_ARGUMENT,
        /invalid Shamir share from holder c000 for dealer c002/,
      ],
      [
        { ...r, bShares: r.bShares.map((x) => (x.of === s.ids[2] ? { of: x.of, share: bOf(s.ids[3]) } : x)) },
        status.INVALID_ARGUMENT,
        /invalid Shamir share from holder c000 for dealer c002/,
      ],
      [{ ...r, bShares: [...r.bShares, r.bShares[0]] }, status.INVALID_ARGUMENT, /two shares/],
    ];
    for (const [resp, code, re] of cases) await expectRejection(() => srv.addUnmaskResponse(resp), code, re);
    srv.addUnmaskResponse(resps[0]);
    await expectRejection(() => srv.addUnmaskResponse(resps[0]), status.ALREADY_EXISTS, /already answered/);
    expect(srv.ready()).to.equal(false);
    for (const x of resps.slice(1)) srv.addUnmaskResponse(x);
    expect(srv.ready()).to.equal(true);
    const sum = await srv.finish();
    expect(hexOf(sum)).to.equal(hexOf(sumVectors(s.ids.slice(0, 4).map((id) => s.encoded.get(id)!))));
    await expectRejection(() => srv.finish(), status.FAILED_PRECONDITION, /not accepted at stage 'done'/);
  });

  it('a ShareKeys message from another attempt (same client, other round tag) is refused', async () => {
    const s = setup(5);
    const keys = Object.fromEntries(s.ids.map((id, i) => [id, s.identities[i].publicKey]));
    const run = async (tag: string) => {
      const cfg = { ...s.cfg, roundTag: tag };
      const srv = new SecAggServer(cfg, keys);
      const cs = s.ids.map((id, i) => new SecAggClient({ config: cfg, clientId: id, identitySecretKey: s.identities[i].secretKey }));
      for (const c of cs) srv.addAdvertisement(c.advertise());
      const roster = srv.closeAdvertise();
      return { srv, msg: await cs[0].shareKeys(roster) };
    };
    const a = await run('run1/r1/a0');
    const b = await run('run1/r1/a1');
    await expectRejection(() => b.srv.addShareKeys(a.msg), status.UNAUTHENTICATED, /signature does not verify for this session/);
  });
});
