// Where a range call's frames go (download-range-worker.ts), whichever client received them: grpc-js, which hands
// over decoded TensorFrames, or the worker's own HTTP/2 client (download-range-h2.ts), which hands over a chunk's
// length first and then its bytes as they arrive, so they land without a message buffer between. Every check of
// the range's stream lives here once, so both clients refuse a peer's fault with the same status and message:
// the range's header must repeat the download's, chunks come whole (chunk_bytes, the last of the stream shorter)
// and in order, nothing lands outside the range (checked from a chunk's length, before any of its bytes land), the
// trailer counts the chunks, and a piece that does not hash to its entry is refused DATA_LOSS naming the piece.
import { createHash, type Hash } from 'node:crypto';
import { ProtocolError, status } from '../proto/errors';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import type { DownloadRequest } from '../proto/generated/fedtune/v1/DownloadRequest';
import { copyIntoShared } from './shared-copy';

/** The DownloadAdapter request for one range of version `j.version`, the same over either client. */
export function rangeRequest(j: RangeSpec & { token: string }): DownloadRequest {
  return {
    session_token: j.token,
    version: j.version,
    evaluation_task_id: '',
    control_variate: false,
    header_only: false,
    range_offset: j.offset,
    range_length: j.length,
  };
}

/** What a sink needs to know of its range (a RangeJob, download-range-worker.ts). */
export interface RangeSpec {
  readonly version: number;
  readonly offset: number;
  readonly length: number;
  readonly totalBytes: number;
  readonly chunkBytes: number;
  readonly pieceBytes: number;
  readonly firstPiece: number;
  /** SHA-256 of each of the range's pieces (32 bytes each, concatenated). */
  readonly hashes: Uint8Array;
  readonly land: SharedArrayBuffer;
}

export class RangeSink {
  /** The download's shared buffer (bytes land through copyIntoShared: word-wise whatever their alignment). */
  private readonly dst: Uint8Array;
  private readonly atEnd: boolean;
  private header = false;
  private trailer = false;
  private received = 0;
  private chunks = 0;
  /** Bytes still to come of the chunk being received (chunkStart .. chunkEnd). */
  private open = 0;
  private piece: number;
  private inPiece = 0;
  private hash: Hash = createHash('sha256');

  constructor(
    private readonly j: RangeSpec,
    /** Pieces received and checked so far: what a retry need not ask for again. */
    readonly checked: { pieces: number },
  ) {
    this.dst = new Uint8Array(j.land);
    this.atEnd = j.offset + j.length === j.totalBytes;
    this.piece = j.firstPiece;
  }

  /** A decoded frame (grpc-js, or a message the HTTP/2 client could not stream). */
  frame(f: TensorFrame__Output): void {
    if (f.header) this.onHeader(f.header);
    else if (f.frame === 'chunk' && f.chunk) {
      this.chunkStart(f.chunk.length);
      this.chunkData(f.chunk);
      this.chunkEnd();
    } else if (f.trailer) this.onTrailer(f.trailer);
    else if (this.trailer) throw new ProtocolError(status.INVALID_ARGUMENT, 'a frame after the trailer');
  }

  onHeader(h: { total_bytes?: number | string; chunk_bytes?: number; piece_bytes?: number }): void {
    this.notAfterTrailer();
    if (this.header) throw new ProtocolError(status.INVALID_ARGUMENT, 'a second header in one download');
    if (Number(h.total_bytes) !== this.j.totalBytes || h.chunk_bytes !== this.j.chunkBytes || h.piece_bytes !== this.j.pieceBytes) {
      throw new ProtocolError(status.DATA_LOSS, `range ${this.j.offset}+${this.j.length}: its header differs from the download's`);
    }
    this.header = true;
  }

  /** A chunk of `n` bytes begins: every check of its size and place, before any of its bytes land. */
  chunkStart(n: number): void {
    this.notAfterTrailer();
    const j = this.j;
    if (!this.header) throw new ProtocolError(status.INVALID_ARGUMENT, 'chunk before header');
    if (n === 0) throw new ProtocolError(status.INVALID_ARGUMENT, `chunk ${this.chunks} is empty`);
    if (n > j.chunkBytes) throw new ProtocolError(status.INVALID_ARGUMENT, `chunk ${this.chunks} has ${n} bytes; the header allows ${j.chunkBytes}`);
    if (this.received + n > j.length) throw new ProtocolError(status.OUT_OF_RANGE, `range carries more than the ${j.length} bytes asked for`);
    // Only the stream's last chunk may be short: a short one inside would shift every later byte.
    if (n < j.chunkBytes && !(this.atEnd && this.received + n === j.length)) {
      throw new ProtocolError(status.INVALID_ARGUMENT, `chunk ${this.chunks} has ${n} bytes inside the range; chunks are ${j.chunkBytes}`);
    }
    this.open = n;
  }

  /** The next bytes of the open chunk (at most what chunkStart announced): landed, and hashed piece by piece. */
  chunkData(b: Uint8Array): void {
    if (b.length > this.open) throw new ProtocolError(status.INTERNAL, 'more chunk bytes than the chunk announced');
    const at = this.j.offset + this.received;
    copyIntoShared(b, this.dst, at);
    this.received += b.length;
    this.open -= b.length;
    let src = b;
    while (src.length > 0) {
      const take = Math.min(src.length, this.j.pieceBytes - this.inPiece);
      this.hash.update(src.subarray(0, take));
      this.inPiece += take;
      src = src.subarray(take);
      if (this.inPiece === this.j.pieceBytes) this.pieceDone();
    }
  }

  chunkEnd(): void {
    if (this.open !== 0) throw new ProtocolError(status.INTERNAL, 'a chunk ended short of its length');
    this.chunks++;
  }

  onTrailer(t: { chunk_count?: number }): void {
    this.notAfterTrailer();
    if (!this.header) throw new ProtocolError(status.INVALID_ARGUMENT, 'trailer before header');
    this.trailer = true;
    const j = this.j;
    if (this.received < j.length)
      throw new ProtocolError(status.DATA_LOSS, `stream truncated: received ${this.received} of ${j.length} bytes of range ${j.offset}+${j.length}`);
    if (t.chunk_count !== this.chunks) throw new ProtocolError(status.DATA_LOSS, `trailer counts ${t.chunk_count} chunks; ${this.chunks} arrived`);
    if (this.inPiece > 0) this.pieceDone(); // the stream's last, shorter piece
  }

  /** The call ended cleanly (status OK): refused unless its trailer came. */
  end(): void {
    if (!this.trailer) throw new ProtocolError(status.DATA_LOSS, 'download ended without its trailer');
  }

  private notAfterTrailer(): void {
    if (this.trailer) throw new ProtocolError(status.INVALID_ARGUMENT, 'a frame after the trailer');
  }

  private pieceDone(): void {
    const k = this.piece - this.j.firstPiece;
    if (!this.hash.digest().equals(this.j.hashes.subarray(k * 32, (k + 1) * 32)))
      throw new ProtocolError(status.DATA_LOSS, `piece ${this.piece} of version ${this.j.version} does not match its SHA-256 in the header`);
    this.piece++;
    this.checked.pieces++;
    this.inPiece = 0;
    this.hash = createHash('sha256');
  }
}
