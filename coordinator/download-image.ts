// A version's download as it goes on the wire, encoded once. Every site selected for a round downloads the same
// version; encoding its tensor stream (header, chunks, trailer with the SHA-256) per download cost each of them a
// protobuf copy and a SHA-256 of the whole adapter on the coordinator's one thread. An image holds the stream's
// TensorFrame messages, serialized by the service's own encoder, and DownloadAdapter's response serializer passes
// them through unchanged (preEncodedDownloads): the bytes on the wire are exactly what the plain encoder makes of
// the same frames, so sites see no difference. Each message is held with its gRPC prefix, and grpc-js sends that
// buffer as it is (download-wire.ts): no per-call copy of the adapter on the coordinator's thread.
//
// Only the latest version's images are kept (its adapter, and under SCAFFOLD its control variate): at most two,
// each the size of the adapter plus framing, whatever the number of sites. An older version is streamed as before,
// read and checked from the store on every download.
import type * as grpc from '@grpc/grpc-js';
import type { TensorFrame } from '../proto/generated/fedtune/v1/TensorFrame';
import { tensorFrames } from '../proto/tensor-stream';
import type { TensorList } from '../proto/tensors';
import { announce, type Announced } from './download-ranges';
import { grpcFramed, sendPreFramedAsIs, type PreFramed } from './download-wire';

/** One TensorFrame message, already serialized, held as gRPC frames it on the wire (one copy, made here once). */
export class EncodedFrame implements PreFramed {
  /** The gRPC message: 5 bytes of prefix, then `bytes`. */
  readonly wire: Buffer;
  /** The serialized TensorFrame (a view of `wire`). */
  readonly bytes: Buffer;

  constructor(message: Buffer) {
    this.wire = grpcFramed(message);
    this.bytes = this.wire.subarray(5);
  }
}

/** Encodes one frame as the service would (its responseSerialize). */
export type FrameEncoder = (frame: TensorFrame) => Buffer;

/** The whole stream of `tensors`, each frame serialized once by `encode`; its header announces `pieces`. */
export function encodeImage(tensors: TensorList, chunkBytes: number, encode: FrameEncoder, pieces?: Announced): EncodedFrame[] {
  const out: EncodedFrame[] = [];
  for (const f of announce(tensorFrames(tensors, chunkBytes), pieces)) out.push(new EncodedFrame(encode(f)));
  return out;
}

/**
 * A copy of `def` whose DownloadAdapter serializer sends an EncodedFrame's bytes as they are; grpc-js then sends its
 * prefixed buffer without copying it where it allows (download-wire.ts).
 */
export function preEncodedDownloads(def: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const m = def.DownloadAdapter as grpc.MethodDefinition<unknown, unknown> | undefined;
  if (!m) throw new Error('the service has no DownloadAdapter method');
  sendPreFramedAsIs(EncodedFrame);
  const inner = m.responseSerialize;
  return { ...def, DownloadAdapter: { ...m, responseSerialize: (v: unknown): Buffer => (v instanceof EncodedFrame ? v.bytes : inner(v)) } };
}

export type ImageKind = 'adapter' | 'control_variate';

/** The latest version's images, built on first use (or when the version is committed) and dropped when it is not latest. */
export class DownloadImages {
  private version = -1;
  private chunkBytes = 0;
  private readonly images = new Map<ImageKind, EncodedFrame[]>();

  constructor(private readonly encode: FrameEncoder) {}

  /** The image of `kind` for `version`, the latest; `tensors` is called only when it must be built. */
  get(version: number, kind: ImageKind, chunkBytes: number, tensors: () => TensorList, pieces?: Announced): readonly EncodedFrame[] {
    if (version !== this.version || chunkBytes !== this.chunkBytes) {
      this.images.clear();
      this.version = version;
      this.chunkBytes = chunkBytes;
    }
    let image = this.images.get(kind);
    if (!image) {
      image = encodeImage(tensors(), chunkBytes, this.encode, pieces);
      this.images.set(kind, image);
    }
    return image;
  }

  /** Images held now (for tests and the bound stated above). */
  get size(): number {
    return this.images.size;
  }
}
