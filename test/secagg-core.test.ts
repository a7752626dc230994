// proto/secagg: encoding, primitives, and whole SecAgg / SecAgg+ rounds in memory. The invariant throughout:
// the server's result is bit-identical to plain fixed-point FedAvg (decodeSum(sumVectors(encoded))) over U3.
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { status } from '@grpc/grpc-js';
import { ProtocolError } from '../proto/errors';
import type { NamedTensor } from '../proto/tensors';
import {
  SecAggClient,
  SecAggServer,
  addMask,
  agree,
  chooseGraph,
  decodeSum,
  dealShares,
  encodeUpdate,
  holdersOf,
  isConnected,
  isLowOrder,
  neighbours,
  quantisation,
  reconstruct,
  sumVectors,
  validateConfig,
  vectorLayout,
  advertisementDigest,
  signDetached,
  type SecAggRoundConfig,
  type Advertisement,
  type UnmaskResponse,
  type GraphSpec,
} from '../proto/secagg';
import { simulateRound, type SimClient, type SimDrops } from '../proto/secagg/simulate';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const seedOf = (s: string): Uint8Array => new Uint8Array(createHash('sha256').update(s).digest());
const t = (name: string, values: number[], shape: number[] = [values.length]): NamedTensor => ({
  name,
  dtype: 'float32',
  shape,
  data: Float32Array.from(values),
});
const hexOf = (a: Uint32Array | Float32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('hex');
const idOf = (i: number): string => `c${String(i).padStart(3, '0')}`;

/** Deterministic test data (not cryptographic: deltas only). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296) * 2 - 1;
}

function baseConfig(over: Partial<SecAggRoundConfig> = {}): SecAggRoundConfig {
  return {
    roundTag: 'run1/r1/a0',
    baseManifestSha256: 'ab'.repeat(32),
    selected: [],
    threshold: 3,
    graph: { kind: 'full' },
    clipNorm: 1,
    weightCap: 100,
    maxClients: 1024,
    include: ['x'],
    vectorLength: 4,
    ...over,
  };
}

/** n clients with small adapters (two tensors, only lora_B summed), their encoded updates, and a config. */
function setup(n: number, opts: { graph?: GraphSpec; threshold?: number; roundTag?: string } = {}) {
  const ids = Array.from({ length: n }, (_, i) => idOf(i));
  const global = [t('l.lora_A', Array.from({ length: 6 }, lcg(1)), [2, 3]), t('l.lora_B', Array.from({ length: 8 }, lcg(2)), [4, 2])];
  const include = ['l.lora_B'];
  const chosen = chooseGraph(n);
  const cfg: SecAggRoundConfig = baseConfig({
    roundTag: opts.roundTag ?? 'run1/r1/a0',
    selected: ids,
    graph: opts.graph ?? chosen.graph,
    threshold: opts.threshold ?? chosen.threshold,
    include,
    vectorLength: vectorLayout(global, include).length,
    maxClients: 1024,
  });
  const identities = ids.map((id) => nacl.sign.keyPair.fromSeed(seedOf(`identity-${id}`)));
  const encoded = new Map(
    ids.map((id, i) => {
      const r = lcg(100 + i);
      const delta = global.map((g) =>
        t(
          g.name,
          Array.from(g.data, () => 0.3 * r()),
          [...g.shape],
        ),
      );
      return [id, encodeUpdate(delta, 10 + 7 * i, cfg, seedOf(`round-${id}`))];
    }),
  );
  const clients: SimClient[] = ids.map((id, i) => ({
    id,
    identitySecretKey: identities[i].secretKey,
    identityPublicKey: identities[i].publicKey,
    input: () => encoded.get(id)!,
  }));
  return { ids, cfg, global, clients, encoded, identities };
}

async function expectRejection(f: () => unknown, code: status, pattern: RegExp): Promise<void> {
  let caught: unknown;
  try {
    await f();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected a ProtocolError matching ${pattern}`).to.be.instanceOf(ProtocolError);
  expect((caught as ProtocolError).message).to.match(pattern);
  expect((caught as ProtocolError).code, (caught as ProtocolError).message).to.equal(code);
}

/** Runs a round and checks the result against plain fixed-point FedAvg over the survivors. */
async function roundMatchesPlain(s: ReturnType<typeof setup>, drops: SimDrops = {}): Promise<readonly string[]> {
  const res = await simulateRound(s.cfg, s.clients, drops);
  const gone = new Set([...(drops.beforeAdvertise ?? []), ...(drops.beforeShares ?? []), ...(drops.beforeInput ?? [])]);
  expect(res.survivors).to.deep.equal(s.ids.filter((id) => !gone.has(id)));
  const plain = sumVectors(res.survivors.map((id) => s.encoded.get(id)!));
  expect(hexOf(res.sum)).to.equal(hexOf(plain));
  const a = decodeSum(res.sum, s.cfg, s.global).adapter;
  const b = decodeSum(plain, s.cfg, s.global).adapter;
  expect(a.map((x) => hexOf(x.data))).to.deep.equal(b.map((x) => hexOf(x.data)));
  return res.survivors;
}

describe('secagg encoding', () => {
  const cfg = baseConfig({ selected: ['a', 'b', 'c', 'd', 'e'], include: ['x'], vectorLength: 4 });
  const M = 2 ** 21 - 1; // maxClients 1024 → b = 22 bits

  it("quantises hand-checked values: weight slot, two's complement, stochastic rounding to a neighbour", () => {
    expect(quantisation(cfg)).to.deep.equal({ bits: 22, maxAbs: M, valueScale: M, weightScale: M });
    const v = encodeUpdate([t('x', [0.5, -0.25, 0])], 100, cfg, seedOf('s'));
    expect(v[0]).to.equal(M);
    expect([1048575, 1048576]).to.include(v[1]); // 0.5·M = 1048575.5
    expect([2 ** 32 - 524288, 2 ** 32 - 524287]).to.include(v[2]); // −524287.75
    expect(v[3]).to.equal(0);
    expect(encodeUpdate([t('x', [0.5, -0.25, 0])], 50, cfg, seedOf('s'))[0]).to.equal(Math.round(0.5 * M));
    expect(encodeUpdate([t('x', [0.5, -0.25, 0])], 5000, cfg, seedOf('s'))[0]).to.equal(M); // capped
  });

  it('clips to the L2 norm and keeps excluded tensors out of the vector', () => {
    const c2 = baseConfig({ selected: cfg.selected, include: ['y'], vectorLength: 3 });
    const v = encodeUpdate([t('a', [100, 100]), t('y', [3, 4])], 100, c2, seedOf('s')); // ‖y‖ = 5 → ×0.2
    expect(v.length).to.equal(3);
    expect(Math.abs(v[1] - 0.6 * M)).to.be.lessThan(1);
    expect(Math.abs(v[2] - 0.8 * M)).to.be.lessThan(1);
    expect(() => encodeUpdate([t('a', [1, 1])], 1, c2, seedOf('s'))).to.throw(ProtocolError, /not in the adapter/);
    expect(() => encodeUpdate([t('y', [1, NaN])], 1, c2, seedOf('s'))).to.throw(ProtocolError, /not finite/);
    expect(() => encodeUpdate([t('y', [1, 2, 3])], 1, c2, seedOf('s'))).to.throw(ProtocolError, /round expects 3/);
  });

  it('rounds stochastically without bias, deterministically for a given seed', () => {
    const n = 20000;
    const c = baseConfig({ selected: cfg.selected, vectorLength: n + 1, clipNorm: 1e6 });
    const s = quantisation(c).valueScale;
    const x = new Float32Array(n).fill(Math.fround((1000 + 0.3) / s));
    const exact = x[0] * s;
    const v = encodeUpdate([{ name: 'x', dtype: 'float32', shape: [n], data: x }], 100, c, seedOf('u'));
    let ups = 0;
    for (let i = 1; i <= n; i++) {
      expect(v[i] === Math.floor(exact) || v[i] === Math.floor(exact) + 1).to.equal(true);
      ups += v[i] - Math.floor(exact);
    }
    expect(Math.abs(ups / n - (exact - Math.floor(exact)))).to.be.lessThan(0.015); // sd ≈ 0.0032
    expect(hexOf(encodeUpdate([{ name: 'x', dtype: 'float32', shape: [n], data: x }], 100, c, seedOf('u')))).to.equal(hexOf(v));
    expect(hexOf(encodeUpdate([{ name: 'x', dtype: 'float32', shape: [n], data: x }], 100, c, seedOf('w')))).to.not.equal(hexOf(v));
  });

  it('decodes one client to its delta within a grid step; excluded tensors keep the global values', () => {
    const c = baseConfig({ selected: cfg.selected, include: ['y'], vectorLength: 4 });
    const global = [t('a', [1, 2]), t('y', [0.5, 0.5, 0.5])];
    const delta = [t('a', [9, 9]), t('y', [0.1, -0.2, 0.3])];
    const { adapter, totalWeight } = decodeSum(encodeUpdate(delta, 100, c, seedOf('d')), c, global);
    expect(totalWeight).to.equal(1);
    expect(Array.from(adapter[0].data)).to.deep.equal([1, 2]);
    const step = 1 / quantisation(c).valueScale;
    adapter[1].data.forEach((v, i) => expect(Math.abs(v - (0.5 + delta[1].data[i]))).to.be.lessThan(step + 1e-7));
  });

  it('never wraps at N = maxClients with every value at ±clip', () => {
    for (const maxClients of [8, 1000]) {
      const c = baseConfig({ selected: cfg.selected, maxClients, vectorLength: 3, clipNorm: 2 });
      const { maxAbs } = quantisation(c);
      const global = [t('x', [0, 0])];
      for (const x of [
        [2, 0],
        [0, -2],
        [Math.SQRT2, -Math.SQRT2],
      ]) {
        const vs = Array.from({ length: maxClients }, (_, i) => encodeUpdate([t('x', x)], 100, c, seedOf(`v${i}`)));
        const sum = sumVectors(vs);
        const ints = new Int32Array(sum.buffer);
        expect(ints[0]).to.equal(maxClients * maxAbs);
        if (x[0] === 2) expect(ints[1]).to.equal(maxClients * maxAbs);
        if (x[1] === -2) expect(ints[2]).to.equal(-maxClients * maxAbs);
        const mean = decodeSum(sum, c, global).adapter[0].data;
        expect(mean[0]).to.be.closeTo(Math.fround(x[0]), 1e-5);
        expect(mean[1]).to.be.closeTo(Math.fround(x[1]), 1e-5);
      }
    }
  });

  it('sums order-independently mod 2^32', () => {
    const a = Uint32Array.from([0xffffffff, 1, 7]);
    const b = Uint32Array.from([2, 0xfffffffe, 9]);
    expect(Array.from(sumVectors([a, b]))).to.deep.equal([1, 0xffffffff, 16]);
    expect(hexOf(sumVectors([b, a]))).to.equal(hexOf(sumVectors([a, b])));
  });
});

describe('secagg primitives', () => {
  it('validates configs and chooses graphs', () => {
    expect(chooseGraph(5)).to.deep.equal({ graph: { kind: 'full' }, threshold: 3 });
    expect(chooseGraph(20)).to.deep.equal({ graph: { kind: 'full' }, threshold: 11 });
    expect(chooseGraph(60)).to.deep.equal({ graph: { kind: 'harary', k: 12 }, threshold: 7 });
    expect(chooseGraph(1000, 32)).to.deep.equal({ graph: { kind: 'harary', k: 20 }, threshold: 11 });
    const ok = baseConfig({ selected: ['a', 'b', 'c', 'd', 'e'] });
    expect(() => validateConfig(ok)).to.not.throw();
    expect(() => validateConfig({ ...ok, selected: ['a', 'b', 'c', 'd'] })).to.throw(ProtocolError, /at least 5/);
    expect(() => validateConfig({ ...ok, threshold: 1 })).to.throw(ProtocolError, /threshold/);
    expect(() => validateConfig({ ...ok, threshold: 6 })).to.throw(ProtocolError, /threshold/);
    expect(() => validateConfig({ ...ok, threshold: 2 })).to.throw(ProtocolError, /exceed half/);
    expect(() => validateConfig({ ...ok, graph: { kind: 'harary', k: 3 } })).to.throw(ProtocolError, /even/);
    expect(() => validateConfig({ ...ok, selected: ['b', 'a', 'c', 'd', 'e'] })).to.throw(ProtocolError, /sorted/);
  });

  it('masks cancel: +PRG then −PRG restores the vector; keystream depends on the key', () => {
    const x = Uint32Array.from({ length: 40000 }, (_, i) => i * 2654435761);
    const y = Uint32Array.from(x);
    addMask(y, seedOf('k'), 1);
    expect(hexOf(y)).to.not.equal(hexOf(x));
    const z = Uint32Array.from(y);
    addMask(y, seedOf('k'), -1);
    expect(hexOf(y)).to.equal(hexOf(x));
    addMask(z, seedOf('k2'), -1);
    expect(hexOf(z)).to.not.equal(hexOf(x));
  });

  it('X25519: agrees with nacl.scalarMult, rejects every low-order point as an all-zero DH share', () => {
    for (let i = 0; i < 4; i++) {
      const a = nacl.box.keyPair();
      const b = nacl.box.keyPair();
      expect(hexOf(new Float32Array(agree(a.secretKey, b.publicKey).buffer))).to.equal(
        hexOf(new Float32Array(nacl.scalarMult(a.secretKey, b.publicKey).buffer)),
      );
      expect(isLowOrder(b.publicKey)).to.equal(false);
    }
    const sk = nacl.box.keyPair().secretKey;
    const lowOrder = [
      '00'.repeat(32),
      '01' + '00'.repeat(31),
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
      'ecff'.padEnd(62, 'f') + '7f',
      'ecff'.padEnd(62, 'f') + 'ff',
    ];
    for (const h of lowOrder) {
      const pk = new Uint8Array(Buffer.from(h, 'hex'));
      expect(
        nacl.scalarMult(sk, pk).every((x) => x === 0),
        h,
      ).to.equal(true);
      expect(isLowOrder(pk), h).to.equal(true);
      expect(() => agree(sk, pk))
        .to.throw(ProtocolError, /all-zero DH share/)
        .with.property('code', status.INVALID_ARGUMENT);
    }
  });

  it('Harary graphs are symmetric, k-regular, connected and fixed by the session id', () => {
    const ids = Array.from({ length: 40 }, (_, i) => idOf(i));
    const g = neighbours(ids, { kind: 'harary', k: 8 }, seedOf('s1'));
    for (const [a, ns] of g) {
      expect(ns.size).to.equal(8);
      expect(ns.has(a)).to.equal(false);
      for (const b of ns) expect(g.get(b)!.has(a)).to.equal(true);
    }
    expect(isConnected(ids, g)).to.equal(true);
    const same = neighbours(ids, { kind: 'harary', k: 8 }, seedOf('s1'));
    const other = neighbours(ids, { kind: 'harary', k: 8 }, seedOf('s2'));
    expect(ids.map((i) => [...same.get(i)!].sort().join())).to.deep.equal(ids.map((i) => [...g.get(i)!].sort().join()));
    expect(ids.map((i) => [...other.get(i)!].sort().join())).to.not.deep.equal(ids.map((i) => [...g.get(i)!].sort().join()));
    expect(holdersOf(g, ids[0])).to.have.length(9);
    // Connectivity is judged on the induced subgraph: a path through a removed vertex does not count.
    const path4 = new Map([
      ['a', new Set(['b'])],
      ['b', new Set(['a', 'c'])],
      ['c', new Set(['b', 'd'])],
      ['d', new Set(['c'])],
    ]);
    expect(isConnected(['a', 'b', 'c', 'd'], path4)).to.equal(true);
    expect(isConnected(['a', 'c', 'd'], path4)).to.equal(false);
    expect(
      isConnected(
        ['a', 'b'],
        new Map([
          ['a', new Set<string>()],
          ['b', new Set<string>()],
        ]),
      ),
    ).to.equal(false);
  });

  it('Shamir: holder i gets x = i + 1; any t shares rebuild the secret, t − 1 do not', async () => {
    const secret = seedOf('secret');
    const holders = ['h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'h7'];
    const shares = await dealShares(secret, holders, 4);
    expect(shares.map((s) => s[32])).to.deep.equal([1, 2, 3, 4, 5, 6, 7]);
    expect(hexOf(new Float32Array((await reconstruct([shares[6], shares[1], shares[3], shares[0]], 4)).buffer))).to.equal(
      hexOf(new Float32Array(secret.buffer)),
    );
    const partial = await reconstruct(shares.slice(0, 3), 3);
    expect(Buffer.from(partial).equals(Buffer.from(secret))).to.equal(false);
  });
});

describe('secagg rounds in memory', function () {
  this.timeout(60_000);

  for (const n of [5, 10, 20]) {
    it(`N = ${n}, full graph: bit-identical to plain fixed-point FedAvg`, async () => {
      await roundMatchesPlain(setup(n));
    });
  }

  it('N = 60, Harary graph (k = 12, t = 7), with dropouts at every stage: bit-identical over U3', async () => {
    const s = setup(60);
    expect(s.cfg.graph).to.deep.equal({ kind: 'harary', k: 12 });
    await roundMatchesPlain(s);
    await roundMatchesPlain(setup(60), {
      beforeAdvertise: [idOf(3)],
      beforeShares: [idOf(10), idOf(11)],
      beforeInput: [idOf(20), idOf(40)],
      beforeUnmask: [idOf(50), idOf(59)],
    });
  });

  it('a client with an injected random source is deterministic', () => {
    const s = setup(5);
    const mk = (): Advertisement =>
      new SecAggClient({
        config: s.cfg,
        clientId: s.ids[0],
        identitySecretKey: s.identities[0].secretKey,
        random: (n) => seedOf('fixed').subarray(0, n),
      }).advertise();
    expect(hexOf(new Float32Array(mk().maskPublicKey.buffer))).to.equal(hexOf(new Float32Array(mk().maskPublicKey.buffer)));
  });

  describe('dropouts up to N − t, at each stage (N = 10, t = 6)', () => {
    const drop = (k: number): string[] => [1, 4, 6, 8, 9].slice(0, k).map(idOf);
    const stages: [keyof SimDrops, string][] = [
      ['beforeAdvertise', 'closeAdvertise'],
      ['beforeShares', 'closeShareKeys'],
      ['beforeInput', 'closeMaskedInput'],
      ['beforeConsistency', 'closeConsistency'],
      ['beforeUnmask', 'finish'],
    ];
    for (const [stage, fails] of stages) {
      it(`${stage}: 4 dropped → exact over U3; 5 dropped → ${fails} aborts`, async () => {
        await roundMatchesPlain(setup(10), { [stage]: drop(4) });
        await expectRejection(() => simulateRound(setup(10).cfg, setup(10).clients, { [stage]: drop(5) }), status.ABORTED, /round aborted/);
      });
    }
    it('mixed: 1 before shares, 1 before input, 1 before signing, 1 during unmask → exact over the 8 survivors', async () => {
      const u3 = await roundMatchesPlain(setup(10), { beforeShares: [idOf(2)], beforeInput: [idOf(5)], beforeConsistency: [idOf(9)], beforeUnmask: [idOf(0)] });
      expect(u3).to.have.length(8);
    });
  });
});

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

describe('secagg masked vectors look uniform', () => {
  it('byte histogram passes chi-square, and y is uncorrelated with x, for all-zero and ramp inputs', async () => {
    const s = setup(5);
    const n = 1 << 16;
    const cfg = { ...s.cfg, vectorLength: n };
    const srv = new SecAggServer(cfg, Object.fromEntries(s.ids.map((id, i) => [id, s.identities[i].publicKey])));
    const cs = s.ids.map((id, i) => new SecAggClient({ config: cfg, clientId: id, identitySecretKey: s.identities[i].secretKey }));
    for (const c of cs) srv.addAdvertisement(c.advertise());
    const roster = srv.closeAdvertise();
    for (const c of cs) srv.addShareKeys(await c.shareKeys(roster));
    const { routed } = srv.closeShareKeys();
    cs.forEach((c) => c.receiveShares(routed(c.clientId)));
    const inputs = [new Uint32Array(n), Uint32Array.from({ length: n }, (_, i) => i)];
    inputs.forEach((x, k) => {
      const y = cs[k].maskedInput(x);
      const hist = new Float64Array(256);
      for (const b of new Uint8Array(y.buffer)) hist[b]++;
      const e = (4 * n) / 256;
      const chi2 = hist.reduce((acc, o) => acc + ((o - e) * (o - e)) / e, 0);
      expect(chi2, 'chi-square, 255 dof').to.be.lessThan(350); // p ≈ 1e-4
      const yf = Float64Array.from(y);
      const xf = k === 0 ? Float64Array.from({ length: n }, (_, i) => i) : Float64Array.from(x); // zeros: y vs position
      const mean = (a: Float64Array): number => a.reduce((p, q) => p + q, 0) / a.length;
      const [mx, my] = [mean(xf), mean(yf)];
      let sxy = 0,
        sxx = 0,
        syy = 0;
      for (let i = 0; i < n; i++) {
        sxy += (xf[i] - mx) * (yf[i] - my);
        sxx += (xf[i] - mx) ** 2;
        syy += (yf[i] - my) ** 2;
      }
      expect(Math.abs(sxy / Math.sqrt(sxx * syy))).to.be.lessThan(0.02); // sd ≈ 0.004
    });
  });
});
