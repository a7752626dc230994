// `fedtune checkpoints release <run> <version>` (alias rollback): points the release pointer at a chosen version
// (a number, latest or best), after checking that its chain verifies (checkpoints/release.ts). The coordinator
// moves the pointer again when a new best version commits, so this refuses while a coordinator holds the run's
// lock (run-lock.ts) and takes the lock itself meanwhile; `latest`, which a restart resumes from, is untouched.
import type { Command } from 'commander';
import { parseKeyOption } from './verify-command';
import { FsCheckpointStore, versionDirName } from '../checkpoints/fs-store';
import { resolveVersion, setRelease } from '../checkpoints/release';
import { RunLock, RunLockedError } from '../run-lock';

export function addReleaseCommand(checkpoints: Command): void {
  checkpoints
    .command('release <runDir> <version>')
    .alias('rollback')
    .description("Point the run's release pointer at a version (a number, latest or best) whose chain verifies")
    .option('--key <pub>', "Ed25519 public key every version must be signed with (default: the run's keys/coordinator.json)")
    .action(async (runDir: string, ref: string, o: { key?: string }) => {
      const store = new FsCheckpointStore(runDir, { readOnly: true });
      await store.open(); // not a run: an error, before any lock file is written
      const version = await resolveVersion(store, ref);
      const key = o.key === undefined ? undefined : await parseKeyOption(o.key);
      // The coordinator moves the pointer itself when a best version commits: refuse while one holds the run.
      let lock: RunLock;
      try {
        lock = await RunLock.acquire(runDir, 'fedtune checkpoints release');
      } catch (e) {
        if (!(e instanceof RunLockedError)) throw e;
        throw new Error(`refused: ${e.message}; the release pointer was not changed`, { cause: e });
      }
      try {
        const { previous } = await setRelease(runDir, version, key?.publicKey);
        console.log(`release: ${previous === null ? '(none)' : versionDirName(previous)} -> ${versionDirName(version)}`);
      } finally {
        await lock.release();
      }
    });
}
