// The SecAgg server's end of a round (proto/secagg/server.ts: closeMaskedInput, the consistency signatures,
// addUnmaskResponse, missing/ready and finish), against sites played by hand in this file rather than by the
// project's SecAggClient: each site here deals, commits, masks, signs and reveals with the protocol's primitives,
// so a test can make one site deviate (commit to another seed, share another mask key, deal inconsistent or
// malformed shares) and the expected sum is Σ x over U3 added up here. Found missing by mutation testing
// (bench/MUTATION.md, group secagg-server); every refusal is checked by code and whole message.
import { status } from '@grpc/grpc-js';
import { SecAggServer } from '../proto/secagg/server';
import type { GraphSpec } from '../proto/secagg/config';
import type { UnmaskResponse } from '../proto/secagg/messages';
import { sessionPermutation } from '../proto/secagg/graph';
import { SHARE_BYTES, dealShares } from '../proto/secagg/shares';
import { M, Site, advertised, hexOf, idsOf, seedOf, type Deviation, refused } from './secagg-hand';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** A round through closeShareKeys: every site advertised and dealt (with `dev` for the deviating ones). */
async function toMaskedInput(n: number, graph: GraphSpec, t: number, dev: Record<string, Deviation> = {}) {
  const { ids, cfg, sites, byId, srv, sid, nbrs, holders, encKeys } = advertised(n, graph, t);
  for (const s of sites) srv.addShareKeys(await s.shareKeys(sid, holders(s.id), t, encKeys, dev[s.id]));
  srv.closeShareKeys();
  const input = (ids2: readonly string[]): void => {
    for (const id of ids2)
      srv.addMaskedInput(
        id,
        byId.get(id)!.masked(
          sid,
          [...nbrs.get(id)!].map((v) => byId.get(v)!),
        ),
      );
  };
  return { ids, cfg, sites, byId, srv, sid, nbrs, holders, input };
}

/** Through closeConsistency: `inputs` send masked inputs, every survivor signs. */
async function toUnmask(n: number, t: number, inputs: string[], dev: Record<string, Deviation> = {}) {
  const r = await toMaskedInput(n, { kind: 'full' }, t, dev);
  r.input(inputs);
  const check = r.srv.closeMaskedInput();
  for (const id of [...check.survivors].reverse()) r.srv.addConsistency(r.byId.get(id)!.sign(r.sid, check.survivors, check.dropped));
  const req = r.srv.closeConsistency();
  return { ...r, check, req };
}

function plainSum(sites: readonly Site[]): Uint32Array {
  const out = new Uint32Array(M);
  for (const s of sites) for (let i = 0; i < M; i++) out[i] = (out[i] + s.x[i]) >>> 0;
  return out;
}

describe('secagg server, exactly (sites played by hand)', function () {
  this.timeout(60_000);

  it('a round with a dropped site: the sum is exactly Σ x over U3; missing(), ready(), the signatures and signers as they go', async () => {
    const r = await toMaskedInput(5, { kind: 'full' }, 3);
    r.input(['s00', 's01', 's02', 's03']); // s04 dealt its shares, then sent no input
    const check = r.srv.closeMaskedInput();
    expect(check).to.deep.equal({ survivors: ['s00', 's01', 's02', 's03'], dropped: ['s04'] });
    // Quorum max(t, ⌊5/2⌋ + 1) = 3: missing counts down to 0 and never below.
    expect(r.srv.signaturesMissing()).to.equal(3);
    for (const id of ['s03', 's01']) r.srv.addConsistency(r.byId.get(id)!.sign(r.sid, check.survivors, check.dropped));
    expect(r.srv.signaturesMissing()).to.equal(1);
    expect(r.srv.signers).to.deep.equal(['s01', 's03']);
    for (const id of ['s02', 's00']) r.srv.addConsistency(r.byId.get(id)!.sign(r.sid, check.survivors, check.dropped));
    expect(r.srv.signaturesMissing()).to.equal(0);
    const req = r.srv.closeConsistency();
    expect(req.signatures.map((s) => s.from)).to.deep.equal(['s00', 's01', 's02', 's03']);
    expect([req.survivors, req.dropped]).to.deep.equal([check.survivors, check.dropped]);
    expect(r.srv.missing()).to.deep.equal(['b(s00)', 'b(s01)', 'b(s02)', 'b(s03)', 'sk(s04)']);
    expect(r.srv.ready()).to.equal(false);
    const dealers = r.sites;
    for (const id of ['s02', 's00']) r.srv.addUnmaskResponse(r.byId.get(id)!.reveal(dealers, check.survivors));
    expect(r.srv.missing()).to.deep.equal(['b(s00)', 'b(s01)', 'b(s02)', 'b(s03)', 'sk(s04)']);
    r.srv.addUnmaskResponse(r.byId.get('s03')!.reveal(dealers, check.survivors));
    expect(r.srv.missing()).to.deep.equal([]);
    expect(r.srv.ready()).to.equal(true);
    const sum = await r.srv.finish();
    expect(hexOf(sum)).to.equal(hexOf(plainSum(r.sites.slice(0, 4))));
    expect(r.srv.stage).to.equal('done');
    expect(r.srv.ready()).to.equal(false); // the shares are still held, but nothing is left to rebuild
  });

  it('every stage refuses a call out of turn, naming it and the stage', async () => {
    const r = await toMaskedInput(5, { kind: 'full' }, 3);
    const fresh = new SecAggServer(r.cfg, {});
    expect(fresh.ready()).to.equal(false); // nothing missing at 'advertise', and still not ready
    const stage = (what: string, s: string): string => `secagg: ${what} is not accepted at stage '${s}'`;
    await refused(() => fresh.closeMaskedInput(), status.FAILED_PRECONDITION, stage('closing the masked-input stage', 'advertise'));
    await refused(() => r.srv.addConsistency(r.sites[0].sign(r.sid, [], [])), status.FAILED_PRECONDITION, stage('a consistency signature', 'maskedInput'));
    await refused(() => r.srv.closeConsistency(), status.FAILED_PRECONDITION, stage('closing the consistency stage', 'maskedInput'));
    await refused(() => r.srv.addUnmaskResponse(r.sites[0].reveal([], [])), status.FAILED_PRECONDITION, stage('an unmask response', 'maskedInput'));
    await refused(() => r.srv.finish(), status.FAILED_PRECONDITION, stage('finish', 'maskedInput'));
    expect(r.srv.stage).to.equal('maskedInput');
  });

  it('closeMaskedInput aborts with the reason: fewer than t inputs; a secret with fewer than t live holders; a disconnected survivor graph', async () => {
    const few = await toMaskedInput(5, { kind: 'full' }, 3);
    few.input(['s00', 's03']);
    await refused(() => few.srv.closeMaskedInput(), status.ABORTED, 'secagg: round aborted: 2 masked inputs; threshold is 3');
    expect(few.srv.stage).to.equal('aborted');
    // SecAgg+ at N = 33: k = 12 (the least the config allows), t = 7. On the session's ring each site holds for the
    // 6 on either side, so 7 sites in a row that drop leave each of them exactly 6 live holders.
    const n = 33;
    const starved = await toMaskedInput(n, { kind: 'harary', k: 12 }, 7);
    const ring = sessionPermutation(starved.ids, starved.sid);
    const gap = ring.slice(0, 7);
    starved.input(starved.ids.filter((id) => !gap.includes(id)));
    await refused(
      () => starved.srv.closeMaskedInput(),
      status.ABORTED,
      `secagg: round aborted: fewer than 7 live holders for the secrets of ${[...gap].sort().join(', ')}`,
    );
    expect(starved.srv.stage).to.equal('aborted');
    // Two gaps of 6 cut the ring in two arcs (10 and 11 survivors); every secret keeps exactly 7 live holders.
    const split = await toMaskedInput(n, { kind: 'harary', k: 12 }, 7);
    const ring2 = sessionPermutation(split.ids, split.sid);
    const gone = [...ring2.slice(0, 6), ...ring2.slice(16, 22)];
    split.input(split.ids.filter((id) => !gone.includes(id)));
    await refused(() => split.srv.closeMaskedInput(), status.ABORTED, "secagg: round aborted: the survivors' graph is disconnected");
    // The same survivors but one site of a gap back: connected, and it goes on.
    const joined = await toMaskedInput(n, { kind: 'harary', k: 12 }, 7);
    const ring3 = sessionPermutation(joined.ids, joined.sid);
    const gone3 = [...ring3.slice(0, 6), ...ring3.slice(16, 21)];
    joined.input(joined.ids.filter((id) => !gone3.includes(id)));
    expect(joined.srv.closeMaskedInput().dropped).to.deep.equal([...gone3].sort());
  });

  it('closeConsistency aborts below the quorum, with the numbers', async () => {
    const r = await toMaskedInput(5, { kind: 'full' }, 3);
    r.input(r.ids);
    const check = r.srv.closeMaskedInput();
    for (const id of ['s01', 's04']) r.srv.addConsistency(r.byId.get(id)!.sign(r.sid, check.survivors, check.dropped));
    await refused(() => r.srv.closeConsistency(), status.ABORTED, 'secagg: round aborted: 2 survivors signed the lists; 3 needed');
  });

  it('addUnmaskResponse refuses a share the responder was not dealt (sparse graph), and a share its dealer committed to that is not 33 bytes or has another x', async () => {
    // s01 deals s00 a b-share with x = 5; s02 deals s00 one with a 34th byte. Each commits to what it dealt.
    const dev: Record<string, Deviation> = {
      s01: { bShares: (d) => d.map((s, i) => (i === 0 ? Uint8Array.from(s, (b, j) => (j === SHARE_BYTES - 1 ? 5 : b)) : s)) },
      s02: {
        bShares: (d) => d.map((s, i) => (i === 0 ? Uint8Array.from([...s, 7]) : s)),
        plaintext: (b, sk) => Uint8Array.from([...b.subarray(0, SHARE_BYTES), ...sk]), // sealed as usual: the server sees only sizes
      },
    };
    const r = await toUnmask(5, 3, idsOf(5), dev);
    const honest = r.byId.get('s00')!.reveal(r.sites, r.check.survivors);
    const without = (of: string): UnmaskResponse => ({ ...honest, bShares: honest.bShares.filter((s) => s.of !== of) });
    await refused(() => r.srv.addUnmaskResponse(without('s02')), status.INVALID_ARGUMENT, 'secagg: invalid Shamir share from holder s00 for dealer s01 (b)');
    await refused(() => r.srv.addUnmaskResponse(without('s01')), status.INVALID_ARGUMENT, 'secagg: invalid Shamir share from holder s00 for dealer s02 (b)');
    // SecAgg+: s00 holds no shares of a site that is not its neighbour.
    const sparse = await toMaskedInput(33, { kind: 'harary', k: 12 }, 7);
    sparse.input(sparse.ids);
    const check = sparse.srv.closeMaskedInput();
    for (const id of check.survivors) sparse.srv.addConsistency(sparse.byId.get(id)!.sign(sparse.sid, check.survivors, check.dropped));
    sparse.srv.closeConsistency();
    const far = sparse.ids.find((v) => v !== 's00' && !sparse.nbrs.get('s00')!.has(v))!;
    const mine = sparse.byId.get('s00')!.reveal(
      sparse.holders('s00').map((v) => sparse.byId.get(v)!),
      check.survivors,
    );
    const stray = { ...mine, bShares: [...mine.bShares, { of: far, share: mine.bShares[0].share }] };
    await refused(() => sparse.srv.addUnmaskResponse(stray), status.INVALID_ARGUMENT, `secagg: s00 holds no shares of ${far}`);
    sparse.srv.addUnmaskResponse(mine);
  });

  it('finish aborts when a rebuilt secret is not the committed one: a seed, a mask key; or when too few answered', async () => {
    const seed = await toUnmask(5, 3, idsOf(5), { s01: { committedSeed: seedOf('another seed') } });
    for (const id of ['s00', 's01', 's02']) seed.srv.addUnmaskResponse(seed.byId.get(id)!.reveal(seed.sites, seed.check.survivors));
    await refused(() => seed.srv.finish(), status.ABORTED, 'secagg: round aborted: the rebuilt mask seed of s01 does not match its commitment');
    expect(seed.srv.stage).to.equal('aborted');
    const key = await toUnmask(5, 3, ['s00', 's01', 's02', 's03'], { s04: { sharedMaskKey: seedOf('another mask key') } });
    for (const id of ['s00', 's01', 's02']) key.srv.addUnmaskResponse(key.byId.get(id)!.reveal(key.sites, key.check.survivors));
    await refused(() => key.srv.finish(), status.ABORTED, 'secagg: round aborted: the rebuilt mask key of s04 does not match its advertised public key');
    const few = await toUnmask(5, 3, ['s00', 's01', 's02', 's03']);
    for (const id of ['s03', 's01']) few.srv.addUnmaskResponse(few.byId.get(id)!.reveal(few.sites, few.check.survivors));
    await refused(() => few.srv.finish(), status.ABORTED, 'secagg: round aborted: too few unmask responses to rebuild b(s00), b(s01), b(s02), b(s03), sk(s04)');
  });

  it('rebuilds each secret from the t lowest holder ids, whatever order the answers came in', async () => {
    // s01 deals shares of its seed to s00, s01, s02 and of another seed to s03, s04: only the first three rebuild
    // the committed seed. Answers arrive highest id first.
    const other = await dealShares(seedOf('inconsistent'), idsOf(5), 3);
    const dev: Record<string, Deviation> = { s01: { bShares: (d) => d.map((s, i) => (i < 3 ? s : other[i])) } };
    const r = await toUnmask(5, 3, idsOf(5), dev);
    for (const id of [...r.ids].reverse()) r.srv.addUnmaskResponse(r.byId.get(id)!.reveal(r.sites, r.check.survivors));
    const sum = await r.srv.finish();
    expect(hexOf(sum)).to.equal(hexOf(plainSum(r.sites)));
  });
});
