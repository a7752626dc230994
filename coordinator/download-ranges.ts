// The coordinator's side of parallel downloads (proto/pieces.ts): a version whose manifest lists piece hashes is
// announced with them in its header, and served as a header alone (header_only) or as whole-piece ranges, each
// range its own call, so that a site can receive it over several connections. What a request may ask for is
// checked here against the version (a range inside its bytes, on piece boundaries) and against the site (at most
// `limit` range calls at once per site, whatever its tokens: one site cannot open hundreds of streams).
import { status } from '@grpc/grpc-js';
import { ProtocolError } from '../proto/errors';
import type { DownloadRequest__Output } from '../proto/generated/fedtune/v1/DownloadRequest';
import type { TensorFrame } from '../proto/generated/fedtune/v1/TensorFrame';
import { checkRange, MIN_PIECE_BYTES, type PieceList } from '../proto/pieces';
import type { Manifest } from './checkpoints/types';

/** The pieces a version is served in: its manifest's list, when whole chunks tile its pieces; otherwise none. */
export function servedPieces(manifest: Manifest, chunkBytes: number, maxRangeCalls: number): Announced | undefined {
  const p = manifest.pieces;
  return p && p.bytes >= MIN_PIECE_BYTES && p.bytes % chunkBytes === 0 ? { ...p, maxRangeCalls } : undefined;
}

/** The pieces a header announces, and the most range calls one site may have in flight (its bound, stated). */
export interface Announced extends PieceList {
  readonly maxRangeCalls: number;
}

/** The stream's header frame announcing `pieces`. */
export function withPieces(frame: TensorFrame, pieces: Announced | undefined): TensorFrame {
  if (!pieces || !frame.header) return frame;
  const piece_sha256 = pieces.sha256.map((h) => Buffer.from(h, 'hex'));
  return { header: { ...frame.header, piece_bytes: pieces.bytes, piece_sha256, max_range_calls: pieces.maxRangeCalls } };
}

/** `frames` with their header announcing `pieces`, one at a time (a range of an older version stops at its end). */
export function* announce(frames: Iterable<TensorFrame>, pieces: Announced | undefined): Generator<TensorFrame> {
  for (const f of frames) yield withPieces(f, pieces);
}

/** What a request asks for, checked against the version; `rangeOf` answers it from the version's whole stream. */
export type DownloadAsk = { kind: 'whole' } | { kind: 'header' } | { kind: 'range'; offset: number; length: number };

export function askOf(r: DownloadRequest__Output, version: number, totalBytes: number, pieces: PieceList | undefined): DownloadAsk {
  const length = Number(r.range_length);
  if (length > 0) {
    if (!pieces) throw new ProtocolError(status.FAILED_PRECONDITION, `version ${version} has no piece hashes: download it whole`);
    const offset = Number(r.range_offset);
    checkRange(offset, length, totalBytes, pieces.bytes);
    return { kind: 'range', offset, length };
  }
  // A version without pieces, or of one piece (nothing to split), is sent whole even when only its header was asked
  // for: the site reads it in that one call, as before, without a second round trip.
  return r.header_only && pieces && pieces.sha256.length >= 2 ? { kind: 'header' } : { kind: 'whole' };
}

/**
 * The frames answering `ask`, taken from the version's whole stream (header, chunks of `chunkBytes`, trailer); a
 * range ends with `trailer(count)`, which counts its chunks and carries no stream hash (its pieces are checked).
 */
export function* answerFrames<F>(frames: Iterable<F>, ask: DownloadAsk, chunkBytes: number, trailer: (count: number) => F): Generator<F> {
  if (ask.kind === 'whole') {
    yield* frames;
    return;
  }
  const first = ask.kind === 'range' ? ask.offset / chunkBytes : 0;
  const end = ask.kind === 'range' ? Math.ceil((ask.offset + ask.length) / chunkBytes) : 0;
  let i = -1; // -1: the header; then the index of the chunk
  for (const f of frames) {
    if (i === -1 || i >= first) yield f;
    if (++i >= end) break; // read nothing past the last frame sent
  }
  if (ask.kind === 'range') yield trailer(end - first);
}

/** Range calls in flight per site. */
export class RangeCalls {
  private readonly active = new Map<string, number>();

  constructor(private readonly limit: number) {}

  /** Counts one range call of `clientId` until the returned release runs; RESOURCE_EXHAUSTED past the limit. */
  enter(clientId: string): () => void {
    const n = this.active.get(clientId) ?? 0;
    if (n >= this.limit) {
      throw new ProtocolError(status.RESOURCE_EXHAUSTED, `${n} range downloads of this site are in flight; at most ${this.limit} at once`);
    }
    this.active.set(clientId, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.active.get(clientId) ?? 1) - 1;
      if (left > 0) this.active.set(clientId, left);
      else this.active.delete(clientId);
    };
  }
}
