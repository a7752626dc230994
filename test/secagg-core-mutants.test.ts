// Exact checks on the SecAgg core (proto/secagg/*) that mutation testing found missing (bench/MUTATION.md, groups
// secagg-encoding, secagg-server, secagg-client): each asserts bytes, values or a whole message, against
// references computed here without the project's code where the project's code is what is under test.
import { createHash } from 'node:crypto';
import { DOMAIN, bytesEqual, cmpId, hashParts, hex, isSortedUnique } from '../proto/secagg/bytes';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sha256 = (...chunks: Buffer[]): string => createHash('sha256').update(Buffer.concat(chunks)).digest('hex');

describe('secagg core, exactly', () => {
  it('hashParts frames each part as a type tag, a little-endian u32 length and the bytes (hand-built preimage)', () => {
    const preimage = [
      Buffer.from([0, 1, 0, 0, 0]),
      Buffer.from('d'),
      Buffer.from([1, 2, 0, 0, 0, 0xc3, 0xa9]), // 'é' in UTF-8
      Buffer.from([2, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0x70, 0x40]), // 258 as a little-endian float64
      Buffer.from([3, 3, 0, 0, 0, 7, 8, 9]),
    ];
    const bytes = new Uint8Array([0, 7, 8, 9]).subarray(1); // a view with an offset: only its own bytes count
    expect(hex(hashParts('d', 'é', 258, bytes))).to.equal(sha256(...preimage));
    // The empty string and the empty byte array are different parts (tags 1 and 3), with length 0.
    expect(hex(hashParts('', '', new Uint8Array(0)))).to.equal(sha256(Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 3, 0, 0, 0, 0])));
  });

  it('uses exactly the protocol’s domain strings (a peer built from the spec derives the same keys)', () => {
    expect(DOMAIN).to.deep.equal({
      advertise: 'fedtune/secagg/v1/advertise',
      session: 'fedtune/secagg/v1/session',
      shareKeys: 'fedtune/secagg/v1/share-keys',
      pairMask: 'fedtune/secagg/v1/pair-mask',
      shareEnc: 'fedtune/secagg/v1/share-encryption',
      shareAad: 'fedtune/secagg/v1/share-aad',
      shareCommit: 'fedtune/secagg/v1/share-commitment',
      secretCommit: 'fedtune/secagg/v1/self-mask-seed',
      graph: 'fedtune/secagg/v1/graph-permutation',
      consistency: 'fedtune/secagg/v1/consistency',
      identityCert: 'fedtune/secagg/v1/identity-certificate',
      update: 'fedtune/secagg/v1/update-digest',
    });
  });

  it('bytesEqual, hex, cmpId and isSortedUnique answer exactly', () => {
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).to.equal(true);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).to.equal(false);
    expect(bytesEqual(new Uint8Array([1, 2]), new Uint8Array([1, 2, 0]))).to.equal(false);
    expect(hex(new Uint8Array([0xff, 0x0a, 0x01, 0x02]).subarray(1, 3))).to.equal('0a01');
    expect([cmpId('a', 'b'), cmpId('b', 'a'), cmpId('a', 'a')]).to.deep.equal([-1, 1, 0]);
    // UTF-16 code-unit order: an astral character (surrogate 0xD83D…) sorts before U+FF5E.
    expect(cmpId('\u{1F600}', '\uFF5E')).to.equal(-1);
    expect([[], ['a'], ['a', 'b', 'c']].map(isSortedUnique)).to.deep.equal([true, true, true]);
    expect(
      [
        ['a', 'a'],
        ['b', 'a'],
        ['a', 'c', 'b'],
        ['a', 'b', 'b'],
      ].map(isSortedUnique),
    ).to.deep.equal([false, false, false, false]);
  });
});
