// `fedtune verify`'s shared pieces (verify.ts): what one version directory yielded, the collector of problems, a file
// read that never throws; and the checks that span versions: every manifest names the same run, every parent link
// names the version before and its manifest's hash.
import { promises as fs } from 'node:fs';
import { MANIFEST_FILE, versionDirName } from './run-layout';
import type { SignatureCheck } from './signature';
import type { PrunedRecord } from './pruned-record';
import type { Problem, ProblemKind } from './verify-types';

export const short = (hex: string): string => `${hex.slice(0, 12)}…`;
export const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** What one version directory yielded, for the checks that span versions. */
export interface VersionInfo {
  readonly version: number;
  manifestSha256?: string;
  manifest?: Record<string, unknown>;
  sig?: SignatureCheck;
  /** manifest.json does not match the hash its (otherwise intact) signature records. */
  manifestChangedAfterSigning: boolean;
  /** Its retention record (pruned-record.ts), when it has a well-formed one. */
  pruned?: PrunedRecord;
  /** Files the record names that are gone (the others are still there: an interrupted prune). */
  prunedGone?: string[];
}

export class Collector {
  readonly problems: Problem[] = [];
  add(version: number | null, file: string | null, kind: ProblemKind, message: string, extra: { expected?: string; actual?: string } = {}): void {
    const where = version === null ? (file ?? '') : file === null ? versionDirName(version) : `${versionDirName(version)}/${file}`;
    this.problems.push({ version, file, kind, message: `${where}: ${message}`, ...extra });
  }
}

/** A file's bytes, or why there are none ('missing', 'unreadable (EISDIR)'): a damaged run must not crash verify. */
export async function readFile(file: string): Promise<Buffer | { absent: string }> {
  try {
    return await fs.readFile(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return { absent: code === 'ENOENT' ? 'missing' : `unreadable (${code ?? (e as Error).message})` };
  }
}

/** Every manifest must name the same run; the odd ones out are those that differ from the most common id. */
export function checkRunIds(infos: Map<number, VersionInfo>, out: Collector): void {
  const counts = new Map<string, number>();
  for (const i of infos.values()) if (typeof i.manifest?.runId === 'string') counts.set(i.manifest.runId, (counts.get(i.manifest.runId) ?? 0) + 1);
  let common: string | undefined;
  for (const [id, n] of counts) if (common === undefined || n > counts.get(common)!) common = id;
  for (const i of infos.values()) {
    const id = i.manifest?.runId;
    if (typeof id === 'string' && id !== common)
      out.add(i.version, MANIFEST_FILE, 'run-id', `runId ${JSON.stringify(id)} differs from the run's ${JSON.stringify(common)}`);
  }
}

/** v0 has no parent; every later version names v−1 and the sha256 of its manifest.json as written. */
export function checkParents(infos: Map<number, VersionInfo>, out: Collector): void {
  for (const i of infos.values()) {
    const p = i.manifest?.parent;
    if (p === undefined || (p !== null && !isObject(p))) continue; // shape already reported
    const v = i.version;
    if (v === 0) {
      if (p !== null) out.add(v, MANIFEST_FILE, 'parent-link', 'version 0 must have no parent, but names one');
      continue;
    }
    if (p === null) {
      out.add(v, MANIFEST_FILE, 'parent-link', `has no parent link (expected ${versionDirName(v - 1)})`);
      continue;
    }
    if (p.version !== v - 1) out.add(v, MANIFEST_FILE, 'parent-link', `parent.version is ${JSON.stringify(p.version)}, not ${v - 1}`);
    const parent = infos.get(v - 1);
    if (!parent?.manifestSha256 || typeof p.manifestSha256 !== 'string') continue; // a gap or missing manifest, already reported
    if (p.manifestSha256 === parent.manifestSha256) continue;
    // The parent's manifest changed after signing (reported there) and this link names what was signed: not a second fault.
    if (parent.manifestChangedAfterSigning && p.manifestSha256 === parent.sig?.sig.manifestSha256) continue;
    out.add(
      v,
      MANIFEST_FILE,
      'parent-link',
      `parent.manifestSha256 ${short(p.manifestSha256)} does not match the sha256 ${short(parent.manifestSha256)} of ${versionDirName(v - 1)}/${MANIFEST_FILE}`,
      {
        expected: p.manifestSha256,
        actual: parent.manifestSha256,
      },
    );
  }
}
