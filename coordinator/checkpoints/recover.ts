// `fedtune recover <run>`: rebuilds the latest pointer from the signed chain after damage the coordinator
// refuses to start on (fs-store.ts pointerProblem: a deleted, edited or restored pointer). It checks the whole
// run as `fedtune verify` does (every signature against the run's key, every file hash, every parent link),
// then points `latest` at the newest version whose chain from v000000 is intact.
//
// It never guesses past a break: when any version fails, it refuses and names the newest intact version;
// `--to N` then makes N latest and moves the versions after it to orphans/<time>/ (never deleted), which
// is the operator's explicit decision. It holds the run lock (run-lock.ts), so no coordinator runs meanwhile.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { decodeBase64 } from './signature';
import { LATEST_FILE, NotARunError, versionDirName } from './fs-store';
import { fsyncPath, removeTemps, replaceAtomically } from './atomic-fs';
import { verifyRun, type Problem, type VerifyResult } from './verify';
import { VersionPrunedError } from './pruned-record';
import { RunLock } from '../run-lock';

export interface RecoverOptions {
  /** Make this version latest (its chain must verify); versions after it are moved to orphans/. */
  readonly version?: number;
  /** The key every version must be signed with; default: signPublicKey of <run>/keys/coordinator.json. */
  readonly publicKey?: Uint8Array;
  readonly keySource?: string;
  /** Report what would be done, change nothing. */
  readonly dryRun?: boolean;
}

export interface RecoverResult {
  /** What `latest` held before (trimmed), or null when it was missing. */
  readonly previous: string | null;
  /** The version `latest` names now (or would, on a dry run). */
  readonly latest: number;
  readonly changed: boolean;
  /** Version directories moved to orphans/ (relative to the run), with --to only. */
  readonly movedAside: readonly string[];
  readonly key: VerifyResult['key'];
  /** What was done, one sentence a line, for the operator. */
  readonly lines: readonly string[];
}

/** Recovery would have to guess (a broken chain) or cannot proceed; nothing was changed. */
export class RecoverRefusedError extends Error {
  override name = 'RecoverRefusedError';
}

/** The run's own key: the public half of keys/coordinator.json, when that file is there. */
export async function runKey(runDir: string): Promise<{ publicKey: Uint8Array; source: string } | undefined> {
  const file = path.join(runDir, 'keys', 'coordinator.json');
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  let pub: Uint8Array | null = null;
  try {
    pub = decodeBase64((JSON.parse(text) as Record<string, unknown>).signPublicKey, 32);
  } catch {
    // reported below
  }
  if (!pub) throw new RecoverRefusedError(`${file} holds no signPublicKey: pass the run's public key with --key`);
  return { publicKey: pub, source: 'keys/coordinator.json' };
}

export async function recoverRun(runDir: string, opts: RecoverOptions = {}): Promise<RecoverResult> {
  const st = await fs.stat(path.join(runDir, 'versions')).catch(() => null);
  if (!st?.isDirectory()) throw new NotARunError(`${runDir} is not a fedtune run directory (it has no versions/)`);
  const lines: string[] = [];
  const lock = await RunLock.acquire(runDir, 'fedtune recover', (m) => lines.push(m));
  try {
    return await recoverLocked(runDir, opts, lines);
  } finally {
    await lock.release();
  }
}

async function recoverLocked(runDir: string, opts: RecoverOptions, lines: string[]): Promise<RecoverResult> {
  const key = opts.publicKey ? { publicKey: opts.publicKey, source: opts.keySource ?? '--key' } : await runKey(runDir);
  const report = await verifyRun(runDir, { publicKey: key?.publicKey, keySource: key?.source });
  if (!key) lines.push('no --key and no keys/coordinator.json: trusting the key of the first validly signed version');
  const present = report.results.filter((r) => r.present).map((r) => r.version);
  if (present.length === 0) throw new RecoverRefusedError(`${runDir} holds no versions: there is nothing to point latest at`);
  const problems = report.problems.filter((p) => p.version !== null);
  const firstProblem = (upTo: number): Problem | undefined => problems.find((p) => p.version! <= upTo);
  // The newest version v such that v000000…v all verify (a gap is a problem of the missing version).
  const bad = problems.length ? Math.min(...problems.map((p) => p.version!)) : Infinity;
  const intact = Math.min(bad - 1, present[present.length - 1]);
  const highest = present[present.length - 1];
  const more = (n: number): string => (n > 1 ? ` (and ${n - 1} more problem${n > 2 ? 's' : ''}: run \`fedtune verify ${runDir}\`)` : '');

  let target: number;
  if (opts.version === undefined) {
    if (intact < highest) {
      const p = firstProblem(highest)!;
      const newest =
        intact >= 0
          ? `The newest version whose chain is intact is ${versionDirName(intact)}: \`fedtune recover ${runDir} --to ${intact}\` makes it latest and moves ${versionDirName(intact + 1)}…${versionDirName(highest)} to orphans/.`
          : 'No version has an intact chain from v000000.';
      throw new RecoverRefusedError(
        `the chain is broken at ${versionDirName(p.version!)}: ${p.message}${more(problems.length)}. Nothing was changed. ${newest}`,
      );
    }
    target = highest;
  } else {
    target = opts.version;
    if (!present.includes(target))
      throw new RecoverRefusedError(`--to ${target}: ${versionDirName(target)} does not exist (versions run up to ${versionDirName(highest)})`);
    const p = firstProblem(target);
    if (p)
      throw new RecoverRefusedError(
        `--to ${target}: its chain does not verify: ${p.message}${more(problems.filter((q) => q.version! <= target).length)}. Nothing was changed.`,
      );
  }
  // Latest is what the coordinator resumes from: its adapter and server state must both be there.
  const pruned = report.results.find((r) => r.version === target)?.pruned;
  if (pruned?.length)
    throw new RecoverRefusedError(
      `${opts.version === undefined ? 'the newest version' : `--to ${target}`}: ${new VersionPrunedError(target, pruned).message}. Nothing was changed.`,
    );
  const keyNote = report.key ? `signatures by key ${report.key.keyId} (from ${report.key.source})` : 'no signatures';
  lines.push(`verified ${versionDirName(0)}…${versionDirName(target)}: ${keyNote}, every file hash and parent link`);

  const latestFile = path.join(runDir, LATEST_FILE);
  const previous = await fs.readFile(latestFile, 'utf8').then(
    (t) => t.trim(),
    () => null,
  );
  const beyond = present.filter((v) => v > target);
  const orphans = path.join('orphans', new Date().toISOString().replace(/[:.]/g, '-'));
  const movedAside = beyond.map((v) => path.join(orphans, versionDirName(v)));
  const wanted = `${versionDirName(target)}\n`;
  const current = await fs.readFile(latestFile, 'utf8').catch(() => null);
  const changed = current !== wanted || beyond.length > 0;
  if (!opts.dryRun) {
    for (const t of await removeTemps(latestFile)) lines.push(`removed ${t}, left by an interrupted move of the latest pointer`);
    if (beyond.length) {
      await fs.mkdir(path.join(runDir, orphans), { recursive: true });
      for (const [i, v] of beyond.entries()) await fs.rename(path.join(runDir, 'versions', versionDirName(v)), path.join(runDir, movedAside[i]));
      await fsyncPath(path.join(runDir, 'versions'));
    }
    if (current !== wanted) await replaceAtomically(latestFile, wanted);
  }
  const verb = opts.dryRun ? 'would ' : '';
  for (const m of movedAside) lines.push(`${verb}${opts.dryRun ? 'move' : 'moved'} ${m.split(path.sep).pop()} to ${m}`);
  const was = previous === null ? 'was missing' : `named ${JSON.stringify(previous)}`;
  lines.push(
    changed
      ? `latest ${was}; it ${opts.dryRun ? 'would name' : 'now names'} ${versionDirName(target)}`
      : `latest already names ${versionDirName(target)}: nothing to do`,
  );
  return { previous, latest: target, changed, movedAside, key: report.key, lines };
}
