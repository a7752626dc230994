// Reading the release pointer, and what `fedtune verify` says about it (release.ts writes it). Apart from
// release.ts so that verify.ts can use it without an import cycle (release.ts verifies before it writes).
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { versionDirName } from './run-layout';
import type { Problem } from './verify-types';

export const RELEASE_FILE = 'release';
const VERSION_RE = /^v(\d{6,})$/;

/** The version `release` names; null when there is none. Throws on a pointer that names nothing. */
export async function readRelease(runDir: string): Promise<number | null> {
  let text: string;
  try {
    text = await fs.readFile(path.join(runDir, RELEASE_FILE), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const m = VERSION_RE.exec(text.trim());
  if (!m || text !== `${versionDirName(Number(m[1]))}\n`)
    throw new Error(`does not name a version as the coordinator writes it: ${JSON.stringify(text.slice(0, 40))}`);
  return Number(m[1]);
}

/**
 * For `fedtune verify`: a release pointer, when there is one, must name a present version at or below latest
 * whose chain (it and every version before it) has no problem. Returns the sentence to report, or null.
 */
export async function releaseProblem(
  runDir: string,
  present: ReadonlySet<number>,
  latest: number | null,
  problems: readonly Problem[],
): Promise<string | null> {
  let v: number | null;
  try {
    v = await readRelease(runDir);
  } catch (e) {
    return (e as Error).message;
  }
  if (v === null) return null;
  const name = versionDirName(v);
  if (!present.has(v)) return `names ${name}, which does not exist`;
  if (latest !== null && v > latest) return `names ${name}, beyond latest ${versionDirName(latest)}`;
  const bad = problems.find((p) => p.version !== null && p.version <= v);
  return bad ? `names ${name}, whose chain does not verify (${bad.message})` : null;
}
