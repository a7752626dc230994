// gRPC's message framing on a DownloadAdapter response, read by the range workers' own HTTP/2 client
// (download-range-h2.ts) without grpc-js: each message is a 1-byte compressed flag, a 4-byte big-endian length and
// the TensorFrame's protobuf bytes. grpc-js gathers every message into a buffer of its own (a 1 MiB chunk copied
// out of sixty-four 16 KiB DATA frames), decodes it, and only then does the worker copy the chunk again into the
// download's memory; that was most of a range worker's CPU after the hash.
//
// Here a chunk message of the form the coordinator writes (TensorFrame field 2, `chunk`, alone: tag 0x12, a varint
// length, the bytes) is streamed: its length goes to the sink first (RangeSink.chunkStart checks it against the
// range before anything lands) and its bytes go, DATA frame by DATA frame, straight into the download's memory.
// Any other message (the header, the trailer, or a chunk laid out otherwise, as protobuf allows) is gathered whole,
// bounded by the channel's receive limit before its buffer is made, and decoded by the service's own deserializer,
// so its meaning is exactly what grpc-js would have handed over.
import { ProtocolError, status } from '../proto/errors';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import type { RangeSink } from './download-range-sink';

/** grpc-js's default bound on a received message (its channel option grpc.max_receive_message_length). */
export const DEFAULT_MAX_RECEIVE_BYTES = 4 << 20;

/** The tag of TensorFrame.chunk: field 2, wire type 2 (length-delimited). */
const CHUNK_TAG = 0x12;
/** The most bytes a chunk message's lead (its tag and length varint) takes: 1 + 5. */
const LEAD_MAX = 6;

type State =
  | { at: 'prefix' }
  /** The first bytes of a message, gathered to see whether it is a chunk that can be streamed. */
  | { at: 'lead'; length: number }
  | { at: 'chunk'; left: number }
  | { at: 'whole'; message: Buffer; filled: number };

export class GrpcFrameReader {
  private state: State = { at: 'prefix' };
  /** Up to LEAD_MAX bytes of a prefix or a message's lead that arrived split across DATA frames. */
  private readonly scratch = Buffer.alloc(Math.max(5, LEAD_MAX));
  private scratched = 0;

  constructor(
    private readonly sink: RangeSink,
    private readonly decode: (message: Buffer) => TensorFrame__Output,
    /** The largest message accepted (the channel's receive limit; -1: none, as in grpc-js). */
    private readonly maxMessageBytes: number = DEFAULT_MAX_RECEIVE_BYTES,
  ) {}

  /** Whether the response ended between messages (a cut inside one is a truncated stream). */
  get between(): boolean {
    return this.state.at === 'prefix' && this.scratched === 0;
  }

  /** One DATA frame's bytes. Throws the stream's refusal (a ProtocolError or the sink's). */
  push(data: Buffer): void {
    let at = 0;
    while (at < data.length) {
      const s = this.state;
      switch (s.at) {
        case 'prefix': {
          const take = Math.min(5 - this.scratched, data.length - at);
          data.copy(this.scratch, this.scratched, at, at + take);
          this.scratched += take;
          at += take;
          if (this.scratched === 5) this.begin();
          break;
        }
        case 'lead': {
          const take = Math.min(Math.min(LEAD_MAX, s.length) - this.scratched, data.length - at);
          data.copy(this.scratch, this.scratched, at, at + take);
          this.scratched += take;
          at += take;
          if (this.scratched === Math.min(LEAD_MAX, s.length)) this.lead(s.length);
          break;
        }
        case 'chunk': {
          const take = Math.min(s.left, data.length - at);
          this.sink.chunkData(data.subarray(at, at + take));
          at += take;
          s.left -= take;
          if (s.left === 0) this.chunkDone();
          break;
        }
        case 'whole': {
          const take = Math.min(s.message.length - s.filled, data.length - at);
          data.copy(s.message, s.filled, at, at + take);
          s.filled += take;
          at += take;
          if (s.filled === s.message.length) this.decoded(s.message);
          break;
        }
      }
    }
  }

  /** A message's 5-byte prefix is in: its flag and length checked, before anything is made for it. */
  private begin(): void {
    const compressed = this.scratch[0];
    const length = this.scratch.readUInt32BE(1);
    this.scratched = 0;
    // The request said grpc-accept-encoding: identity; a compressed message is the peer's fault, as in grpc-js.
    if (compressed !== 0) throw new ProtocolError(status.INTERNAL, `a compressed message (flag ${compressed}) on a call that accepts identity only`);
    if (this.maxMessageBytes >= 0 && length > this.maxMessageBytes) {
      throw new ProtocolError(status.RESOURCE_EXHAUSTED, `Received message larger than max (${length} vs ${this.maxMessageBytes})`);
    }
    if (length === 0) return this.decoded(Buffer.alloc(0));
    this.state = { at: 'lead', length };
  }

  /** The first bytes of a message of `length`: streamed when it is a chunk alone, else gathered whole. */
  private lead(length: number): void {
    const have = Math.min(LEAD_MAX, length);
    const n = this.scratch[0] === CHUNK_TAG ? varint(this.scratch, 1, have) : undefined;
    this.scratched = 0;
    if (n && 1 + n.bytes + n.value === length && n.value > 0) {
      this.sink.chunkStart(n.value); // the range's checks, before any byte lands
      const already = have - 1 - n.bytes;
      if (already > 0) this.sink.chunkData(this.scratch.subarray(1 + n.bytes, have));
      const left = n.value - already;
      if (left === 0) return this.chunkDone();
      this.state = { at: 'chunk', left };
      return;
    }
    const message = Buffer.allocUnsafe(length);
    this.scratch.copy(message, 0, 0, have);
    if (have === length) return this.decoded(message);
    this.state = { at: 'whole', message, filled: have };
  }

  private chunkDone(): void {
    this.sink.chunkEnd();
    this.state = { at: 'prefix' };
  }

  private decoded(message: Buffer): void {
    this.state = { at: 'prefix' };
    let f: TensorFrame__Output;
    try {
      f = this.decode(message);
    } catch (e) {
      throw new ProtocolError(status.INTERNAL, `Response message parsing error: ${(e as Error).message}`);
    }
    this.sink.frame(f);
  }
}

/** A protobuf varint in `b[from, end)`, if it is complete there and fits 32 bits. */
function varint(b: Buffer, from: number, end: number): { value: number; bytes: number } | undefined {
  let value = 0;
  for (let i = from, shift = 0; i < end && shift < 35; i++, shift += 7) {
    value += (b[i] & 0x7f) * 2 ** shift;
    if ((b[i] & 0x80) === 0) return value <= 0xffffffff ? { value, bytes: i - from + 1 } : undefined;
  }
  return undefined;
}
