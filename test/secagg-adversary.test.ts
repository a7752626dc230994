// An active coordinator against honest sites, in memory: the core classes (SecAggClient, SecAggServer) driven
// by hand so that the "coordinator" can send what the real one never would. Each attack of issue 13 fails AT THE
// SITE: the site throws a ProtocolError with a clear message and returns nothing, so no share or mask key
// leaves it. The honest path with the same machinery (operator-certified identities) staying bit-identical to plain
// fixed-point FedAvg, and the operator's roster file: secagg-operator-roster.test.ts. Shared set-up:
// test/secagg-adversary-kit.ts.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import nacl from 'tweetnacl';
import { status } from '@grpc/grpc-js';
import {
  SecAggClient,
  SecAggLedger,
  advertisementDigest,
  certifyIdentity,
  fileLedger,
  signDetached,
  sumVectors,
  updateDigest,
  validateConfig,
  type Advertisement,
  type ConsistencySignature,
  type IdentityTrust,
  type Roster,
  type UnmaskResponse,
} from '../proto/secagg';
import { RUN, refused, throughMaskedInput, view, world } from './secagg-adversary-kit';
import { hexOf, seedOf } from './secagg-core-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('secagg against an active coordinator (in memory): each attack fails at the site', function () {
  this.timeout(60_000);

  it('issue 13 #1, full graph N = 5: per-site views (target a survivor for some holders, its neighbours dropped for others) get too few signatures; no share leaves the sites shown the minority view', async () => {
    const w = world(5);
    await throughMaskedInput(w);
    const [T, a, b, c, d] = w.ids;
    // View A: T, a, b survive (c, d "dropped"): its holders would give b-shares of T and mask keys of c, d.
    // View B: T, c, d survive (a, b "dropped"): mask keys of a, b. Together: every mask on T's input.
    const A = view([T, a, b], w.ids);
    const B = view([T, c, d], w.ids);
    const sigA = [a, b].map((id) => w.clients[w.ids.indexOf(id)].consistency(A));
    const sigB = [c, d].map((id) => w.clients[w.ids.indexOf(id)].consistency(B));
    const sigT = w.clients[0].consistency(A); // the target signs what it is shown
    // A site signs one view per session.
    await refused(() => w.clients[0].consistency(B), status.FAILED_PRECONDITION, /already signed different survivor lists/);
    // B's holders: 2 signatures over B, quorum 3. Nothing is revealed.
    for (const id of [c, d])
      await refused(
        () => w.clients[w.ids.indexOf(id)].unmask({ ...B, signatures: sigB }),
        status.FAILED_PRECONDITION,
        /2 valid consistency signatures over these lists; 3 needed/,
      );
    // Padding B with a signature over A does not verify for B's lists.
    await refused(
      () => w.clients[3].unmask({ ...B, signatures: [...sigB, sigT] }),
      status.UNAUTHENTICATED,
      /consistency signature of s000 does not verify for these lists/,
    );
    // The unsigned unmask request of the original attack: refused outright.
    await refused(() => w.clients[3].unmask({ ...B, signatures: [] }), status.FAILED_PRECONDITION, /0 valid consistency signatures/);
    // Lists other than the ones the site signed, even with a quorum behind them: refused.
    await refused(
      () => w.clients[3].unmask({ ...A, signatures: [...sigA, sigT] }),
      status.FAILED_PRECONDITION,
      /lists differ from the lists this client signed/,
    );
    // View A does gather 3 signatures, so its holders answer, but only for A: b-shares of T, a, b and mask keys of
    // c, d. T's pair masks with a and b stay on its input: the coordinator gets x_T + x_a + x_b, a sum over U3.
    const resps: UnmaskResponse[] = [w.clients[0], w.clients[1], w.clients[2]].map((x) => x.unmask({ ...A, signatures: [...sigA, sigT] }));
    for (const r of resps) {
      expect(r.bShares.map((x) => x.of)).to.deep.equal([T, a, b]);
      expect(r.skShares.map((x) => x.of)).to.deep.equal([c, d]);
    }
    // c and d never reveal: no b-share of c, d and no mask key of a, b exists anywhere outside the sites.
    const revealed = resps.flatMap((r) => [...r.bShares.map((x) => `b:${x.of}`), ...r.skShares.map((x) => `sk:${x.of}`)]);
    expect(revealed.some((x) => x === 'sk:s001' || x === 'sk:s002' || x === `sk:${T}`)).to.equal(false);
    // A second, different unmask request to a site that answered: refused.
    await refused(() => w.clients[1].unmask({ ...B, signatures: sigB }), status.FAILED_PRECONDITION, /already answered a different unmask request/);
  });

  it('SecAgg+ N = 40 (k = 12, t = 7): two halves shown different lists each hold ≥ t signatures but not a majority of U1: every site refuses', async () => {
    const w = world(40);
    expect(w.cfg.graph).to.deep.equal({ kind: 'harary', k: 12 });
    await throughMaskedInput(w);
    const half = w.ids.slice(0, 20);
    const other = w.ids.slice(20);
    // Each view drops one site of the other half, which is still connected for the view's signers.
    const A = view(
      w.ids.filter((v) => v !== other[0]),
      w.ids,
    );
    const B = view(
      w.ids.filter((v) => v !== half[0]),
      w.ids,
    );
    const sigA: ConsistencySignature[] = [];
    const sigB: ConsistencySignature[] = [];
    for (const id of half.slice(1)) sigA.push(w.clients[w.ids.indexOf(id)].consistency(A));
    for (const id of other.slice(1)) sigB.push(w.clients[w.ids.indexOf(id)].consistency(B));
    expect(sigA.length).to.be.at.least(w.cfg.threshold);
    for (const id of [...half.slice(1, 4), ...other.slice(1, 4)]) {
      const mine = half.includes(id) ? { ...A, signatures: sigA } : { ...B, signatures: sigB };
      await refused(() => w.clients[w.ids.indexOf(id)].unmask(mine), status.FAILED_PRECONDITION, /19 valid consistency signatures over these lists; 21 needed/);
    }
  });

  it("issue 13 #2: a made-up roster (the coordinator's key in a peer's name) is refused before any share is sealed, with a pinned allow-list or an operator-signed roster", async () => {
    const operator = nacl.sign.keyPair.fromSeed(seedOf('operator'));
    const mallory = nacl.sign.keyPair.fromSeed(seedOf('mallory'));
    const base = world(5);
    const certs = Object.fromEntries(base.ids.map((id, i) => [id, certifyIdentity(operator.secretKey, RUN, id, base.identities[i].publicKey)]));
    const trusts: [string, IdentityTrust, RegExp][] = [
      [
        'allow-list',
        { kind: 'allowList', keys: Object.fromEntries(base.ids.map((id, i) => [id, base.identities[i].publicKey])) },
        /the roster's identity key for s001 is not the one this site trusts/,
      ],
      [
        'operator key',
        { kind: 'operator', publicKey: operator.publicKey, runId: RUN },
        /the roster's identity key for s001 has no valid certificate from the pinned roster key/,
      ],
    ];
    for (const [, trust, pattern] of trusts) {
      const w = world(5, { trust: () => trust, certificates: certs });
      for (const c of w.clients) w.srv.addAdvertisement(c.advertise());
      const honest = w.srv.closeAdvertise();
      // The coordinator replaces s001 by a key pair of its own and re-signs s001's advertisement with it.
      const fakeEnc = nacl.box.keyPair.fromSecretKey(seedOf('fake-enc'));
      const fakeMask = nacl.box.keyPair.fromSecretKey(seedOf('fake-mask'));
      const fakeAd: Advertisement = {
        clientId: w.ids[1],
        encPublicKey: fakeEnc.publicKey,
        maskPublicKey: fakeMask.publicKey,
        signature: signDetached(advertisementDigest(w.cfg, w.ids[1], fakeEnc.publicKey, fakeMask.publicKey), mallory.secretKey),
      };
      const fake: Roster = {
        ...honest,
        advertisements: honest.advertisements.map((x) => (x.clientId === w.ids[1] ? fakeAd : x)),
        identityKeys: { ...honest.identityKeys, [w.ids[1]]: mallory.publicKey },
      };
      await refused(() => w.clients[0].shareKeys(fake), status.UNAUTHENTICATED, pattern);
      // An operator certificate for another run does not carry over.
      if (trust.kind === 'operator') {
        const otherRun = {
          ...honest,
          certificates: { ...certs, [w.ids[2]]: certifyIdentity(operator.secretKey, 'other-run', w.ids[2], w.identities[2].publicKey) },
        };
        await refused(() => w.clients[0].shareKeys(otherRun), status.UNAUTHENTICATED, /key for s002 has no valid certificate/);
      }
      // The honest roster passes: the site then deals its shares.
      expect((await w.clients[0].shareKeys(honest)).shares).to.have.length(5);
    }
    // Without a pinned key the coordinator remains the key authority: the same fake roster is accepted (README).
    const w = world(5);
    for (const c of w.clients) w.srv.addAdvertisement(c.advertise());
    const honest = w.srv.closeAdvertise();
    const fakeEnc = nacl.box.keyPair.fromSecretKey(seedOf('fake-enc'));
    const fakeAd: Advertisement = {
      clientId: w.ids[1],
      encPublicKey: fakeEnc.publicKey,
      maskPublicKey: fakeEnc.publicKey,
      signature: signDetached(advertisementDigest(w.cfg, w.ids[1], fakeEnc.publicKey, fakeEnc.publicKey), mallory.secretKey),
    };
    const fake: Roster = {
      ...honest,
      advertisements: honest.advertisements.map((x) => (x.clientId === w.ids[1] ? fakeAd : x)),
      identityKeys: { ...honest.identityKeys, [w.ids[1]]: mallory.publicKey },
    };
    expect((await w.clients[0].shareKeys(fake)).shares).to.have.length(5);
  });

  it('issue 13 #7: a graph weaker than 2⌈log2 N⌉ or a threshold below a strict majority of holders is refused by the client', async () => {
    const w = world(40);
    const id = nacl.sign.keyPair().secretKey;
    for (const k of [2, 4, 10]) {
      await refused(
        () => new SecAggClient({ config: { ...w.cfg, graph: { kind: 'harary', k }, threshold: k / 2 + 1 }, clientId: w.ids[0], identitySecretKey: id }),
        status.INVALID_ARGUMENT,
        new RegExp(`graph degree ${k} is below the minimum 12`),
      );
    }
    await refused(
      () => new SecAggClient({ config: { ...w.cfg, threshold: 6 }, clientId: w.ids[0], identitySecretKey: id }),
      status.INVALID_ARGUMENT,
      /threshold 6 must exceed half of the 13 holders/,
    );
    expect(() => validateConfig({ ...w.cfg, graph: { kind: 'harary', k: 12 }, threshold: 7 })).to.not.throw();
  });

  it('issue 13 #4: a replayed task cannot mask the same update into a second sum, nor get a second unmask over the same checkpoint (also after a restart, with a file ledger)', async () => {
    const n = 5;
    const ledgers = Array.from({ length: n }, () => new SecAggLedger());
    // Session 1 masks, then is "aborted" by the coordinator before unmasking.
    const w1 = world(n, { roundTag: `${RUN}/r1/a1`, ledgers });
    await throughMaskedInput(w1);
    // Session 2 (a replay over the same checkpoint) gets the very same updates: the sites refuse to mask them.
    const w2 = world(n, { roundTag: `${RUN}/r1/a2`, ledgers });
    for (const c of w2.clients) w2.srv.addAdvertisement(c.advertise());
    const roster = w2.srv.closeAdvertise();
    for (const c of w2.clients) w2.srv.addShareKeys(await c.shareKeys(roster));
    const { routed } = w2.srv.closeShareKeys();
    w2.clients.forEach((c) => c.receiveShares(routed(c.clientId)));
    await refused(
      () => w2.clients[0].maskedInput(w2.encoded[0], updateDigest(w2.deltas[0], 10, w2.cfg.include)),
      status.FAILED_PRECONDITION,
      /this update was already masked into another sum/,
    );
    // A new update (retrained with a new seed) is fine, and session 2 completes and is unmasked.
    const check = (() => {
      w2.clients.forEach((c, i) => {
        const fresh = [{ ...w2.deltas[i][0], data: w2.deltas[i][0].data.map((x) => x * 0.5) }];
        w2.srv.addMaskedInput(c.clientId, c.maskedInput(w2.encoded[i], updateDigest(fresh, 10 + i, w2.cfg.include)));
      });
      return w2.srv.closeMaskedInput();
    })();
    for (const c of w2.clients) w2.srv.addConsistency(c.consistency(check));
    const req = w2.srv.closeConsistency();
    for (const c of w2.clients) w2.srv.addUnmaskResponse(c.unmask(req));
    expect(hexOf(await w2.srv.finish())).to.equal(hexOf(sumVectors(w2.encoded)));
    // Session 1's unmask, asked for now: every site refuses (it answered one over this checkpoint already).
    const check1 = w1.srv.closeMaskedInput();
    const sigs1 = w1.clients.map((c) => c.consistency(check1));
    for (const c of w1.clients)
      await refused(
        () => c.unmask({ ...check1, signatures: sigs1 }),
        status.FAILED_PRECONDITION,
        /already revealed unmask shares for a sum over base checkpoint efefefefefef/,
      );
    // A third session over the same checkpoint is refused at once, before any key is made.
    const w3 = world(n, { roundTag: `${RUN}/r1/a3`, ledgers });
    await refused(() => w3.clients[0].advertise(), status.FAILED_PRECONDITION, /already revealed unmask shares/);
    // The record survives a restart of the site when it is kept in a file.
    const dir = mkdtempSync(join(tmpdir(), 'secagg-ledger-'));
    try {
      const path = join(dir, 'ledger.json');
      fileLedger(path).recordReveal(RUN, 'ef'.repeat(32), 'aa'.repeat(32));
      const restarted = world(n, { roundTag: `${RUN}/r1/a4`, ledgers: Array.from({ length: n }, () => fileLedger(path)) });
      await refused(() => restarted.clients[0].advertise(), status.FAILED_PRECONDITION, /already revealed unmask shares/);
      expect(() => world(n, { roundTag: 'other-run/r1/a1' }).clients[0].advertise()).to.not.throw();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
