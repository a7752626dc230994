// proto/tensor-stream.ts's decoder refusing a bad header or a bad stream: every rejection is checked for its exact
// gRPC status and the words that name the fault.
import { status } from '@grpc/grpc-js';
import { PROTOCOL_VERSION } from '../proto/load';
import { MAX_CHUNK_BYTES, TensorStreamDecoder, tensorFrames, type DecoderLimits } from '../proto/tensor-stream';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import type { StreamTrailer__Output } from '../proto/generated/fedtune/v1/StreamTrailer';
import { LIMITS, expectProtocolError, headerOf, split, tensors } from './tensor-stream-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('tensor-stream: decoding', () => {
  describe('header rejections', () => {
    const base = (): TensorHeader__Output => headerOf(tensors([4, 2]), 8); // 16 + 8 bytes
    const build =
      (mut: (h: TensorHeader__Output) => void, limits: DecoderLimits = LIMITS) =>
      () => {
        const h = base();
        mut(h);
        return new TensorStreamDecoder(h, limits);
      };

    it('a missing header → INVALID_ARGUMENT', () => {
      expectProtocolError(() => new TensorStreamDecoder(null, LIMITS), status.INVALID_ARGUMENT, 'tensor header missing');
      expectProtocolError(() => new TensorStreamDecoder(undefined, LIMITS), status.INVALID_ARGUMENT, 'tensor header missing');
    });

    it('another protocol version → FAILED_PRECONDITION naming both versions', () => {
      expectProtocolError(
        build((h) => (h.protocol_version = PROTOCOL_VERSION + 1)),
        status.FAILED_PRECONDITION,
        `tensor stream speaks protocol version ${PROTOCOL_VERSION + 1}; this peer speaks ${PROTOCOL_VERSION}`,
      );
      expectProtocolError(
        build((h) => (h.protocol_version = 0)),
        status.FAILED_PRECONDITION,
        'protocol version 0',
      );
    });

    it('a dtype other than FLOAT32 → INVALID_ARGUMENT naming the tensor and dtype', () => {
      expectProtocolError(
        build((h) => (h.tensors[1].dtype = 'DTYPE_UNSPECIFIED')),
        status.INVALID_ARGUMENT,
        'tensor t1 has dtype DTYPE_UNSPECIFIED; only FLOAT32 is accepted',
      );
    });

    it('negative, fractional or unsafe dimensions → INVALID_ARGUMENT "invalid shape"', () => {
      expectProtocolError(
        build((h) => (h.tensors[0].shape = [-4])),
        status.INVALID_ARGUMENT,
        'tensor t0 has an invalid shape [-4]',
      );
      expectProtocolError(
        build((h) => (h.tensors[0].shape = [2, -2])),
        status.INVALID_ARGUMENT,
        'tensor t0 has an invalid shape [2,-2]',
      );
      expectProtocolError(
        build((h) => (h.tensors[1].shape = [1.5])),
        status.INVALID_ARGUMENT,
        'tensor t1 has an invalid shape [1.5]',
      );
      expectProtocolError(
        build((h) => (h.tensors[1].shape = [2 ** 53])),
        status.INVALID_ARGUMENT,
        'tensor t1 has an invalid shape',
      );
    });

    it('duplicate and empty names → INVALID_ARGUMENT', () => {
      expectProtocolError(
        build((h) => (h.tensors[1].name = 't0')),
        status.INVALID_ARGUMENT,
        'tensor t0 declared twice',
      );
      expectProtocolError(
        build((h) => (h.tensors[0].name = '')),
        status.INVALID_ARGUMENT,
        'tensor with an empty name',
      );
    });

    it('total_bytes that disagrees with the shapes → INVALID_ARGUMENT with both numbers', () => {
      expectProtocolError(
        build((h) => (h.total_bytes = 25)),
        status.INVALID_ARGUMENT,
        'header declares total_bytes 25 but its tensors need 24',
      );
      expectProtocolError(
        build((h) => (h.total_bytes = 0)),
        status.INVALID_ARGUMENT,
        'header declares total_bytes 0 but its tensors need 24',
      );
      // Shapes whose element count overflows (to Infinity, or NaN with a zero dimension) match no total.
      const huge = new Array(25).fill(2 ** 52);
      expectProtocolError(
        build((h) => {
          h.tensors[0].shape = huge;
          h.total_bytes = 8;
        }),
        status.INVALID_ARGUMENT,
        'header declares total_bytes 8 but its tensors need Infinity',
      );
      expectProtocolError(
        build((h) => {
          h.tensors[0].shape = [...huge, 0];
          h.total_bytes = 8;
        }),
        status.INVALID_ARGUMENT,
        'header declares total_bytes 8 but its tensors need NaN',
      );
      // A zero dimension makes an empty tensor, however large the others.
      const zero = build((h) => {
        h.tensors[0].shape = [2 ** 40, 2 ** 40, 0];
        h.total_bytes = 8;
      })();
      expect(zero.specs[0]).to.deep.equal({ name: 't0', shape: [2 ** 40, 2 ** 40, 0] });
    });

    it('a declared size above maxBytes → RESOURCE_EXHAUSTED before any allocation', () => {
      expectProtocolError(
        build(() => undefined, { maxBytes: 23, requireFinite: true }),
        status.RESOURCE_EXHAUSTED,
        'stream of 24 bytes exceeds the limit of 23',
      );
      // 2^50 bytes declared consistently: refused by the limit, not by an allocation failure.
      expectProtocolError(
        build((h) => {
          h.tensors = [{ name: 'huge', dtype: 'FLOAT32', shape: [2 ** 24, 2 ** 24] }];
          h.total_bytes = 2 ** 50;
        }),
        status.RESOURCE_EXHAUSTED,
        `stream of ${2 ** 50} bytes exceeds the limit of ${1 << 30}`,
      );
      expect(build(() => undefined, { maxBytes: 24, requireFinite: true })()).to.be.instanceOf(TensorStreamDecoder);
    });

    it('chunk_bytes outside 1..MAX_CHUNK_BYTES → INVALID_ARGUMENT', () => {
      expectProtocolError(
        build((h) => (h.chunk_bytes = 0)),
        status.INVALID_ARGUMENT,
        `chunk_bytes 0 outside 1..${MAX_CHUNK_BYTES}`,
      );
      expectProtocolError(
        build((h) => (h.chunk_bytes = MAX_CHUNK_BYTES + 1)),
        status.INVALID_ARGUMENT,
        `chunk_bytes ${MAX_CHUNK_BYTES + 1} outside`,
      );
    });
  });

  describe('stream rejections', () => {
    const ts = tensors([4]); // 16 bytes, chunk_bytes 8 → 2 chunks
    // Encoded before each test, not when the file loads: code run at load time is a "static" mutant for mutation
    // testing (bench/MUTATION.md), which then reloads the whole file for every such mutant.
    let header: TensorHeader__Output;
    let chunks: Buffer[];
    let trailer: StreamTrailer__Output;
    beforeEach(() => ({ header, chunks, trailer } = split([...tensorFrames(ts, 8)])));
    const fresh = (): TensorStreamDecoder => new TensorStreamDecoder(header, LIMITS);
    const full = (): TensorStreamDecoder => {
      const d = fresh();
      for (const c of chunks) d.push(c);
      return d;
    };

    it('a chunk larger than the declared chunk_bytes → INVALID_ARGUMENT naming the chunk index', () => {
      expectProtocolError(() => fresh().push(Buffer.alloc(9)), status.INVALID_ARGUMENT, 'chunk 0 has 9 bytes; the header allows 8');
      const d = fresh();
      d.push(chunks[0]);
      expectProtocolError(() => d.push(Buffer.alloc(16)), status.INVALID_ARGUMENT, 'chunk 1 has 16 bytes; the header allows 8');
      expect(d.bytesReceived).to.equal(8); // the refused chunk left no trace
    });

    it('an empty chunk → INVALID_ARGUMENT', () => {
      expectProtocolError(() => fresh().push(Buffer.alloc(0)), status.INVALID_ARGUMENT, 'chunk 0 is empty');
      const d = fresh();
      d.push(chunks[0]);
      expectProtocolError(() => d.push(Buffer.alloc(0)), status.INVALID_ARGUMENT, 'chunk 1 is empty');
    });

    it('bytes beyond total_bytes → OUT_OF_RANGE, whether a whole extra chunk or an overshooting one', () => {
      expectProtocolError(() => full().push(Buffer.alloc(1)), status.OUT_OF_RANGE, 'stream carries more than the 16 bytes its header declares');
      const d = fresh();
      d.push(Buffer.alloc(5));
      d.push(Buffer.alloc(5));
      expectProtocolError(() => d.push(Buffer.alloc(7)), status.OUT_OF_RANGE, 'more than the 16 bytes');
      expect(d.bytesReceived).to.equal(10);
    });

    it('a truncated stream → DATA_LOSS (with or without a trailer)', () => {
      const d = fresh();
      d.push(chunks[0]);
      expectProtocolError(() => d.finish(trailer), status.DATA_LOSS, 'stream truncated: received 8 of 16 bytes');
      expectProtocolError(() => fresh().finish(undefined), status.DATA_LOSS, 'stream truncated: received 0 of 16 bytes');
    });

    it('a missing trailer → DATA_LOSS', () => {
      expectProtocolError(() => full().finish(undefined), status.DATA_LOSS, 'stream ended without its trailer');
      expectProtocolError(() => full().finish(null), status.DATA_LOSS, 'stream ended without its trailer');
    });

    it('a chunk count that disagrees with the trailer → DATA_LOSS', () => {
      expectProtocolError(() => full().finish({ ...trailer, chunk_count: 3 }), status.DATA_LOSS, 'trailer counts 3 chunks; 2 arrived');
      expectProtocolError(() => full().finish({ ...trailer, chunk_count: 1 }), status.DATA_LOSS, 'trailer counts 1 chunks; 2 arrived');
    });

    it('a SHA-256 that does not match → DATA_LOSS (wrong, empty, or data altered in flight)', () => {
      const msg = 'stream SHA-256 does not match its trailer';
      expectProtocolError(() => full().finish({ ...trailer, sha256: Buffer.alloc(32) }), status.DATA_LOSS, msg);
      expectProtocolError(() => full().finish({ ...trailer, sha256: Buffer.alloc(0) }), status.DATA_LOSS, msg);
      expectProtocolError(() => full().finish({ ...trailer, sha256: trailer.sha256.subarray(0, 31) }), status.DATA_LOSS, msg);
      const altered = Buffer.from(chunks[1]);
      altered[3] ^= 0x10;
      const d = fresh();
      d.push(chunks[0]);
      d.push(altered);
      expectProtocolError(() => d.finish(trailer), status.DATA_LOSS, msg);
      expect(d.digest).to.equal(undefined);
    });

    it('the intact stream decodes and exposes its digest only after success', () => {
      const d = full();
      expect(d.digest).to.equal(undefined);
      expect(Array.from(d.finish(trailer)[0].data)).to.deep.equal([0.25, 1.25, 2.25, 3.25]);
      expect(d.digest!.equals(trailer.sha256)).to.equal(true);
    });
  });
});
