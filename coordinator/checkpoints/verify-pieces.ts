// `fedtune verify`'s check of a manifest's piece hashes (proto/pieces.ts; what every parallel download checks a
// version's bytes against) against its adapter file, whose own hash already matched the manifest's.
import { pieceHashes } from '../../proto/pieces';
import { readSafetensors } from '../../proto/safetensors';

const HEX64 = /^[0-9a-f]{64}$/;
const short = (hex: string): string => `${hex.slice(0, 12)}…`;

export interface PiecesProblem {
  readonly kind: 'manifest' | 'file-hash';
  readonly message: string;
  readonly expected?: string;
  readonly actual?: string;
}

/** What is wrong with `pieces` for the adapter file `bytes`; null when every piece hashes to its entry. */
export function piecesProblem(bytes: Buffer, pieces: unknown): PiecesProblem | null {
  const p = (pieces !== null && typeof pieces === 'object' ? pieces : {}) as { bytes?: unknown; sha256?: unknown };
  const list: unknown[] = Array.isArray(p.sha256) ? (p.sha256 as unknown[]) : [];
  const size = p.bytes;
  if (
    typeof size !== 'number' ||
    !Number.isSafeInteger(size) ||
    size <= 0 ||
    !Array.isArray(p.sha256) ||
    !list.every((h) => typeof h === 'string' && HEX64.test(h))
  ) {
    return { kind: 'manifest', message: 'pieces is not a piece size and a list of sha256 hex digests' };
  }
  let got: readonly string[];
  try {
    got = pieceHashes(readSafetensors(bytes).tensors, size).sha256;
  } catch {
    return null; // an adapter file that does not parse is not this check's finding (its hash matched the manifest's)
  }
  const i = got.length === list.length ? got.findIndex((h, k) => h !== list[k]) : Math.min(got.length, list.length);
  if (i < 0) return null;
  const expected = typeof list[i] === 'string' ? (list[i] as string) : '(none)';
  const actual = got[i] ?? '(none)';
  return {
    kind: 'file-hash',
    message: `piece ${i}: sha256 ${short(actual)} does not match the manifest's pieces (${short(expected)}; ${list.length} listed, ${got.length} in the file)`,
    expected,
    actual,
  };
}
