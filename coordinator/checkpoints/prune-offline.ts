// `fedtune checkpoints prune <run>`: retention (retention.ts) applied to a run by hand, e.g. one written before
// retention existed, or to tighten a policy after the fact. A dry run by default: it says what would go and what it
// would free. With --apply it first verifies the whole run (a damaged run is refused: pruning must not hide
// damage), takes the run's lock (a coordinator working on the run refuses it), then prunes as the coordinator does
// after a commit, signing each record with the run's key (keys/coordinator.json, or --key-file).
import * as path from 'node:path';
import { loadCoordinatorKeys } from '../keys';
import { RunLock } from '../run-lock';
import { FsCheckpointStore, versionDirName } from './fs-store';
import { keptVersions, pruneRun, type PruneResult } from './prune';
import { describePolicy, type RetentionPolicy } from './retention';
import { manifestSigner, sameKey, type ManifestSigner } from './signature';
import { verifyRun } from './verify';
import { checkpointsSchema } from './config-schema';

export interface OfflinePruneOptions {
  /** Keys given on the command line; the rest come from the latest manifest's config, else the defaults. */
  readonly policy?: Partial<RetentionPolicy>;
  /** Remove (default: only report). */
  readonly apply?: boolean;
  /** The coordinator key file (default <run>/keys/coordinator.json). */
  readonly keyFile?: string;
}

export interface OfflinePruneResult extends PruneResult {
  readonly policy: RetentionPolicy;
  readonly latest: number;
  readonly applied: boolean;
}

const schemaDefault = (k: keyof RetentionPolicy): number => checkpointsSchema.checkpoints[k].default;

/** The policy: flags, then what the run's latest manifest was configured with, then the defaults. */
function policyFor(given: Partial<RetentionPolicy>, recorded: unknown): RetentionPolicy {
  const rec = (recorded && typeof recorded === 'object' ? recorded : {}) as Record<string, unknown>;
  const pick = (k: keyof RetentionPolicy): number => {
    const r = rec[k];
    return given[k] ?? (typeof r === 'number' ? r : schemaDefault(k));
  };
  return { keepServerState: pick('keepServerState'), keepAdapters: pick('keepAdapters'), keepEvery: pick('keepEvery') };
}

export async function pruneOffline(runDir: string, o: OfflinePruneOptions = {}): Promise<OfflinePruneResult> {
  const store = new FsCheckpointStore(runDir, { readOnly: true });
  const latest = await store.latest(); // a run, its chain to latest intact, latest's files verified
  if (!latest) throw new Error(`${runDir} has no versions`);
  const m = latest.manifest;
  const policy = policyFor(o.policy ?? {}, m.config.checkpoints);
  const plan = { policy, latest: m.version, keep: await keptVersions(runDir, m.best) };
  if (!o.apply) return { ...(await pruneRun(runDir, { ...plan, dryRun: true })), policy, latest: m.version, applied: false };
  const lock = await RunLock.acquire(runDir, 'fedtune checkpoints prune');
  try {
    const signer = await runSigner(runDir, o.keyFile);
    const report = await verifyRun(runDir, signer ? { publicKey: signer.publicKey, keySource: 'the key file' } : {});
    if (!report.ok) {
      const more = report.problems.length > 1 ? ` (and ${report.problems.length - 1} more: \`fedtune verify\` lists them)` : '';
      throw new Error(`refused: the run does not verify: ${report.problems[0].message}${more}. Nothing was removed`);
    }
    if (report.key && !signer)
      throw new Error(`refused: the run is signed (key ${report.key.keyId}), so its pruning records must be too: pass --key-file. Nothing was removed`);
    if (report.key && signer && !sameKey(Buffer.from(report.key.publicKey, 'base64'), signer.publicKey))
      throw new Error(`refused: the key file's key ${signer.keyId} is not the run's ${report.key.keyId}. Nothing was removed`);
    // The latest version may have moved since the dry look: read it again under the lock.
    const now = (await new FsCheckpointStore(runDir, { readOnly: true }).latest())!.manifest;
    const result = await pruneRun(runDir, { policy, latest: now.version, keep: await keptVersions(runDir, now.best), signer });
    return { ...result, policy, latest: now.version, applied: true };
  } finally {
    await lock.release();
  }
}

/**
 * The run's manifest signer from its key file; undefined when there is none (an unsigned run). One read, and never
 * a create: a file that vanished after a look must not come back as a new key left in the run.
 */
async function runSigner(runDir: string, keyFile: string | undefined): Promise<ManifestSigner | undefined> {
  const keys = await loadCoordinatorKeys(keyFile ?? path.join(runDir, 'keys', 'coordinator.json'));
  if (keys) return manifestSigner(keys.sign);
  if (keyFile !== undefined) throw new Error(`--key-file ${keyFile}: no such file`);
  return undefined;
}

/** The command's report: one line per version with --verbose, then what was (or would be) freed. */
export function formatPrune(r: OfflinePruneResult, verbose: boolean): string[] {
  const lines = verbose ? r.versions.map((v) => `${versionDirName(v.version)}: ${r.applied ? 'removed' : 'would remove'} ${v.files.join(', ')}`) : [];
  const files = r.versions.reduce((n, v) => n + v.files.length, 0);
  const mib = (r.bytes / 2 ** 20).toFixed(1);
  lines.push(`policy: ${describePolicy(r.policy)} (latest ${versionDirName(r.latest)})`);
  lines.push(
    r.applied
      ? `removed ${files} files from ${r.versions.length} versions, freed ${mib} MiB (${r.bytes} bytes); each version keeps its manifest, signature and a pruned.json naming what went`
      : `dry run: would remove ${files} files from ${r.versions.length} versions, freeing ${mib} MiB (${r.bytes} bytes); nothing was changed (--apply removes them)`,
  );
  return lines;
}
