// The pieces under the range workers' own HTTP/2 client: gRPC's message framing read from DATA frames split
// anywhere (client-sdk/download-grpc-frames.ts) lands exactly what the messages hold, whichever protobuf layout a
// chunk uses; and the aligned copies into and out of shared memory (client-sdk/shared-copy.ts) equal plain copies
// at every alignment. fast-check, seeded.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { GrpcFrameReader } from '../client-sdk/download-grpc-frames';
import { RangeSink } from '../client-sdk/download-range-sink';
import { copyIntoShared, copyOutOfShared } from '../client-sdk/shared-copy';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import { loadFedtuneProto } from '../proto/load';
import { grpcMessage } from './download-h2-hostile';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const method = () => loadFedtuneProto().fedtune.v1.Federation.service.DownloadAdapter;

describe('gRPC framing read from DATA frames, and copies through shared memory', () => {
  it('property: any split of a range stream, any chunk layouts, lands the bytes and checks every piece', () => {
    const m = method();
    const decode = m.responseDeserialize as (b: Buffer) => TensorFrame__Output;
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40_000 }),
        fc.constantFrom(1024, 4096),
        fc.integer({ min: 1, max: 3 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.constantFrom('plain', 'unknownFirst', 'decoy'), { minLength: 1, maxLength: 8 }),
        (total, chunk, perPiece, cuts, layouts) => {
          const piece = chunk * perPiece;
          const data = Buffer.from(Array.from({ length: total }, (_, i) => (i * 131 + (i >> 8)) & 255));
          const hashes: Buffer[] = [];
          for (let at = 0; at < total; at += piece)
            hashes.push(
              createHash('sha256')
                .update(data.subarray(at, at + piece))
                .digest(),
            );
          const header = { tensors: [], total_bytes: total, chunk_bytes: chunk, piece_bytes: piece };
          const msgs: Buffer[] = [grpcMessage(m.responseSerialize({ header }))];
          let n = 0;
          for (let at = 0; at < total; at += chunk, n++) {
            const c = data.subarray(at, at + chunk);
            const layout = layouts[n % layouts.length];
            const body =
              layout === 'plain'
                ? m.responseSerialize({ chunk: c })
                : layout === 'unknownFirst'
                  ? Buffer.concat([Buffer.from([0x78, 0x05]), m.responseSerialize({ chunk: c })])
                  : Buffer.concat([m.responseSerialize({ chunk: Buffer.from('decoy') }), m.responseSerialize({ chunk: c })]);
            msgs.push(grpcMessage(body));
          }
          msgs.push(grpcMessage(m.responseSerialize({ trailer: { chunk_count: n, sha256: Buffer.alloc(0) } })));
          const wire = Buffer.concat(msgs);
          const land = new SharedArrayBuffer(total);
          const checked = { pieces: 0 };
          const sink = new RangeSink(
            {
              version: 0,
              offset: 0,
              length: total,
              totalBytes: total,
              chunkBytes: chunk,
              pieceBytes: piece,
              firstPiece: 0,
              hashes: Buffer.concat(hashes),
              land,
            },
            checked,
          );
          const reader = new GrpcFrameReader(sink, decode);
          let at = 0;
          for (const c of cuts) {
            if (at >= wire.length) break;
            reader.push(wire.subarray(at, Math.min(wire.length, at + c)));
            at += c;
          }
          if (at < wire.length) reader.push(wire.subarray(at));
          sink.end();
          expect(reader.between).to.equal(true);
          expect(checked.pieces).to.equal(hashes.length);
          expect(Buffer.from(land).equals(data)).to.equal(true);
        },
      ),
      { seed: 6, numRuns: 150 },
    );
  });

  it('property: copies into and out of shared memory equal plain copies at every alignment', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200_000 }),
        fc.integer({ min: 0, max: 15 }),
        fc.integer({ min: 0, max: 15 }),
        fc.integer({ min: 0, max: 15 }),
        (n, srcOff, viewOff, at) => {
          const src = new Uint8Array(n + srcOff).map((_, i) => (i * 7 + 3) & 255).subarray(srcOff);
          const shared = new SharedArrayBuffer(n + viewOff + at + 16);
          const view = new Uint8Array(shared, viewOff);
          copyIntoShared(src, view, at);
          expect(Buffer.from(view.subarray(at, at + n)).equals(Buffer.from(src))).to.equal(true);
          expect(view[at + n]).to.equal(0); // nothing past the copy
          const out = new Uint8Array(n + srcOff + 1).subarray(srcOff);
          copyOutOfShared(view.subarray(at, at + n), out.subarray(0, n));
          expect(Buffer.from(out.subarray(0, n)).equals(Buffer.from(src))).to.equal(true);
          expect(out[n]).to.equal(0);
        },
      ),
      { seed: 6, numRuns: 300 },
    );
  });
});
