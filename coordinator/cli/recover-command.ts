// `fedtune recover <runDir> [--to N] [--key K] [--dry-run]`: rebuild the latest pointer from the signed
// chain (checkpoints/recover.ts). Exit 0 when latest names a verified version, 1 when recovery was refused
// (a broken chain, a locked run), 2 when it was called wrongly (not a run, a bad --key or --to).
// (--to, not --version: `fedtune --version` prints the program's version.)
import type { Command } from 'commander';
import { NotARunError } from '../checkpoints/fs-store';
import { RecoverRefusedError, recoverRun } from '../checkpoints/recover';
import { VerifyUsageError } from '../checkpoints/verify';
import { RunLockedError } from '../run-lock';
import { parseKeyOption } from './verify-command';

export function addRecoverCommand(program: Command): void {
  program
    .command('recover <runDir>')
    .description(
      'Rebuild the latest pointer from the signed chain: verify every version, point latest at the newest whose chain is intact (exit 0 done, 1 refused, 2 usage)',
    )
    .option('--to <n>', 'make version n latest (its chain must verify) and move the versions after it to orphans/')
    .option('--key <pub>', "Ed25519 public key every version must be signed with: base64, or a file (default: the run's keys/coordinator.json)")
    .option('--dry-run', 'say what would be done; change nothing')
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .action(async (runDir: string, o: { to?: string; key?: string; dryRun?: boolean }) => {
      try {
        if (o.to !== undefined && !/^\d+$/.test(o.to)) throw new VerifyUsageError(`--to ${o.to}: a version number (0, 1, …)`);
        const key = o.key === undefined ? undefined : await parseKeyOption(o.key);
        const r = await recoverRun(runDir, {
          version: o.to === undefined ? undefined : Number(o.to),
          publicKey: key?.publicKey,
          keySource: key?.source,
          dryRun: o.dryRun,
        });
        for (const line of r.lines) console.log(line);
      } catch (e) {
        if (e instanceof VerifyUsageError || e instanceof NotARunError) {
          console.error(`fedtune recover: ${e.message}`);
          process.exitCode = 2;
        } else if (e instanceof RecoverRefusedError || e instanceof RunLockedError) {
          console.error(`fedtune recover: ${e.message}`);
          process.exitCode = 1;
        } else throw e;
      }
    });
}
