// An exclusive lock on a run directory (<run>/coordinator.lock), so that two coordinators — or a coordinator
// and `fedtune recover` — never write the same run. The lock file is created atomically and exclusively
// (proto/durable-file.ts createAtomically: a complete file or none) and names its holder: pid, host, when it
// started and, on Linux, the kernel's start time of that process (so a reused pid is not mistaken for it).
//
// A lock left by a process killed with SIGKILL is stale: on the same host, when its pid is gone (or belongs to
// a process that started at another time), the next taker removes it and takes the lock. A lock from another
// host cannot be checked from here and is refused with what the operator needs to decide.
import { promises as fs, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createAtomically, fsyncPath, tempsOf } from '../proto/durable-file';

export const LOCK_FILE = 'coordinator.lock';

export interface LockHolder {
  readonly pid: number;
  readonly hostname: string;
  readonly startedAt: string;
  /** What holds it: 'coordinator' or 'fedtune recover'. */
  readonly command: string;
  /** The process's start time in clock ticks after boot (/proc/<pid>/stat field 22); null off Linux. */
  readonly processStart: string | null;
  /** Random: release() removes the file only while it is still this holder's. */
  readonly token: string;
}

export class RunLockedError extends Error {
  override name = 'RunLockedError';
}

/** Field 22 of /proc/<pid>/stat (after the parenthesised command name, which may hold spaces). */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** Whether the holder's process still runs on this host. */
function holderAlive(h: LockHolder): boolean {
  try {
    process.kill(h.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  // The pid exists: the same process only if it started when the holder did (when both are known).
  const now = processStart(h.pid);
  return h.processStart === null || now === null || now === h.processStart;
}

function parseHolder(text: string): LockHolder | null {
  try {
    const j = JSON.parse(text) as Partial<LockHolder>;
    if (typeof j.pid === 'number' && typeof j.hostname === 'string' && typeof j.token === 'string') {
      return {
        pid: j.pid,
        hostname: j.hostname,
        startedAt: String(j.startedAt),
        command: String(j.command),
        processStart: typeof j.processStart === 'string' ? j.processStart : null,
        token: j.token,
      };
    }
  } catch {
    // fall through: not a lock this code wrote
  }
  return null;
}

export class RunLock {
  private released = false;
  private constructor(
    readonly file: string,
    readonly holder: LockHolder,
  ) {}

  /**
   * Takes the lock on `runDir` (which must exist) for `command`, or throws RunLockedError naming the holder.
   * `warn` hears about a stale lock that was removed.
   */
  static async acquire(runDir: string, command: string, warn?: (message: string) => void): Promise<RunLock> {
    const file = path.join(runDir, LOCK_FILE);
    const holder: LockHolder = {
      pid: process.pid,
      hostname: os.hostname(),
      startedAt: new Date().toISOString(),
      command,
      processStart: processStart(process.pid),
      token: randomBytes(8).toString('hex'),
    };
    // A process killed while taking the lock leaves its temporary; one a minute old is no one's any more.
    for (const t of await tempsOf(file)) {
      const st = await fs.stat(t).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 60_000) await fs.rm(t, { force: true });
    }
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await createAtomically(file, JSON.stringify(holder) + '\n', undefined, 0o644);
        return new RunLock(file, holder);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const text = await fs.readFile(file, 'utf8').catch(() => null);
      if (text === null) continue; // released meanwhile: try again
      const other = parseHolder(text);
      if (!other)
        throw new RunLockedError(`run directory ${runDir} is locked by ${file}, which fedtune cannot read; if no coordinator uses this run, delete that file`);
      const who = `${other.command} (pid ${other.pid} on ${other.hostname}, started ${other.startedAt})`;
      if (other.hostname !== holder.hostname) {
        throw new RunLockedError(`run directory ${runDir} is in use by ${who}; that host cannot be checked from here: if that process is gone, delete ${file}`);
      }
      if (holderAlive(other)) throw new RunLockedError(`run directory ${runDir} is in use by ${who}; stop it first (two writers would corrupt the run)`);
      // Stale: remove it only if it is still the very file just read, then race for it again.
      if ((await fs.readFile(file, 'utf8').catch(() => null)) === text) {
        await fs.rm(file, { force: true });
        await fsyncPath(runDir);
        warn?.(`removed a stale lock left by ${who}, which no longer runs`);
      }
    }
    throw new RunLockedError(`run directory ${runDir}: could not take ${file} (another process keeps taking it)`);
  }

  /** Removes the lock file if it is still this holder's. Idempotent. */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    const text = await fs.readFile(this.file, 'utf8').catch(() => null);
    if (text !== null && parseHolder(text)?.token === this.holder.token) {
      await fs.rm(this.file, { force: true });
      await fsyncPath(path.dirname(this.file)).catch(() => undefined);
    }
  }
}
