// The chunked tensor codec (proto/tensor-stream.ts) and the safetensors format, without a network.
import { status } from '@grpc/grpc-js';
import { DEFAULT_CHUNK_BYTES } from '../proto/load';
import { ProtocolError, TensorStreamDecoder, checkLayout, dataChunks, tensorFrames, type Frame } from '../proto/tensor-stream';
import { readSafetensors, writeSafetensors } from '../proto/safetensors';
import type { NamedTensor } from '../proto/tensors';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import type { StreamTrailer__Output } from '../proto/generated/fedtune/v1/StreamTrailer';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

function tensors(sizes: number[]): NamedTensor[] {
  return sizes.map((n, i) => ({ name: `t${i}`, dtype: 'float32', shape: [n], data: Float32Array.from({ length: n }, (_, j) => i * 1000 + j + 0.5) }));
}

const limits = { maxBytes: 1 << 30, requireFinite: true };

function decode(frames: Frame[], lim = limits): NamedTensor[] {
  const dec = new TensorStreamDecoder(frames[0].header as unknown as TensorHeader__Output, lim);
  for (const f of frames.slice(1, -1)) dec.push(f.chunk!);
  return dec.finish(frames[frames.length - 1].trailer as unknown as StreamTrailer__Output);
}

function expectProtocolError(fn: () => unknown, code: status, text: string): void {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(ProtocolError);
    expect(status[(e as ProtocolError).code]).to.equal(status[code]);
    expect((e as ProtocolError).message).to.contain(text);
    return;
  }
  expect.fail('expected a ProtocolError');
}

describe('chunked tensor streams', () => {
  it('round-trips tensors bit-exactly across chunk boundaries for several chunk sizes', () => {
    const ts = tensors([3, 1000, 1, 257]);
    for (const chunk of [4, 12, 100, 4096, DEFAULT_CHUNK_BYTES]) {
      const frames = [...tensorFrames(ts, chunk)];
      for (const f of frames.slice(1, -1)) expect(f.chunk!.length).to.be.at.most(chunk);
      const out = decode(frames);
      expect(out.map((t) => t.name)).to.deep.equal(['t0', 't1', 't2', 't3']);
      out.forEach((t, i) => expect(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(ts[i].data.buffer))).to.equal(true));
    }
  });

  it('never puts a whole large adapter in one message: 100 MB travels as 1 MiB chunks', () => {
    const big: NamedTensor[] = [{ name: 'w', dtype: 'float32', shape: [25 << 20], data: new Float32Array(25 << 20) }];
    let count = 0;
    let max = 0;
    for (const c of dataChunks(big)) {
      count++;
      max = Math.max(max, c.length);
    }
    expect(count).to.equal(100);
    expect(max).to.equal(1 << 20);
  });

  it('rejects header faults with INVALID_ARGUMENT / FAILED_PRECONDITION / RESOURCE_EXHAUSTED', () => {
    const h = (): TensorHeader__Output => tensorFrames(tensors([4]), 8).next().value!.header as unknown as TensorHeader__Output;
    const mk = (mut: (x: TensorHeader__Output) => void, lim = limits) => () => {
      const x = h();
      mut(x);
      return new TensorStreamDecoder(x, lim);
    };
    expectProtocolError(mk((x) => (x.protocol_version = 9)), status.FAILED_PRECONDITION, 'protocol version 9');
    expectProtocolError(mk((x) => (x.tensors[0].dtype = 'DTYPE_UNSPECIFIED')), status.INVALID_ARGUMENT, 'only FLOAT32');
    expectProtocolError(mk((x) => (x.tensors[0].shape = [-1])), status.INVALID_ARGUMENT, 'invalid shape');
    expectProtocolError(mk((x) => x.tensors.push({ ...x.tensors[0] })), status.INVALID_ARGUMENT, 'declared twice');
    expectProtocolError(mk((x) => (x.total_bytes = 99)), status.INVALID_ARGUMENT, 'its tensors need 16');
    expectProtocolError(mk((x) => (x.chunk_bytes = 0)), status.INVALID_ARGUMENT, 'chunk_bytes 0');
    expectProtocolError(mk((x) => (x.chunk_bytes = 8 << 20)), status.INVALID_ARGUMENT, 'chunk_bytes');
    expectProtocolError(mk(() => undefined, { maxBytes: 8, requireFinite: true }), status.RESOURCE_EXHAUSTED, 'exceeds the limit of 8');
    expectProtocolError(() => new TensorStreamDecoder(null, limits), status.INVALID_ARGUMENT, 'header missing');
  });

  it('rejects stream faults: oversized and empty chunks, extra bytes, truncation, trailer and hash mismatches', () => {
    const frames = [...tensorFrames(tensors([4]), 8)]; // 16 bytes in 2 chunks
    const header = frames[0].header as unknown as TensorHeader__Output;
    const trailer = frames[3].trailer as unknown as StreamTrailer__Output;
    const fresh = () => new TensorStreamDecoder(header, limits);
    expectProtocolError(() => fresh().push(Buffer.alloc(9)), status.INVALID_ARGUMENT, 'the header allows 8');
    expectProtocolError(() => fresh().push(Buffer.alloc(0)), status.INVALID_ARGUMENT, 'is empty');
    expectProtocolError(() => {
      const d = fresh();
      d.push(frames[1].chunk!);
      d.push(frames[2].chunk!);
      d.push(Buffer.alloc(1));
    }, status.OUT_OF_RANGE, 'more than the 16 bytes');
    expectProtocolError(() => {
      const d = fresh();
      d.push(frames[1].chunk!);
      d.finish(trailer);
    }, status.DATA_LOSS, 'received 8 of 16 bytes');
    const full = (): TensorStreamDecoder => {
      const d = fresh();
      d.push(frames[1].chunk!);
      d.push(frames[2].chunk!);
      return d;
    };
    expectProtocolError(() => full().finish(undefined), status.DATA_LOSS, 'without its trailer');
    expectProtocolError(() => full().finish({ ...trailer, chunk_count: 3 }), status.DATA_LOSS, 'counts 3 chunks');
    expectProtocolError(() => full().finish({ ...trailer, sha256: Buffer.alloc(32) }), status.DATA_LOSS, 'SHA-256');
    expect(full().finish(trailer)[0].data[3]).to.equal(3.5);
  });

  it('rejects NaN and ±Inf when finiteness is required, naming tensor and element', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const ts = tensors([2, 5]);
      ts[1].data[3] = bad;
      expectProtocolError(() => decode([...tensorFrames(ts)]), status.INVALID_ARGUMENT, `t1 holds ${bad} at element 3`);
      expect(decode([...tensorFrames(ts)], { maxBytes: 1 << 20, requireFinite: false })[1].data[3]).to.deep.equal(bad);
    }
  });

  it('checks names, order and shapes against the global layout', () => {
    const g = tensors([2, 3]);
    const spec = (xs: NamedTensor[]) => xs.map((t) => ({ name: t.name, shape: [...t.shape] }));
    checkLayout(spec(g), g);
    expectProtocolError(() => checkLayout([{ name: 't0', shape: [3] }, { name: 't1', shape: [3] }], g), status.INVALID_ARGUMENT, 'tensor t0 has shape [3]');
    expectProtocolError(() => checkLayout(spec(g).reverse(), g), status.INVALID_ARGUMENT, 'out of order');
    expectProtocolError(() => checkLayout(spec(g).slice(1), g), status.INVALID_ARGUMENT, 'missing tensors: t0');
  });
});

describe('safetensors', () => {
  it('writes files that read back identically, with 8-byte aligned headers and metadata', () => {
    const ts = tensors([5, 2]);
    const bytes = writeSafetensors(ts, { format: 'pt' });
    expect(Number(bytes.readBigUInt64LE(0)) % 8).to.equal(0);
    const back = readSafetensors(bytes);
    expect(back.metadata).to.deep.equal({ format: 'pt' });
    expect(back.tensors.map((t) => [t.name, t.shape, Array.from(t.data)])).to.deep.equal(ts.map((t) => [t.name, t.shape, Array.from(t.data)]));
  });

  it('reads F16 and BF16 into float32 and refuses inconsistent offsets', () => {
    const header = JSON.stringify({ h: { dtype: 'F16', shape: [2], data_offsets: [0, 4] }, b: { dtype: 'BF16', shape: [1], data_offsets: [4, 6] } });
    const pad = ' '.repeat((8 - (header.length % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length + pad.length));
    const data = Buffer.from([0x00, 0x3c, 0x00, 0xc0, 0x80, 0x3f]); // 1.0, -2.0 (F16); 1.0 (BF16)
    const file = Buffer.concat([len, Buffer.from(header + pad), data]);
    const r = readSafetensors(file);
    expect(r.tensors.map((t) => Array.from(t.data))).to.deep.equal([[1], [1, -2]]);
    expect(() => readSafetensors(file.subarray(0, file.length - 1))).to.throw(/data_offsets/);
  });
});
