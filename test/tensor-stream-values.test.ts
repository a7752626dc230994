// proto/tensor-stream.ts's decoder refusing bad values (non-finite, out of bound) and checkLayout refusing a stream
// whose tensors are not the global adapter's, each with its exact gRPC status and words.
import { status } from '@grpc/grpc-js';
import { TensorStreamDecoder, checkLayout, tensorFrames, type DecoderLimits } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';
import { LIMITS, decode, expectProtocolError, split, tensors } from './tensor-stream-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('tensor-stream: decoding', () => {
  describe('value checks', () => {
    it('NaN, +Inf and -Inf → INVALID_ARGUMENT naming tensor and element, in any position', () => {
      for (const bad of [NaN, Infinity, -Infinity]) {
        for (const [ti, i] of [
          [0, 0],
          [1, 3],
          [1, 4],
          [2, 0],
        ]) {
          const ts = tensors([2, 5, 1]);
          ts[ti].data[i] = bad;
          const err = expectProtocolError(
            () => decode([...tensorFrames(ts, 12)]),
            status.INVALID_ARGUMENT,
            `tensor t${ti} holds ${bad} at element ${i}; updates must be finite`,
          );
          expect(err.message).to.not.contain('outside');
          // Trusted downloads (requireFinite: false) pass the same bytes through.
          const back = decode([...tensorFrames(ts, 12)], { maxBytes: 1 << 20, requireFinite: false });
          expect(back[ti].data[i]).to.deep.equal(bad);
        }
      }
    });

    it('|value| ≥ maxAbs → INVALID_ARGUMENT naming the owner of the bound; just inside passes', () => {
      const lim: DecoderLimits = { maxBytes: 1 << 20, requireFinite: true, maxAbs: 128, maxAbsOwner: 'the fedavg strategy' };
      for (const bad of [128, -128, 1e30]) {
        const ts = tensors([3]);
        ts[0].data[1] = bad;
        expectProtocolError(
          () => decode([...tensorFrames(ts)], lim),
          status.INVALID_ARGUMENT,
          `tensor t0 holds ${Math.fround(bad)} at element 1; outside ±128: update refused by the fedavg strategy`,
        );
      }
      const ok = tensors([3]);
      ok[0].data[0] = Math.fround(127.99999);
      ok[0].data[2] = -Math.fround(127.99999);
      expect(decode([...tensorFrames(ok)], lim)[0].data[2]).to.equal(-Math.fround(127.99999));
      const anon = tensors([1]);
      anon[0].data[0] = 5;
      expectProtocolError(
        () => decode([...tensorFrames(anon)], { maxBytes: 1 << 20, requireFinite: true, maxAbs: 5 }),
        status.INVALID_ARGUMENT,
        'outside ±5: update refused by the receiver',
      );
      // A non-finite value is reported as such even with a range bound.
      anon[0].data[0] = NaN;
      expectProtocolError(() => decode([...tensorFrames(anon)], lim), status.INVALID_ARGUMENT, 'holds NaN at element 0; updates must be finite');
    });

    it('does not set the digest when the value check refuses the stream', () => {
      const ts = tensors([2]);
      ts[0].data[1] = NaN;
      const { header, chunks, trailer } = split([...tensorFrames(ts, 4)]);
      const d = new TensorStreamDecoder(header, LIMITS);
      for (const c of chunks) d.push(c);
      expectProtocolError(() => d.finish(trailer), status.INVALID_ARGUMENT, 'holds NaN');
      expect(d.digest).to.equal(undefined);
    });
  });

  describe('checkLayout', () => {
    const g = tensors([2, 3, 4]);
    const spec = (xs: NamedTensor[]) => xs.map((t) => ({ name: t.name, shape: [...t.shape] }));

    it('accepts the exact layout', () => {
      expect(() => checkLayout(spec(g), g)).to.not.throw();
      expect(() => checkLayout([], [])).to.not.throw();
      const m = [{ name: 'm', dtype: 'float32' as const, shape: [2, 3], data: new Float32Array(6) }];
      expect(() => checkLayout([{ name: 'm', shape: [2, 3] }], m)).to.not.throw();
    });

    it('compares shapes dimension by dimension: [1, 11] is not [11, 1], and names at most three missing tensors', () => {
      const m = [{ name: 'm', dtype: 'float32' as const, shape: [11, 1], data: new Float32Array(11) }];
      expectProtocolError(
        () => checkLayout([{ name: 'm', shape: [1, 11] }], m),
        status.INVALID_ARGUMENT,
        'tensor m has shape [1,11]; the global adapter has [11,1]',
      );
      const err = expectProtocolError(() => checkLayout([], tensors([1, 1, 1, 1])), status.INVALID_ARGUMENT, 'missing tensors');
      expect(err.message).to.equal('missing tensors: t0, t1, t2');
    });

    it('refuses unknown names, other shapes, missing tensors and another order, with INVALID_ARGUMENT', () => {
      expectProtocolError(() => checkLayout([...spec(g), { name: 'extra', shape: [1] }], g), status.INVALID_ARGUMENT, 'unexpected tensor extra');
      expectProtocolError(
        () => checkLayout([{ name: 't0', shape: [2, 1] }, ...spec(g).slice(1)], g),
        status.INVALID_ARGUMENT,
        'tensor t0 has shape [2,1]; the global adapter has [2]',
      );
      expectProtocolError(() => checkLayout(spec(g).slice(0, 1), g), status.INVALID_ARGUMENT, 'missing tensors: t1, t2');
      expectProtocolError(() => checkLayout([], g), status.INVALID_ARGUMENT, 'missing tensors: t0, t1, t2');
      expectProtocolError(() => checkLayout([spec(g)[0], spec(g)[2], spec(g)[1]], g), status.INVALID_ARGUMENT, 'tensors out of order at 1: t2');
    });
  });
});
