// Piece hashes: what lets a download be received over several connections and checked on several threads. One
// SHA-256 stream runs on one thread, and on a fast loopback it alone reads at about half of raw TCP; so a committed
// version's manifest lists the SHA-256 of each piece (PIECE_BYTES of the tensor stream's data bytes, the last one
// shorter), and the coordinator sends the list in the download's header. A site then fetches whole-piece ranges
// over K connections, each received and checked on its own thread, and refuses any piece that does not hash to
// its entry.
//
// Why a flat list rather than a Merkle root: the site needs every piece's hash anyway before it can check that
// piece, and the list is small (32 bytes per 4 MiB: 8 KiB for a 1 GiB adapter); a root would only add proofs to
// send. The manifest is signed, so the list is as trusted as the manifest's file hashes.
import { createHash } from 'node:crypto';
import { ProtocolError, status } from './errors';
import type { TensorList } from './tensors';

/** Bytes per piece for versions committed from now on: four 1 MiB chunks (the default chunk size). */
export const PIECE_BYTES = 4 << 20;
/** The smallest piece size a site accepts: bounds the list a coordinator can make it hold (65,536 for 4 GiB). */
export const MIN_PIECE_BYTES = 64 << 10;

/** A version's piece hashes as its manifest records them. */
export interface PieceList {
  readonly bytes: number;
  /** SHA-256 (hex) of each piece, in stream order. */
  readonly sha256: readonly string[];
}

export const pieceCount = (totalBytes: number, pieceBytes: number): number => Math.ceil(totalBytes / pieceBytes);

/** The piece hashes of `tensors`' data bytes (their float32 values concatenated in order, as the stream sends them). */
export function pieceHashes(tensors: TensorList, pieceBytes = PIECE_BYTES): PieceList {
  const out: string[] = [];
  let hash = createHash('sha256');
  let filled = 0;
  for (const t of tensors) {
    let view = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    while (view.length > 0) {
      const take = Math.min(view.length, pieceBytes - filled);
      hash.update(view.subarray(0, take));
      filled += take;
      view = view.subarray(take);
      if (filled === pieceBytes) {
        out.push(hash.digest('hex'));
        hash = createHash('sha256');
        filled = 0;
      }
    }
  }
  if (filled > 0) out.push(hash.digest('hex'));
  return { bytes: pieceBytes, sha256: out };
}

/** One range call of a parallel download: whole pieces `first`..`first + count - 1`. */
export interface PieceRange {
  readonly offset: number;
  readonly length: number;
  readonly first: number;
  readonly count: number;
}

/** `totalBytes` split into at most `k` ranges of whole pieces, as even as pieces allow. */
export function planRanges(totalBytes: number, pieceBytes: number, k: number): PieceRange[] {
  const pieces = pieceCount(totalBytes, pieceBytes);
  const out: PieceRange[] = [];
  const n = Math.max(1, Math.min(k, pieces));
  for (let i = 0; i < n; i++) {
    const first = Math.floor((pieces * i) / n);
    const end = Math.floor((pieces * (i + 1)) / n);
    if (end === first) continue;
    const offset = first * pieceBytes;
    out.push({ offset, length: Math.min(totalBytes, end * pieceBytes) - offset, first, count: end - first });
  }
  return out;
}

/**
 * The coordinator's check of a requested range against the version: OUT_OF_RANGE when it leaves the stream's
 * bytes, INVALID_ARGUMENT when it does not start and end on piece boundaries (or at the end of the stream).
 */
export function checkRange(offset: number, length: number, totalBytes: number, pieceBytes: number): void {
  if (offset + length > totalBytes) {
    throw new ProtocolError(status.OUT_OF_RANGE, `range ${offset}+${length} ends past the version's ${totalBytes} bytes`);
  }
  const end = offset + length;
  if (offset % pieceBytes !== 0 || (end % pieceBytes !== 0 && end !== totalBytes)) {
    throw new ProtocolError(status.INVALID_ARGUMENT, `range ${offset}+${length} does not start and end on ${pieceBytes}-byte piece boundaries`);
  }
}

/**
 * The site's check of a header's piece list before trusting any range: INVALID_ARGUMENT unless the pieces tile the
 * declared bytes in whole chunks. Returns null for a header without pieces (an old coordinator or version).
 */
export function headerPieces(h: {
  total_bytes?: number | string;
  chunk_bytes?: number;
  piece_bytes?: number;
  piece_sha256?: Buffer[];
}): { bytes: number; sha256: Buffer[] } | null {
  const bytes = h.piece_bytes ?? 0;
  const list = h.piece_sha256 ?? [];
  if (bytes === 0 && list.length === 0) return null;
  const total = Number(h.total_bytes ?? 0);
  const chunk = h.chunk_bytes ?? 0;
  if (bytes < MIN_PIECE_BYTES || chunk <= 0 || bytes % chunk !== 0) {
    throw new ProtocolError(status.INVALID_ARGUMENT, `piece_bytes ${bytes} is not a multiple of chunk_bytes ${chunk} of at least ${MIN_PIECE_BYTES}`);
  }
  if (list.length !== pieceCount(total, bytes) || list.some((d) => d.length !== 32)) {
    throw new ProtocolError(status.INVALID_ARGUMENT, `${list.length} piece hashes for ${pieceCount(total, bytes)} pieces of ${total} bytes`);
  }
  return { bytes, sha256: list };
}
