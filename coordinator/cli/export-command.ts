// `fedtune checkpoints export <run> <version> <outDir>` and `fedtune checkpoints verify-export <dir>`. An export
// is every file the version's manifest lists, with the manifest and its signature, so that whoever receives the
// directory can check it without the run: the export command checks its own output before it says done.
import type { Command } from 'commander';
import { parseKeyOption } from './verify-command';
import { FsCheckpointStore, versionDirName } from '../checkpoints/fs-store';
import { resolveVersion } from '../checkpoints/release';
import { EMA_ADAPTER_FILE, EMA_DIR } from '../checkpoints/ema-files';
import { VerifyUsageError, verifyVersionDir, type VersionDirResult } from '../checkpoints/verify';

function summary(r: VersionDirResult): string {
  const v = r.version === null ? 'the version' : versionDirName(r.version);
  if (!r.ok) return `FAILED: ${r.problems.length} problem${r.problems.length === 1 ? '' : 's'} in ${v}`;
  const signed = r.keyId === null ? 'unsigned' : `signature by key ${r.keyId} verified`;
  return `OK: ${v}: manifest, ${r.files} listed files and their sha256, ${signed}`;
}

export function addExportCommands(checkpoints: Command): void {
  checkpoints
    .command('export <runDir> <version> <outDir>')
    .description(
      'Copy a version (a number, latest, best or release) as a PEFT adapter directory (adapter_model.safetensors + adapter_config.json), with every other file its manifest lists (under strategy.ema the averaged adapter the version was scored and released as, in ema/), the manifest and its signature; then verify the copy',
    )
    .action(async (runDir: string, version: string, outDir: string) => {
      const store = new FsCheckpointStore(runDir, { readOnly: true });
      const files = await store.export(await resolveVersion(store, version), outDir);
      console.log(files.join('\n'));
      // Under strategy.ema the adapter to use is the average, in its own PEFT directory (checkpoints/ema-files.ts).
      if (files.some((f) => f.endsWith(EMA_ADAPTER_FILE)))
        console.log(
          `averaged adapter (strategy.ema), the one this version was scored and is released as: PeftModel.from_pretrained(model, "${outDir}", subfolder="${EMA_DIR}")`,
        );
      // A version of a store without a signer has no manifest.sig: the copy is checked as what it is, unsigned.
      const checked = await verifyVersionDir(outDir);
      const problems = checked.problems.filter((p) => p.kind !== 'signature-missing');
      const r = { ...checked, problems, ok: problems.length === 0 };
      console.log(summary(r));
      for (const p of r.problems) console.error(p.message);
      if (!r.ok) process.exitCode = 1;
    });
  checkpoints
    .command('verify-export <dir>')
    .description('Check an exported version on its own: manifest, signature, every listed file and its hash, nothing unlisted (exit 0 ok, 1 problems, 2 usage)')
    .option('--key <pub>', "Ed25519 public key it must be signed with: base64, or a file such as the run's keys/coordinator.json")
    .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
    .action(async (dir: string, o: { key?: string }) => {
      try {
        const key = o.key === undefined ? undefined : await parseKeyOption(o.key);
        const r = await verifyVersionDir(dir, { publicKey: key?.publicKey, keySource: key?.source });
        for (const p of r.problems) console.log(p.message);
        console.log(summary(r));
        process.exitCode = r.ok ? 0 : 1;
      } catch (e) {
        if (!(e instanceof VerifyUsageError)) throw e;
        console.error(`fedtune checkpoints verify-export: ${e.message}`);
        process.exitCode = 2;
      }
    });
}
