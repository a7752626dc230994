// A run's layout on disk and the one rule about its pointer: the file names of a version directory, how versions
// are named, what `latest` may hold, and the errors a store raises when a run is damaged rather than interrupted.
// The store (fs-store.ts) writes and reads by these; its header explains the layout and why `latest` only ever
// moves forward by one. fs-store.ts re-exports them, so callers keep importing the store.

export const ADAPTER_FILE = 'adapter_model.safetensors';
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 'fedtune.checkpoint/1';

export const versionDirName = (v: number): string => `v${String(v).padStart(6, '0')}`;
/** A version directory's name (v000003); also what `latest` holds. */
export const VERSION_RE = /^v(\d{6,})$/;

export class CheckpointIntegrityError extends Error {
  override name = 'CheckpointIntegrityError';
}

/** The latest pointer disagrees with versions/ in a way no crash leaves: an operator must run `fedtune recover`. */
export class RecoveryNeededError extends CheckpointIntegrityError {
  override name = 'RecoveryNeededError';
}

/** The versions belong to another run than the one this store was opened for: refused, nothing changed. */
export class RunMismatchError extends CheckpointIntegrityError {
  override name = 'RunMismatchError';
}

/** The directory holds no run (no versions/): read-only commands refuse it rather than create one. */
export class NotARunError extends Error {
  override name = 'NotARunError';
}

export const LATEST_FILE = 'latest';

export const RECOVER_HINT = (runDir: string): string =>
  `Nothing was changed. Run \`fedtune recover ${runDir}\` to rebuild the pointer from the signed chain (\`fedtune verify ${runDir}\` shows every problem)`;

/**
 * What is wrong between the pointer and the versions present, if anything. `rollForward` is set for the one
 * state a crash leaves: exactly one version beyond the pointer (v000000 when there is no pointer yet).
 */
export function pointerProblem(runDir: string, pointer: number | null, versions: readonly number[]): { message: string; rollForward?: number } | null {
  const highest = versions.length ? versions[versions.length - 1] : null;
  const run = `run ${runDir}`;
  if (pointer !== null && !versions.includes(pointer)) {
    return {
      message: `${run}: latest names ${versionDirName(pointer)}, which does not exist (${highest === null ? 'there are no versions' : `versions run up to ${versionDirName(highest)}`}). ${RECOVER_HINT(runDir)}`,
    };
  }
  const beyond = versions.filter((v) => pointer === null || v > pointer);
  if (beyond.length === 0) return null;
  const next = pointer === null ? 0 : pointer + 1;
  if (beyond.length === 1 && beyond[0] === next) return { message: `${run}: ${versionDirName(next)} is beyond the latest pointer`, rollForward: next };
  const range = `${versionDirName(beyond[0])}…${versionDirName(beyond[beyond.length - 1])}`;
  const what =
    pointer === null
      ? `the latest pointer is missing, but versions ${range} exist`
      : `latest names ${versionDirName(pointer)}, but versions ${range} exist beyond it`;
  return {
    message: `${run}: ${what}. The pointer only ever moves forward one version at a time, so this is damage (a deleted, edited or restored pointer), not an interrupted commit. ${RECOVER_HINT(runDir)}`,
  };
}
