// proto/tensor-stream.ts (header → chunks → trailer) as pure functions: encoding, and decoding streams that are
// well formed. Rejections: tensor-stream-rejections.test.ts; value and layout checks: tensor-stream-values.test.ts;
// safetensors: safetensors.test.ts.
import { createHash } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { DEFAULT_CHUNK_BYTES, PROTOCOL_VERSION } from '../proto/load';
import { MAX_CHUNK_BYTES, TensorStreamDecoder, dataChunks, tensorFrames, tensorHeader, validateHeader } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import { LIMITS, allBytes, bytesOf, decode, expectProtocolError, headerOf, split, tensors } from './tensor-stream-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

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
});
