// Applies the retention policy (retention.ts) to a run directory: for each version below latest that holds files
// the policy drops, first its record (pruned-record.ts: written atomically, signed), then the files, then an fsync
// of the version directory. The coordinator's store runs it right after each commit is durable (the latest pointer
// moved and synced); `fedtune checkpoints prune` runs it on a run written before retention existed.
//
// Crash safety: the record goes first, so a kill at any step leaves either no record (nothing removed yet) or a
// record naming files that are gone or still present; verify accepts both, and the next pass removes what the
// record names. Every pass finishes what earlier records name, so a record only ever means "removed or being
// removed", never "kept". Nothing is removed at or beyond latest, nothing the manifest does not list, and never a
// manifest, a signature or adapter_config.json.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { removeTemps, replaceAtomically, stepsFor, type CrashHook } from './atomic-fs';
import type { ManifestSigner } from './signature';
import { MANIFEST_FILE, VERSION_RE, versionDirName } from './run-layout';
import { EMA_ADAPTER_FILE, EMA_DIR } from './ema-files';
import { PRUNABLE, PRUNED_FILE, encodePruned, readPruned } from './pruned-record';
import { describePolicy, filesToPrune, type RetentionPolicy } from './retention';
import { readRelease } from './release-check';
import type { Manifest } from './types';

export interface PruneOptions {
  readonly policy: RetentionPolicy;
  /** The version latest names (nothing at or beyond it is touched). */
  readonly latest: number;
  /** Versions that keep every file besides latest: the release pointer's and the best record's. */
  readonly keep: readonly number[];
  /** Signs each record (the run's manifest key); without one the records are unsigned, as the run's manifests. */
  readonly signer?: ManifestSigner;
  /** Only report what would be removed. */
  readonly dryRun?: boolean;
  /** Test seam: every step that changes the disk ('prune:record:rename', 'prune:unlink', 'prune:rmdir'). */
  readonly crashHook?: CrashHook;
  /**
   * What earlier passes of this process applied, by version (the files the policy dropped): a version whose drop
   * set is unchanged is not looked at again, so a pass after each commit costs a few versions, not the whole run.
   * Filled in by the pass. Absent: every version is looked at (the first pass of a process, the CLI).
   */
  readonly applied?: Map<number, string>;
}

export interface PrunedVersion {
  readonly version: number;
  /** Files removed by this pass (or that a dry run would remove). */
  readonly files: readonly string[];
  readonly bytes: number;
}

export interface PruneResult {
  readonly versions: readonly PrunedVersion[];
  readonly bytes: number;
}

/**
 * The versions that keep every file besides latest: the release pointer's (an unreadable pointer protects nothing:
 * verify reports it), the best version, and the versions of early stopping's window (earlyStopping.window: a later
 * best names the middle one of them, so none of them may lose its adapter before it leaves the window).
 */
export async function keptVersions(runDir: string, best: Manifest['best']): Promise<number[]> {
  const release = await readRelease(runDir).catch(() => null);
  return [...(release === null ? [] : [release]), ...(best ? [best.version, ...(best.recent ?? []).map((r) => r.version)] : [])];
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

const exists = (f: string): Promise<number | null> =>
  fs.stat(f).then(
    (s) => s.size,
    () => null,
  );

export async function pruneRun(runDir: string, o: PruneOptions): Promise<PruneResult> {
  const versionsDir = path.join(runDir, 'versions');
  const kept = new Set([o.latest, ...o.keep]);
  const numbers = (await fs.readdir(versionsDir))
    .map((n) => VERSION_RE.exec(n))
    .filter((m): m is RegExpExecArray => m !== null && m[0] === versionDirName(Number(m[1])))
    .map((m) => Number(m[1]))
    .filter((v) => v < o.latest)
    .sort((a, b) => a - b);
  const out: PrunedVersion[] = [];
  for (const v of numbers) {
    const wanted = filesToPrune(o.policy, v, o.latest, kept);
    const key = wanted.join(',');
    if (o.applied?.get(v) === key) continue;
    const r = await pruneVersion(path.join(versionsDir, versionDirName(v)), v, wanted, o);
    if (r) out.push(r);
    if (!o.dryRun) o.applied?.set(v, key);
  }
  return { versions: out, bytes: out.reduce((s, r) => s + r.bytes, 0) };
}

async function pruneVersion(dir: string, v: number, wanted: readonly string[], o: PruneOptions): Promise<PrunedVersion | null> {
  // The cheap look first (a steady run has hundreds of versions): which prunable files are still there.
  const names = await fs.readdir(dir);
  const inEma = names.includes(EMA_DIR) ? (await fs.readdir(path.join(dir, EMA_DIR))).map((n) => `${EMA_DIR}/${n}`) : [];
  const present = [...names, ...inEma].filter((n) => PRUNABLE.includes(n));
  const emptyEma = names.includes(EMA_DIR) && inEma.length === 0;
  if (present.length === 0 && !emptyEma) return null;
  const record = names.includes(PRUNED_FILE) ? await readPruned(dir, v) : null;
  const recorded = new Set(record?.files ?? []);
  let fresh = wanted.filter((n) => present.includes(n) && !recorded.has(n));
  if (fresh.length === 0 && !present.some((n) => recorded.has(n)) && !(emptyEma && recorded.has(EMA_ADAPTER_FILE))) return null;
  // Only names the manifest lists: an unlisted file is verify's finding (extra-file), not the policy's to remove.
  const manifestBytes = await fs.readFile(path.join(dir, MANIFEST_FILE));
  const listed = (JSON.parse(manifestBytes.toString('utf8')) as { files: Record<string, string> }).files;
  fresh = fresh.filter((n) => n in listed);
  const remove = present.filter((n) => recorded.has(n) || fresh.includes(n));
  let bytes = 0;
  for (const n of remove) bytes += (await exists(path.join(dir, n))) ?? 0;
  if (o.dryRun) return remove.length ? { version: v, files: remove, bytes } : null;
  const hook = o.crashHook;
  if (fresh.length) {
    await removeTemps(path.join(dir, PRUNED_FILE)); // what an earlier pass's record write left, if it was cut
    const files = [...new Set([...recorded, ...fresh])];
    const text = encodePruned({ version: v, manifestSha256: sha256(manifestBytes), files, reason: describePolicy(o.policy) }, o.signer);
    await replaceAtomically(path.join(dir, PRUNED_FILE), text, stepsFor('prune:record', hook));
  }
  const step = stepsFor('prune', hook);
  for (const n of remove) {
    await fs.rm(path.join(dir, n), { force: true });
    await step('unlink', path.join(dir, n));
  }
  // ema/ goes with its two files (the manifest lists them, so verify expects the directory only while they are there).
  // No fsync after the removals: a removal a crash undoes leaves a file the record names, which the next pass removes.
  if (names.includes(EMA_DIR) && (await fs.readdir(path.join(dir, EMA_DIR))).length === 0) {
    await fs.rmdir(path.join(dir, EMA_DIR));
    await step('rmdir', path.join(dir, EMA_DIR));
  }
  return remove.length ? { version: v, files: remove, bytes } : null;
}
