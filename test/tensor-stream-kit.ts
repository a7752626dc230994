// What the tensor-stream and safetensors tests share (test/tensor-stream*.test.ts, safetensors.test.ts): tensors
// with distinct values, a stream's frames taken apart and decoded, and the check that a call throws a ProtocolError
// with exactly a status and words.
import { status } from '@grpc/grpc-js';
import { TensorStreamDecoder, tensorHeader, type DecoderLimits, type Frame } from '../proto/tensor-stream';
import { ProtocolError } from '../proto/errors';
import type { NamedTensor } from '../proto/tensors';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import type { StreamTrailer__Output } from '../proto/generated/fedtune/v1/StreamTrailer';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

export const LIMITS: DecoderLimits = { maxBytes: 1 << 30, requireFinite: true };

/** Tensors t0, t1, … of the given 1-D sizes, with distinct values everywhere. */
export function tensors(sizes: number[]): NamedTensor[] {
  return sizes.map((n, i) => ({
    name: `t${i}`,
    dtype: 'float32',
    shape: [n],
    data: Float32Array.from({ length: n }, (_, j) => i * 1000 + j + 0.25),
  }));
}

export const bytesOf = (t: NamedTensor): Buffer => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
export const allBytes = (ts: NamedTensor[]): Buffer => Buffer.concat(ts.map(bytesOf));

/** A header as the decoder receives it (the generated __Output shape), deep-copied so tests may mutate it. */
export function headerOf(ts: NamedTensor[], chunkBytes: number): TensorHeader__Output {
  const h = tensorHeader(ts, chunkBytes);
  return JSON.parse(JSON.stringify(h)) as TensorHeader__Output;
}

export function split(frames: Frame[]): { header: TensorHeader__Output; chunks: Buffer[]; trailer: StreamTrailer__Output } {
  expect(frames[0].header).to.not.equal(undefined);
  expect(frames[frames.length - 1].trailer).to.not.equal(undefined);
  return {
    header: frames[0].header as unknown as TensorHeader__Output,
    chunks: frames.slice(1, -1).map((f) => f.chunk!),
    trailer: frames[frames.length - 1].trailer as unknown as StreamTrailer__Output,
  };
}

export function decode(frames: Frame[], limits: DecoderLimits = LIMITS): NamedTensor[] {
  const { header, chunks, trailer } = split(frames);
  const dec = new TensorStreamDecoder(header, limits);
  for (const c of chunks) dec.push(c);
  return dec.finish(trailer);
}

/** Runs fn and checks it throws a ProtocolError with exactly `code` and a message containing `text`. */
export function expectProtocolError(fn: () => unknown, code: status, text: string): ProtocolError {
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
