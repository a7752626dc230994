// The release pointer: `<run>/release` ("v000004\n", beside `latest`) names the version to ship. The coordinator
// moves it to each new best version (early stopping's record in the manifest, Manifest.best) right after that
// version's commit; `fedtune checkpoints release <run> <version>` sets it by hand (a rollback), refusing a
// version whose chain does not verify. `latest` is untouched by all of this: a restart still resumes from it.
//
// Crash safety: written like `latest` (temporary, fsync, rename, fsync the directory), so a reader sees the old
// pointer or the new one. The manifest is the record, the pointer follows it: a crash after a best version
// committed but before the pointer moved is finished when the coordinator next starts (reconcileRelease).
import * as path from 'node:path';
import { removeTemps, replaceAtomically, stepsFor, type CrashHook } from './atomic-fs';
import { versionDirName, type FsCheckpointStore } from './fs-store';
import type { Manifest } from './types';
import { bestSetBy } from '../evaluation/early-stopping';
import { verifyRun, type VerifyResult } from './verify';
import { runKey } from './recover';
import { ADAPTER_WEIGHTS, VersionPrunedError } from './pruned-record';

import { RELEASE_FILE, readRelease } from './release-check';

export { RELEASE_FILE, readRelease };

/** Moves `release` to `version`, atomically (crash points 'release:…', proto/durable-file.ts). */
export async function writeRelease(runDir: string, version: number, hook?: CrashHook): Promise<void> {
  await replaceAtomically(path.join(runDir, RELEASE_FILE), versionDirName(version) + '\n', stepsFor('release', hook));
}

/**
 * After a restart: when the latest version's commit set the best record (it was the last to move the pointer) and
 * `release` does not name that best version, the crash fell between that commit and the pointer: move it now. Any other
 * disagreement is the operator's doing (a rollback) and is left alone. Returns whether it moved the pointer.
 */
export async function reconcileRelease(runDir: string, latest: Manifest, hook?: CrashHook): Promise<boolean> {
  await removeTemps(path.join(runDir, RELEASE_FILE)); // what a write stopped before its rename left
  if (!latest.best || !bestSetBy(latest.best, latest.version)) return false;
  let current: number | null;
  try {
    current = await readRelease(runDir);
  } catch {
    current = null; // unreadable: rewritten from the manifest, which is the record
  }
  if (current === latest.best.version) return false;
  await writeRelease(runDir, latest.best.version, hook);
  return true;
}

/** A version named on the command line: a number, or latest / best (the chain's record) / release (the pointer). */
export async function resolveVersion(store: FsCheckpointStore, ref: string): Promise<number> {
  if (/^\d+$/.test(ref)) return Number(ref);
  const manifests = ref === 'latest' || ref === 'best' ? await store.list() : [];
  const last = manifests[manifests.length - 1];
  if (ref === 'latest') {
    if (!last) throw new Error(`${store.runDir} has no versions`);
    return last.version;
  }
  if (ref === 'best') {
    if (!last?.best) throw new Error(`no best version recorded in ${store.runDir}: its manifests carry no figures for earlyStopping.metric`);
    return last.best.version;
  }
  if (ref === 'release') {
    await store.open();
    const v = await readRelease(store.runDir);
    if (v === null) throw new Error(`${store.runDir} has no release pointer`);
    return v;
  }
  throw new Error(`version ${JSON.stringify(ref)}: a version number (0, 1, …), latest, best or release`);
}

/** Whether `version` and every version before it verify (signatures against the run's key, hashes, links). */
export function chainVerifiedTo(r: VerifyResult, version: number): string | null {
  if (!r.results.some((x) => x.version === version && x.present)) return `${versionDirName(version)} does not exist`;
  const mine = r.problems.filter((p) => p.version !== null && p.version <= version);
  if (mine.length === 0) return null;
  const more = mine.length > 1 ? ` (and ${mine.length - 1} more problems)` : '';
  return `the chain up to ${versionDirName(version)} does not verify: ${mine[0].message}${more}`;
}

/** `fedtune checkpoints release <run> <version>`: points `release` at a version whose chain verifies. */
export async function setRelease(runDir: string, version: number, publicKey?: Uint8Array): Promise<{ previous: number | null }> {
  const key = publicKey ? { publicKey, source: '--key' } : await runKey(runDir);
  const r = await verifyRun(runDir, key ? { publicKey: key.publicKey, keySource: key.source } : {});
  const problem = chainVerifiedTo(r, version);
  if (problem) throw new Error(`refused: ${problem}; the release pointer was not changed`);
  // The version shipped is its adapter (its average under strategy.ema): one retention removed cannot be released.
  const gone = (r.results.find((x) => x.version === version)?.pruned ?? []).filter((f) => ADAPTER_WEIGHTS.includes(f));
  if (gone.length) throw new Error(`refused: ${new VersionPrunedError(version, gone).message}; the release pointer was not changed`);
  if (r.latest === null || version > r.latest) throw new Error(`refused: ${versionDirName(version)} is beyond latest; the release pointer was not changed`);
  let previous: number | null = null;
  try {
    previous = await readRelease(runDir);
  } catch {
    // an unreadable pointer is replaced
  }
  await writeRelease(runDir, version);
  return { previous };
}
