// proto/tensor-stream.ts (header → chunks → trailer) and proto/safetensors.ts, as pure functions: every
// rejection is checked for its exact gRPC status and the words that name the fault.
import { createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { DEFAULT_CHUNK_BYTES, PROTOCOL_VERSION } from '../proto/load';
import {
  MAX_CHUNK_BYTES,
  TensorStreamDecoder,
  checkLayout,
  dataChunks,
  tensorFrames,
  tensorHeader,
  validateHeader,
  type DecoderLimits,
  type Frame,
} from '../proto/tensor-stream';
import { ProtocolError } from '../proto/errors';
import { SafetensorsError, readSafetensors, writeSafetensors } from '../proto/safetensors';
import type { NamedTensor } from '../proto/tensors';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import type { StreamTrailer__Output } from '../proto/generated/fedtune/v1/StreamTrailer';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const LIMITS: DecoderLimits = { maxBytes: 1 << 30, requireFinite: true };

/** Tensors t0, t1, … of the given 1-D sizes, with distinct values everywhere. */
function tensors(sizes: number[]): NamedTensor[] {
  return sizes.map((n, i) => ({
    name: `t${i}`,
    dtype: 'float32',
    shape: [n],
    data: Float32Array.from({ length: n }, (_, j) => i * 1000 + j + 0.25),
  }));
}

const bytesOf = (t: NamedTensor): Buffer => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
const allBytes = (ts: NamedTensor[]): Buffer => Buffer.concat(ts.map(bytesOf));

/** A header as the decoder receives it (the generated __Output shape), deep-copied so tests may mutate it. */
function headerOf(ts: NamedTensor[], chunkBytes: number): TensorHeader__Output {
  const h = tensorHeader(ts, chunkBytes);
  return JSON.parse(JSON.stringify(h)) as TensorHeader__Output;
}

function split(frames: Frame[]): { header: TensorHeader__Output; chunks: Buffer[]; trailer: StreamTrailer__Output } {
  expect(frames[0].header).to.not.equal(undefined);
  expect(frames[frames.length - 1].trailer).to.not.equal(undefined);
  return {
    header: frames[0].header as unknown as TensorHeader__Output,
    chunks: frames.slice(1, -1).map((f) => f.chunk!),
    trailer: frames[frames.length - 1].trailer as unknown as StreamTrailer__Output,
  };
}

function decode(frames: Frame[], limits: DecoderLimits = LIMITS): NamedTensor[] {
  const { header, chunks, trailer } = split(frames);
  const dec = new TensorStreamDecoder(header, limits);
  for (const c of chunks) dec.push(c);
  return dec.finish(trailer);
}

/** Runs fn and checks it throws a ProtocolError with exactly `code` and a message containing `text`. */
function expectProtocolError(fn: () => unknown, code: status, text: string): ProtocolError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, `expected a ProtocolError containing "${text}"`).to.be.instanceOf(ProtocolError);
  const err = caught as ProtocolError;
  expect(err.name).to.equal('ProtocolError');
  expect(status[err.code], err.message).to.equal(status[code]);
  expect(err.message).to.contain(text);
  return err;
}

describe('tensor-stream: encoding', () => {
  it('tensorHeader declares protocol version, FLOAT32 specs in order, total and chunk bytes', () => {
    const ts: NamedTensor[] = [
      { name: 'b', dtype: 'float32', shape: [2, 3], data: new Float32Array(6) },
      { name: 'a', dtype: 'float32', shape: [4], data: new Float32Array(4) },
      { name: 'z', dtype: 'float32', shape: [0, 5], data: new Float32Array(0) },
    ];
    const h = tensorHeader(ts, 64);
    expect(h).to.deep.equal({
      protocol_version: PROTOCOL_VERSION,
      tensors: [
        { name: 'b', dtype: 'FLOAT32', shape: [2, 3] },
        { name: 'a', dtype: 'FLOAT32', shape: [4] },
        { name: 'z', dtype: 'FLOAT32', shape: [0, 5] },
      ],
      total_bytes: 40,
      chunk_bytes: 64,
    });
    // The header's shapes are copies: mutating them does not touch the tensors.
    (h.tensors![0].shape as number[])[0] = 99;
    expect(ts[0].shape).to.deep.equal([2, 3]);
    expect(tensorHeader(ts).chunk_bytes).to.equal(DEFAULT_CHUNK_BYTES);
  });

  it('dataChunks: full chunks then the remainder, concatenating to the tensors bytes for many chunk sizes', () => {
    const ts = tensors([3, 1000, 1, 0, 257]);
    const whole = allBytes(ts);
    expect(whole.length).to.equal(1261 * 4);
    for (const size of [1, 3, 4, 5, 12, 100, 1023, 4096, whole.length - 1, whole.length, whole.length + 1, MAX_CHUNK_BYTES]) {
      const chunks = [...dataChunks(ts, size)];
      expect(chunks.length, `size ${size}`).to.equal(Math.ceil(whole.length / size));
      chunks.slice(0, -1).forEach((c) => expect(c.length).to.equal(size));
      expect(chunks[chunks.length - 1].length).to.equal(whole.length - size * (chunks.length - 1));
      expect(Buffer.concat(chunks).equals(whole), `size ${size}`).to.equal(true);
    }
  });

  it('dataChunks: a chunk inside one tensor is a view of it (no copy); one spanning tensors is a copy', () => {
    const ts = tensors([8, 8]); // 32 bytes each
    const chunks = [...dataChunks(ts, 16)];
    expect(chunks).to.have.length(4);
    expect(chunks[0].buffer).to.equal(ts[0].data.buffer);
    expect(chunks[3].buffer).to.equal(ts[1].data.buffer);
    const spanning = [...dataChunks(ts, 24)];
    expect(spanning.map((c) => c.length)).to.deep.equal([24, 24, 16]);
    expect(spanning[1].buffer).to.not.equal(ts[0].data.buffer);
    expect(spanning[1].buffer).to.not.equal(ts[1].data.buffer);
    expect(spanning[1].equals(Buffer.concat([bytesOf(ts[0]).subarray(24), bytesOf(ts[1]).subarray(0, 16)]))).to.equal(true);
    // The last, partial chunk too: a view when it lies inside one tensor, a copy when it spans two.
    expect(spanning[2].buffer).to.equal(ts[1].data.buffer);
    const tail = [...dataChunks(tensors([3, 3]), 16)]; // 12 + 12 bytes: a 16-byte chunk, then 8 bytes of t1
    expect(tail.map((c) => c.length)).to.deep.equal([16, 8]);
    const short = tensors([3]);
    const partial = [...dataChunks(short, 8)];
    expect(partial.map((c) => c.length)).to.deep.equal([8, 4]);
    expect(partial[1].buffer).to.equal(short[0].data.buffer);
  });

  it('dataChunks honours byteOffset of tensors that are views into a larger buffer', () => {
    const backing = Float32Array.from({ length: 20 }, (_, i) => i);
    const view: NamedTensor = { name: 'v', dtype: 'float32', shape: [5], data: backing.subarray(7, 12) };
    const out = Buffer.concat([...dataChunks([view], 8)]);
    expect(Array.from(new Float32Array(out.buffer.slice(out.byteOffset, out.byteOffset + out.length)))).to.deep.equal([7, 8, 9, 10, 11]);
  });

  it('dataChunks yields nothing for no data and refuses chunk sizes outside 1..MAX_CHUNK_BYTES', () => {
    expect([...dataChunks([], 8)]).to.deep.equal([]);
    expect([...dataChunks(tensors([0, 0]), 8)]).to.deep.equal([]);
    for (const bad of [0, -1, NaN, MAX_CHUNK_BYTES + 1]) {
      expect(() => [...dataChunks(tensors([4]), bad)], String(bad)).to.throw(RangeError, `chunkBytes ${bad} out of range`);
    }
    expect(MAX_CHUNK_BYTES).to.equal(4 * 1024 * 1024 - 64 * 1024);
  });

  it('tensorFrames: header, chunks, then a trailer with the chunk count and SHA-256 of the data bytes', () => {
    const ts = tensors([5, 7]);
    const frames = [...tensorFrames(ts, 10)];
    const { header, chunks, trailer } = split(frames);
    expect(header).to.deep.equal(tensorHeader(ts, 10));
    expect(chunks.map((c) => c.length)).to.deep.equal([10, 10, 10, 10, 8]);
    expect(frames.slice(1, -1).every((f) => f.header === undefined && f.trailer === undefined)).to.equal(true);
    expect(trailer.chunk_count).to.equal(5);
    expect(Buffer.from(trailer.sha256).toString('hex')).to.equal(createHash('sha256').update(allBytes(ts)).digest('hex'));
    const empty = split([...tensorFrames([], 10)]);
    expect(empty.chunks).to.deep.equal([]);
    expect(empty.trailer.chunk_count).to.equal(0);
    expect(Buffer.from(empty.trailer.sha256).toString('hex')).to.equal(createHash('sha256').digest('hex'));
  });
});

describe('tensor-stream: decoding', () => {
  it('round-trips bit-exactly (incl. -0, subnormals, NaN payloads when finiteness is not required) for many chunk sizes', () => {
    const ts = tensors([3, 1000, 1, 0, 257]);
    ts[1].data[0] = -0;
    ts[1].data[1] = 1e-45; // smallest float32 subnormal
    ts[1].data[2] = -3.4028234663852886e38;
    for (const size of [1, 3, 4, 12, 100, 4096, DEFAULT_CHUNK_BYTES]) {
      const out = decode([...tensorFrames(ts, size)]);
      expect(out.map((t) => [t.name, t.dtype, t.shape])).to.deep.equal(ts.map((t) => [t.name, 'float32', [...t.shape]]));
      out.forEach((t, i) => expect(bytesOf(t).equals(bytesOf(ts[i])), `${t.name} @ ${size}`).to.equal(true));
      expect(out.every((t) => t.data.byteOffset % 4 === 0)).to.equal(true);
    }
    // A NaN with a payload survives untouched when the receiver does not require finiteness.
    const nan = tensors([2]);
    new Uint32Array(nan[0].data.buffer)[1] = 0x7fc01234;
    const back = decode([...tensorFrames(nan, 3)], { maxBytes: 1 << 20, requireFinite: false });
    expect(new Uint32Array(back[0].data.buffer, back[0].data.byteOffset, 2)[1]).to.equal(0x7fc01234);
  });

  it('decodes empty streams and zero-size tensors', () => {
    expect(decode([...tensorFrames([], 8)])).to.deep.equal([]);
    const out = decode([...tensorFrames(tensors([0, 2, 0]), 8)]);
    expect(out.map((t) => t.data.length)).to.deep.equal([0, 2, 0]);
    expect(Array.from(out[1].data)).to.deep.equal([1000.25, 1001.25]);
  });

  it('accepts chunks smaller than the declared chunk_bytes when the trailer counts them', () => {
    const ts = tensors([4]); // 16 bytes
    const whole = allBytes(ts);
    const header = headerOf(ts, 8);
    const dec = new TensorStreamDecoder(header, LIMITS);
    for (const [a, b] of [
      [0, 1],
      [1, 8],
      [8, 13],
      [13, 16],
    ])
      dec.push(whole.subarray(a, b));
    expect(dec.bytesReceived).to.equal(16);
    const sha = createHash('sha256').update(whole).digest();
    const out = dec.finish({ chunk_count: 4, sha256: sha });
    expect(Array.from(out[0].data)).to.deep.equal(Array.from(ts[0].data));
    expect(dec.digest!.equals(sha)).to.equal(true);
  });

  it('copies pushed chunks: later mutation of a chunk buffer does not change the result', () => {
    const ts = tensors([4]);
    const { header, chunks, trailer } = split([...tensorFrames(ts, 8)]);
    const dec = new TensorStreamDecoder(header, LIMITS);
    const copies = chunks.map((c) => Buffer.from(c));
    for (const c of copies) dec.push(c);
    for (const c of copies) c.fill(0xff);
    expect(Array.from(dec.finish(trailer)[0].data)).to.deep.equal([0.25, 1.25, 2.25, 3.25]);
  });

  it('authenticated streams: no hash kept (finish() refuses), values still checked; UINT32 streams read as words', () => {
    const ts = tensors([4]);
    const { header, chunks, trailer } = split([...tensorFrames(ts, 8)]);
    const dec = new TensorStreamDecoder(header, { ...LIMITS, authenticated: true });
    for (const c of chunks) dec.push(c);
    expect(() => dec.finish(trailer)).to.throw(/keeps no hash/);
    expect(Array.from(dec.finishAuthenticated()[0].data)).to.deep.equal([0.25, 1.25, 2.25, 3.25]);
    expect(dec.digest).to.equal(undefined);
    const nan = tensors([2]);
    nan[0].data[1] = NaN;
    const bad = split([...tensorFrames(nan, 8)]);
    const strict = new TensorStreamDecoder(bad.header, { maxBytes: 1 << 20, requireFinite: true, authenticated: true });
    for (const c of bad.chunks) strict.push(c);
    expectProtocolError(() => strict.finishAuthenticated(), status.INVALID_ARGUMENT, 'holds NaN at element 1');
    const short = new TensorStreamDecoder(header, { ...LIMITS, authenticated: true });
    short.push(chunks[0]);
    expectProtocolError(() => short.finishAuthenticated(), status.DATA_LOSS, 'received 8 of 16 bytes');

    const words = Uint32Array.from([0, 1, 0xffffffff, 0x80000000, 7]);
    const wh = {
      protocol_version: PROTOCOL_VERSION,
      tensors: [{ name: 'secagg.masked', dtype: 'UINT32', shape: [5] }],
      total_bytes: 20,
      chunk_bytes: 8,
    } as TensorHeader__Output;
    expectProtocolError(() => validateHeader(wh, 1 << 20), status.INVALID_ARGUMENT, 'has dtype UINT32; only FLOAT32 is accepted');
    expectProtocolError(() => validateHeader(headerOf(ts, 8), 1 << 20, 'UINT32'), status.INVALID_ARGUMENT, 'only UINT32 is accepted');
    const wd = new TensorStreamDecoder(wh, { maxBytes: 1 << 20, requireFinite: false, dtype: 'UINT32', authenticated: true });
    const bytes = Buffer.from(words.buffer);
    for (let off = 0; off < 20; off += 8) wd.push(bytes.subarray(off, off + 8));
    expect(Array.from(wd.finishWords())).to.deep.equal(Array.from(words));
    expect(() => dec.finishWords()).to.throw(/UINT32 streams only/);
    // A UINT32 stream cut short is refused too, not read with zeros for the missing words.
    const cut = new TensorStreamDecoder(wh, { maxBytes: 1 << 20, requireFinite: false, dtype: 'UINT32', authenticated: true });
    cut.push(bytes.subarray(0, 8));
    cut.push(bytes.subarray(8, 16));
    expectProtocolError(() => cut.finishWords(), status.DATA_LOSS, 'stream truncated: received 16 of 20 bytes');
  });

  it('validateHeader returns the specs and checks the limit inclusively', () => {
    const ts = [{ name: 'w', dtype: 'float32' as const, shape: [2, 3], data: new Float32Array(6) }];
    expect(validateHeader(headerOf(ts, 8), 24)).to.deep.equal([{ name: 'w', shape: [2, 3] }]);
    expectProtocolError(() => validateHeader(headerOf(ts, 8), 23), status.RESOURCE_EXHAUSTED, 'stream of 24 bytes exceeds the limit of 23');
    expect(validateHeader(headerOf(ts, MAX_CHUNK_BYTES), 24)).to.have.length(1);
  });

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

describe('safetensors', () => {
  /** A file from a header object and raw data bytes, header padded to 8 like the reference writer. */
  function file(header: unknown, data: Buffer): Buffer {
    let json = Buffer.from(JSON.stringify(header));
    json = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, 0x20)]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, data]);
  }

  it('writes the reference layout: u64 LE header length, sorted names, contiguous offsets, metadata first', () => {
    const ts: NamedTensor[] = [
      { name: 'b', dtype: 'float32', shape: [2], data: Float32Array.from([1, -2]) },
      { name: 'a', dtype: 'float32', shape: [1, 1], data: Float32Array.from([0.5]) },
    ];
    const out = writeSafetensors(ts, { format: 'pt' });
    const n = Number(out.readBigUInt64LE(0));
    expect(n % 8).to.equal(0);
    const json = out.subarray(8, 8 + n).toString('utf8');
    expect(json.trimEnd()).to.equal(
      '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}',
    );
    expect(/^ *$/.test(json.slice(json.trimEnd().length))).to.equal(true);
    expect(out.length).to.equal(8 + n + 12);
    expect(Array.from(new Float32Array(out.buffer.slice(out.byteOffset + 8 + n, out.byteOffset + out.length)))).to.deep.equal([0.5, 1, -2]);
    // Without metadata there is no __metadata__ entry.
    expect(writeSafetensors(ts).subarray(8).toString('utf8')).to.not.contain('__metadata__');
  });

  it('round-trips bit-exactly, sorted by name, from unaligned input too', () => {
    const ts = tensors([5, 0, 3]).reverse();
    ts[0].data[0] = -0;
    const bytes = writeSafetensors(ts, { format: 'pt', note: 'x' });
    const unaligned = Buffer.concat([Buffer.alloc(3), bytes]).subarray(3);
    for (const b of [bytes, unaligned]) {
      const r = readSafetensors(b);
      expect(r.metadata).to.deep.equal({ format: 'pt', note: 'x' });
      expect(r.skipped).to.deep.equal([]);
      expect(r.tensors.map((t) => t.name)).to.deep.equal(['t0', 't1', 't2']);
      for (const t of r.tensors) {
        const src = ts.find((x) => x.name === t.name)!;
        expect(t.shape).to.deep.equal(src.shape);
        expect(bytesOf(t).equals(bytesOf(src))).to.equal(true);
      }
    }
  });

  it('reads F16 (incl. subnormal, -0, ±Inf, NaN), BF16 and F64 into float32, and skips non-float tensors', () => {
    const f16 = Buffer.from([0x00, 0x3c, 0x00, 0xc0, 0x01, 0x00, 0x00, 0x80, 0x00, 0x7c, 0x00, 0xfc, 0x01, 0x7c, 0xff, 0x7b]);
    const bf16 = Buffer.from([0x80, 0x3f, 0x49, 0x40]); // 1.0, 3.140625
    const f64 = Buffer.alloc(16);
    f64.writeDoubleLE(0.1, 0);
    f64.writeDoubleLE(-1e300, 8);
    const i64 = Buffer.alloc(8);
    const data = Buffer.concat([f16, bf16, f64, i64]);
    const header = {
      h: { dtype: 'F16', shape: [8], data_offsets: [0, 16] },
      b: { dtype: 'BF16', shape: [2], data_offsets: [16, 20] },
      d: { dtype: 'F64', shape: [2], data_offsets: [20, 36] },
      ids: { dtype: 'I64', shape: [1], data_offsets: [36, 44] },
    };
    const r = readSafetensors(file(header, data));
    expect(r.skipped).to.deep.equal(['ids']);
    expect(r.metadata).to.deep.equal({});
    const by = Object.fromEntries(r.tensors.map((t) => [t.name, Array.from(t.data)]));
    expect(Object.keys(by)).to.deep.equal(['b', 'd', 'h']);
    expect(by.b).to.deep.equal([1, 3.140625]);
    expect(by.d).to.deep.equal([Math.fround(0.1), -Infinity]);
    expect(by.h.slice(0, 6)).to.deep.equal([1, -2, 2 ** -24, -0, Infinity, -Infinity]);
    expect(Object.is(by.h[3], -0)).to.equal(true);
    expect(by.h[6]).to.be.NaN;
    expect(by.h[7]).to.equal(65504);
  });

  it('refuses malformed files with SafetensorsError', () => {
    const ok = { x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    const data = Buffer.alloc(8);
    const bad: [Buffer, string | RegExp][] = [
      [Buffer.alloc(7), 'shorter than its 8-byte header length'],
      [Buffer.concat([Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0]), Buffer.alloc(10)]), 'header length 255 exceeds the file'],
      [Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"x"')]), 'header is not JSON'],
      [file(null, data), 'header is not a JSON object'],
      [file({ x: { dtype: 'F8', shape: [2], data_offsets: [0, 8] } }, data), 'tensor x: unknown dtype F8'],
      [file({ x: { dtype: 'constructor', shape: [2], data_offsets: [0, 8] } }, data), 'tensor x: unknown dtype constructor'],
      [file({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, data), 'tensor x: data_offsets [0, 8] do not fit shape [3] F32'],
      [file({ x: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, data), 'data_offsets [4, 12]'],
      [file({ x: { dtype: 'F32', shape: [-1, -2], data_offsets: [0, 8] } }, data), 'tensor x: invalid shape [-1,-2]'],
      [file({ x: { dtype: 'F32', shape: [2], data_offsets: [0.5, 8.5] } }, data), 'tensor x: invalid data_offsets [0.5,8.5]'],
      [file({ x: 3 }, data), 'tensor x: entry is not an object'],
      [file(ok, data).subarray(0, file(ok, data).length - 1), 'data_offsets [0, 8]'],
    ];
    expect(() => readSafetensors(file(ok, data))).to.not.throw();
    for (const [bytes, msg] of bad) expect(() => readSafetensors(bytes), String(msg)).to.throw(SafetensorsError, msg);
  });

  it('refuses to write a tensor whose data does not match its shape', () => {
    expect(() => writeSafetensors([{ name: 'x', dtype: 'float32', shape: [3], data: new Float32Array(2) }])).to.throw(
      SafetensorsError,
      'tensor x: data does not match shape',
    );
  });
});
