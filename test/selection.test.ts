// coordinator/selection.ts (and the seeded shuffle beneath it): seeds derived from the master seed and labels,
// and client selection that depends only on the set of connected ids and the seed.
import { createHash } from 'node:crypto';
import { deriveSeed, selectClients } from '../coordinator/selection';
import { seededRandom, seededShuffle } from '../proto/shuffle';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ids = (n: number, prefix = 'client-'): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [[...xs]];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}

describe('deriveSeed', () => {
  it('is the first 4 bytes (LE) of SHA-256 over the JSON of [master, ...labels]', () => {
    const want = createHash('sha256').update('[42,"select",3,1]').digest().readUInt32LE(0);
    expect(deriveSeed(42, 'select', 3, 1)).to.equal(want);
    expect(deriveSeed(0)).to.equal(createHash('sha256').update('[0]').digest().readUInt32LE(0));
    // Pinned values, so that a manifest's seeds keep reproducing the same run across releases.
    expect(deriveSeed(42, 'select', 3, 1)).to.equal(1437046882);
    expect(deriveSeed(0)).to.equal(295812304);
    expect(deriveSeed(5, 'train', 1, 1, 'c1')).to.equal(1367178832);
  });

  it('is a deterministic unsigned 32-bit integer', () => {
    for (let m = 0; m < 200; m++) {
      const s = deriveSeed(m, 'train', m % 7, 'client-3');
      expect(Number.isInteger(s) && s >= 0 && s < 2 ** 32).to.equal(true);
      expect(deriveSeed(m, 'train', m % 7, 'client-3')).to.equal(s);
    }
  });

  it('changes with the master seed, each label, label order and label type', () => {
    const base = deriveSeed(7, 'train', 2, 1, 'c');
    const variants = [
      deriveSeed(8, 'train', 2, 1, 'c'),
      deriveSeed(7, 'select', 2, 1, 'c'),
      deriveSeed(7, 'train', 3, 1, 'c'),
      deriveSeed(7, 'train', 2, 2, 'c'),
      deriveSeed(7, 'train', 2, 1, 'd'),
      deriveSeed(7, 'train', 1, 2, 'c'),
      deriveSeed(7, 'train', '2', 1, 'c'),
      deriveSeed(7, 'train', 2, 1),
      deriveSeed(7, 'train,2', 1, 'c'),
    ];
    expect(new Set([base, ...variants]).size).to.equal(variants.length + 1);
  });

  it('spreads consecutive rounds over the 32-bit range', () => {
    const seeds = Array.from({ length: 1000 }, (_, r) => deriveSeed(42, 'select', r, 1));
    expect(new Set(seeds).size).to.equal(1000);
    const high = seeds.filter((s) => s >= 2 ** 31).length;
    expect(high).to.be.within(430, 570);
  });
});

describe('selectClients', () => {
  it('is deterministic for a seed and returns a sorted subset of distinct connected ids', () => {
    const pool = ids(20);
    const a = selectClients(pool, 6, 2, 123);
    expect(a).to.deep.equal(selectClients(pool, 6, 2, 123));
    expect(a).to.have.length(6);
    expect(a).to.deep.equal([...a].sort());
    expect(new Set(a).size).to.equal(6);
    for (const id of a) expect(pool).to.include(id);
  });

  it('does not depend on the order ids are given in (every order of 6 ids; shuffles of 50)', () => {
    const small = ids(6);
    for (const [count, seed] of [
      [3, 1],
      [0.5, 2],
      [1, 3],
    ] as const) {
      const ref = selectClients(small, count, 1, seed);
      for (const p of permutations(small)) expect(selectClients(p, count, 1, seed)).to.deep.equal(ref);
    }
    const big = ids(50);
    const ref = selectClients(big, 10, 2, 99);
    for (let k = 0; k < 20; k++) expect(selectClients(seededShuffle(big, k, 'order'), 10, 2, 99)).to.deep.equal(ref);
  });

  it('ignores duplicate ids', () => {
    const pool = ids(8);
    expect(selectClients([...pool, ...pool, pool[3]], 4, 1, 5)).to.deep.equal(selectClients(pool, 4, 1, 5));
    expect(selectClients(['a', 'a', 'a'], 2, 1, 5)).to.deep.equal(['a']);
  });

  it('treats clientsPerRound ≥ 1 as a count (fractional counts rounded down), never more than connected', () => {
    const pool = ids(10);
    for (const [cpr, want] of [
      [1, 1],
      [3, 3],
      [3.9, 3],
      [10, 10],
      [11, 10],
      [100, 10],
    ] as const) {
      expect(selectClients(pool, cpr, 1, 7), String(cpr)).to.have.length(want);
    }
    expect(selectClients(pool, 100, 1, 7)).to.deep.equal([...pool].sort());
  });

  it('treats clientsPerRound < 1 as a fraction of the connected clients, rounded up', () => {
    for (const n of [1, 2, 3, 7, 10, 33]) {
      for (const f of [0.01, 0.1, 0.25, 0.5, 0.75, 0.99]) {
        expect(selectClients(ids(n), f, 1, 11), `${f} of ${n}`).to.have.length(Math.min(n, Math.max(1, Math.ceil(f * n))));
      }
    }
    expect(selectClients(ids(10), 0.3, 1, 1)).to.have.length(3);
    expect(selectClients(ids(10), 0.31, 1, 1)).to.have.length(4);
  });

  it('is not pushed up a client by floating-point noise in fraction × connected', () => {
    // In floats 0.28 × 25 = 7.000000000000001 and 0.14 × 50 = 7.000000000000001; both mean exactly 7.
    expect(0.28 * 25).to.be.above(7);
    expect(selectClients(ids(25), 0.28, 1, 1)).to.have.length(7);
    expect(selectClients(ids(50), 0.14, 1, 1)).to.have.length(7);
    for (let n = 1; n <= 200; n++) {
      for (let p = 1; p < 100; p++) {
        const want = Math.max(1, Math.ceil((p * n) / 100)); // exact in integers
        expect(selectClients(ids(n, 'c'), p / 100, 1, 1).length, `${p}% of ${n}`).to.equal(want);
      }
    }
  });

  it('never selects fewer than minUpdates (or 1) while that many are connected', () => {
    const pool = ids(10);
    expect(selectClients(pool, 2, 5, 3)).to.have.length(5);
    expect(selectClients(pool, 0.1, 4, 3)).to.have.length(4);
    expect(selectClients(pool, 0.01, 0, 3)).to.have.length(1);
    expect(selectClients(pool, 3, 12, 3)).to.have.length(10);
    expect(selectClients(ids(2), 0.5, 3, 3)).to.have.length(2);
    expect(selectClients([], 5, 2, 3)).to.deep.equal([]);
  });

  it('varies with the seed and picks every client about equally often', () => {
    const pool = ids(10);
    const counts = new Map(pool.map((id) => [id, 0]));
    const distinct = new Set<string>();
    const rounds = 2000;
    for (let r = 0; r < rounds; r++) {
      const sel = selectClients(pool, 3, 1, deriveSeed(42, 'select', r, 1));
      distinct.add(sel.join(','));
      for (const id of sel) counts.set(id, counts.get(id)! + 1);
    }
    expect(distinct.size).to.be.greaterThan(100); // of C(10,3) = 120 subsets
    for (const [id, c] of counts) expect(c / rounds, id).to.be.within(0.25, 0.35);
  });

  it('is stable when a larger count is asked: the first k of the seeded order, so smaller picks nest in larger ones', () => {
    const pool = ids(15);
    for (const seed of [1, 2, 3]) {
      const small = selectClients(pool, 4, 1, seed);
      const large = selectClients(pool, 9, 1, seed);
      for (const id of small) expect(large).to.include(id);
    }
  });
});

describe('seeded shuffle', () => {
  it('returns a permutation of a copy, reproducible by (seed, label) and different across labels and seeds', () => {
    const xs = ids(30);
    const copy = [...xs];
    const a = seededShuffle(xs, 5, 'split:x');
    expect(xs).to.deep.equal(copy);
    expect([...a].sort()).to.deep.equal([...xs].sort());
    expect(seededShuffle(xs, 5, 'split:x')).to.deep.equal(a);
    expect(seededShuffle(xs, 5, 'split:y')).to.not.deep.equal(a);
    expect(seededShuffle(xs, 6, 'split:x')).to.not.deep.equal(a);
    expect(a).to.not.deep.equal(xs);
    expect(seededShuffle([], 1, 'x')).to.deep.equal([]);
    expect(seededShuffle(['only'], 1, 'x')).to.deep.equal(['only']);
  });

  it('puts each item in each position about equally often', () => {
    const n = 5;
    const hits = Array.from({ length: n }, () => new Array(n).fill(0));
    const trials = 5000;
    for (let s = 0; s < trials; s++) seededShuffle([0, 1, 2, 3, 4], s, 'uniform').forEach((v, pos) => hits[v][pos]++);
    for (const row of hits) for (const h of row) expect(h / trials).to.be.within(0.17, 0.23);
  });

  it('seededRandom draws in [0, 1), reproducibly', () => {
    const r1 = seededRandom(3, 'x');
    const r2 = seededRandom(3, 'x');
    for (let i = 0; i < 1000; i++) {
      const v = r1();
      expect(v).to.equal(r2());
      expect(v >= 0 && v < 1).to.equal(true);
    }
  });
});
