// `fedtune checkpoints prune <run> [--dry-run] [--apply] [--keep-server-state K] [--keep-adapters N]
// [--keep-every k] [--key-file F] [--verbose]`: version retention for a run by hand (checkpoints/prune-offline.ts).
// A dry run unless --apply: it prints what would be removed and the bytes it would free.
import type { Command } from 'commander';
import { formatPrune, pruneOffline } from '../checkpoints/prune-offline';
import type { RetentionPolicy } from '../checkpoints/retention';

const count =
  (flag: string) =>
  (v: string): number => {
    if (!/^\d+$/.test(v)) throw new Error(`${flag} ${v}: a whole number ≥ 0`);
    return Number(v);
  };

export function addPruneCommand(checkpoints: Command): void {
  checkpoints
    .command('prune <runDir>')
    .description(
      "Remove older versions' weights by the retention policy (checkpoints.*: the flags, else the run's own, else the defaults), keeping every manifest and signature; a dry run unless --apply",
    )
    .option('--dry-run', 'only say what would be removed and what it would free (the default)')
    .option('--apply', 'verify the run, then remove the files (refused while a coordinator holds the run)')
    .option('--keep-server-state <k>', 'checkpoints.keepServerState', count('--keep-server-state'))
    .option('--keep-adapters <n>', 'checkpoints.keepAdapters', count('--keep-adapters'))
    .option('--keep-every <k>', 'checkpoints.keepEvery', count('--keep-every'))
    .option('--key-file <file>', "the coordinator key file that signs the records (default: the run's keys/coordinator.json)")
    .option('--verbose', 'one line per version')
    .action(
      async (
        runDir: string,
        o: { dryRun?: boolean; apply?: boolean; keepServerState?: number; keepAdapters?: number; keepEvery?: number; keyFile?: string; verbose?: boolean },
      ) => {
        if (o.apply && o.dryRun) throw new Error('--apply and --dry-run: choose one');
        const policy: Partial<RetentionPolicy> = {
          ...(o.keepServerState === undefined ? {} : { keepServerState: o.keepServerState }),
          ...(o.keepAdapters === undefined ? {} : { keepAdapters: o.keepAdapters }),
          ...(o.keepEvery === undefined ? {} : { keepEvery: o.keepEvery }),
        };
        const r = await pruneOffline(runDir, { policy, apply: o.apply === true, keyFile: o.keyFile });
        for (const line of formatPrune(r, o.verbose === true)) console.log(line);
      },
    );
}
