// proto/secagg's primitives: configs and graphs, PRG masks, X25519, Harary graphs, Shamir sharing.
import nacl from 'tweetnacl';
import { status } from '@grpc/grpc-js';
import { ProtocolError } from '../proto/errors';
import { addMask, agree, chooseGraph, dealShares, holdersOf, isConnected, isLowOrder, neighbours, reconstruct, validateConfig } from '../proto/secagg';
import { baseConfig, hexOf, idOf, seedOf } from './secagg-core-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

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
