// Crash-safe file writes, shared by the checkpoint store (coordinator) and the key files (both sides): write
// a temporary name in the same directory, fsync it, rename (or link) it into place, fsync the directory.
// After a crash a reader sees the old file or the new one, never a torn or empty one.
//
// Every step that changes what is on disk calls a `Step` hook with its name. Tests use it to stop a write
// at each step in turn (test/crash-points.test.ts); the FEDTUNE_TEST_KILL_AT variable makes the process
// SIGKILL itself at one named step (test/crash-restart.test.ts). Without either the hook does nothing.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/** Called after each step that changes the disk: `point` names it ('open', 'write', 'fsync', 'rename' …). */
export type Step = (point: string, file: string) => void | Promise<void>;

/** A test-only hook that sees every step as `${scope}:${point}`. */
export type CrashHook = (point: string, file: string) => void | Promise<void>;

export const KILL_AT_ENV = 'FEDTUNE_TEST_KILL_AT';

/**
 * The step function for one scope ('commit', 'key-file' …): reports `${scope}:${point}` to `hook`, and kills
 * this process with SIGKILL when FEDTUNE_TEST_KILL_AT names that point (read at each step, so a test can set it
 * for a child process only).
 */
export function stepsFor(scope: string, hook?: CrashHook): Step {
  return async (point, file) => {
    const name = `${scope}:${point}`;
    if (hook) await hook(name, file);
    if (process.env[KILL_AT_ENV] === name) {
      process.kill(process.pid, 'SIGKILL');
      // SIGKILL to oneself is delivered at once; never run a further step meanwhile.
      // Stryker disable next-line all: equivalent: SIGKILL to oneself is delivered before this line runs.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10_000);
    }
  };
}

const noStep: Step = () => undefined;

export async function fsyncPath(p: string, step: Step = noStep): Promise<void> {
  const fh = await fs.open(p, 'r');
  // Stryker disable next-line BlockStatement: equivalent: the block is the fsync alone (see below).
  try {
    // Stryker disable next-line CallExpression: equivalent: fsync shows only after a power loss, which no test can cause; the step reported after it is checked.
    await fh.sync();
    // Stryker disable next-line BlockStatement: equivalent: the finally block is the close alone (see below).
  } finally {
    // Stryker disable next-line CallExpression: equivalent: a handle left open only leaks a descriptor until garbage collection.
    await fh.close();
  }
  await step('fsync-dir', p);
}

/** Writes `data` to a new file `file` durably (the file itself, not its directory entry). */
export async function writeDurable(file: string, data: Uint8Array | string, step: Step = noStep, mode = 0o644): Promise<void> {
  const fh = await fs.open(file, 'wx', mode);
  try {
    await step('open', file);
    await fh.writeFile(data);
    await step('write', file);
    // Stryker disable next-line CallExpression: equivalent: fsync shows only after a power loss, which no test can cause; the step reported after it is checked.
    await fh.sync();
    await step('fsync', file);
    // Stryker disable next-line BlockStatement: equivalent: the finally block is the close alone (see below).
  } finally {
    // Stryker disable next-line CallExpression: equivalent: a handle left open only leaks a descriptor until garbage collection.
    await fh.close();
  }
}

/** The temporary name a write of `file` uses: hidden, in the same directory, recognisable by tempsOf(). */
function tempFor(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
}

/** Temporaries that an interrupted write of `file` left behind (full paths). */
export async function tempsOf(file: string): Promise<string[]> {
  const dir = path.dirname(file);
  const prefix = `.${path.basename(file)}.`;
  const names = await fs.readdir(dir).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return [] as string[];
    throw e;
  });
  return names.filter((n) => n.startsWith(prefix) && /^\.[^/]+\.[0-9a-f]{12}\.tmp$/.test(n)).map((n) => path.join(dir, n));
}

/** Deletes what tempsOf(file) finds; returns the names removed. */
export async function removeTemps(file: string): Promise<string[]> {
  const temps = await tempsOf(file);
  // Stryker disable next-line ObjectLiteral,BooleanLiteral: equivalent: tempsOf has just listed each file; force only matters if another process removed it meanwhile.
  for (const t of temps) await fs.rm(t, { force: true });
  return temps.map((t) => path.basename(t));
}

/** Atomically replaces (or creates) `file` with `data`. */
export async function replaceAtomically(file: string, data: Uint8Array | string, step: Step = noStep, mode = 0o644): Promise<void> {
  const tmp = tempFor(file);
  await writeDurable(tmp, data, step, mode);
  await fs.rename(tmp, file);
  await step('rename', file);
  await fsyncPath(path.dirname(file), step);
}

/**
 * Atomically creates `file` with `data`, never replacing an existing one (EEXIST, like open's 'wx'): the
 * complete temporary is hard-linked into place, so the name never refers to a partial file.
 */
export async function createAtomically(file: string, data: Uint8Array | string, step: Step = noStep, mode = 0o600): Promise<void> {
  const tmp = tempFor(file);
  await writeDurable(tmp, data, step, mode);
  try {
    await fs.link(tmp, file);
  } catch (e) {
    // Stryker disable next-line ObjectLiteral,BooleanLiteral: equivalent: the temporary was written just before; force only matters if another process removed it meanwhile.
    await fs.rm(tmp, { force: true });
    throw e;
  }
  await step('link', file);
  await fs.rm(tmp);
  await step('unlink', tmp);
  await fsyncPath(path.dirname(file), step);
}
