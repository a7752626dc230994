// coordinator/download-image.ts: the latest version's download encoded once. The cached messages must be
// byte-identical to what the service's plain encoder makes of the same frames (sites cannot tell the difference),
// the serializer must pass them through untouched and encode anything else as before, and only the latest
// version's images are held.
import type * as grpc from '@grpc/grpc-js';
import { loadFedtuneProto } from '../proto/load';
import { tensorFrames } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';
import type { TensorFrame, TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import { DownloadImages, EncodedFrame, encodeImage, preEncodedDownloads } from '../coordinator/download-image';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const method = (): grpc.MethodDefinition<unknown, TensorFrame> =>
  loadFedtuneProto().fedtune.v1.Federation.service.DownloadAdapter as unknown as grpc.MethodDefinition<unknown, TensorFrame>;
const plain = (f: TensorFrame): Buffer => method().responseSerialize(f);

/** Sizes that make 1000-byte chunks straddle tensor boundaries, with one tensor inside a chunk. */
function adapter(seed: number): NamedTensor[] {
  return [91, 301, 3, 700].map((n, i) => ({
    name: `m.t${i}.lora_${i % 2 ? 'B' : 'A'}.weight`,
    dtype: 'float32' as const,
    shape: [n],
    data: Float32Array.from({ length: n }, (_, j) => Math.sin(seed * 1e3 + i * 97 + j) * 1e-2),
  }));
}

describe('download images (the latest version encoded once)', () => {
  it('holds exactly the bytes the plain encoder makes of every frame, header and trailer included', () => {
    for (const chunkBytes of [1000, 4096, 1 << 20]) {
      const ts = adapter(1);
      const image = encodeImage(ts, chunkBytes, plain);
      const frames = [...tensorFrames(ts, chunkBytes)];
      expect(image.length).to.equal(frames.length);
      for (let i = 0; i < frames.length; i++) expect(image[i].bytes.equals(plain(frames[i]))).to.equal(true, `frame ${i}`);
      // And they decode as the frames they stand for.
      const back = image.map((e) => method().responseDeserialize(e.bytes) as unknown as TensorFrame__Output);
      expect(back[0].header!.total_bytes).to.equal((91 + 301 + 3 + 700) * 4);
      expect(Buffer.concat(back.slice(1, -1).map((f) => f.chunk!)).equals(Buffer.concat(ts.map((t) => Buffer.from(t.data.buffer))))).to.equal(true);
      expect(back[back.length - 1].trailer!.chunk_count).to.equal(frames.length - 2);
    }
  });

  it('passes an encoded frame through the service serializer untouched and encodes a plain frame as before', () => {
    const def = preEncodedDownloads(loadFedtuneProto().fedtune.v1.Federation.service);
    const serialize = (def.DownloadAdapter as grpc.MethodDefinition<unknown, unknown>).responseSerialize;
    const bytes = Buffer.from([1, 2, 3, 250]);
    const e = new EncodedFrame(bytes);
    expect(serialize(e)).to.equal(e.bytes);
    expect(e.bytes.equals(bytes)).to.equal(true);
    // On the wire: flag 0 (not compressed), the length big-endian, the message.
    expect(e.wire.equals(Buffer.from([0, 0, 0, 0, 4, 1, 2, 3, 250]))).to.equal(true);
    const f: TensorFrame = { chunk: Buffer.from([9, 8, 7]) };
    expect(serialize(f).equals(plain(f))).to.equal(true);
    // The other methods keep their serializers.
    expect(def.Hello).to.equal(loadFedtuneProto().fedtune.v1.Federation.service.Hello);
  });

  it('builds each image once, keeps only the latest version, and builds nothing for a refused kind', () => {
    const images = new DownloadImages(plain);
    let builds = 0;
    const v3 = adapter(3);
    const of = (ts: NamedTensor[]) => (): NamedTensor[] => {
      builds++;
      return ts;
    };
    const a = images.get(3, 'adapter', 1000, of(v3));
    expect(images.get(3, 'adapter', 1000, of(v3))).to.equal(a);
    expect(builds).to.equal(1);
    images.get(3, 'control_variate', 1000, of(adapter(30)));
    expect([builds, images.size]).to.deep.equal([2, 2]);
    // A new latest version drops the old images: at most two are ever held.
    const b = images.get(4, 'adapter', 1000, of(adapter(4)));
    expect([builds, images.size]).to.deep.equal([3, 1]);
    expect(b[1].bytes.equals(a[1].bytes)).to.equal(false);
    // A kind the run cannot serve throws before anything is kept.
    expect(() =>
      images.get(4, 'control_variate', 1000, () => {
        throw new Error('no control variate');
      }),
    ).to.throw('no control variate');
    expect(images.size).to.equal(1);
  });
});
