#!/usr/bin/env node
// The `fedtune` command: run a coordinator or a site, simulate a federation, inspect and export checkpoints.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import pino from 'pino';
import { Coordinator } from '../coordinator';
import { describeConfig, loadConfig } from '../config';
import { FsCheckpointStore } from '../checkpoints/fs-store';
import { formatVersionTable } from '../checkpoints/table';
import { addVerifyCommand } from './verify-command';
import { identityFromFlags, runSite, tlsFromFlags, type IdentityFlags, type TlsFlags } from '../../examples/site';
import { addEnrollCommand } from './enroll-command';
import { addRecoverCommand } from './recover-command';
import { main as simulateMain } from '../../examples/simulate';

const program = new Command('fedtune').description('Federated LoRA fine-tuning: coordinator, sites and checkpoints');
program.version(packageVersion(), '-V, --version', 'print the fedtune version');

/** The version in the package.json this command was built from. */
function packageVersion(): string {
  const j = JSON.parse(readFileSync(path.resolve(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version?: unknown };
  return typeof j.version === 'string' ? j.version : 'unknown';
}

program
  .command('coordinator')
  .description('Run the coordinator (config: --config FILE, FEDTUNE_* variables, or --section.key value flags)')
  .option('--config <file>', 'JSON configuration file')
  .allowUnknownOption(true)
  .allowExcessArguments(true)
  .action(async (opts: { config?: string }, cmd: Command) => {
    const config = loadConfig({ file: opts.config, env: process.env, args: cmd.args });
    const logger = pino({ level: config.log.level });
    const coordinator = new Coordinator({ config, logger });
    const stop = (signal: string): void => {
      logger.info({ signal }, 'stopping');
      void coordinator.stop().then(() => process.exit(0));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    await coordinator.start();
    const final = await coordinator.done;
    logger.info({ version: final.manifest.version }, 'run finished');
    await coordinator.stop();
  });

program
  .command('client')
  .description('Run a site of the embedded SpamAssassin task (shard i of n) against a coordinator')
  .requiredOption('--address <host:port>', 'coordinator address')
  .requiredOption('--name <name>', 'site name (stable across restarts)')
  .option('--shard <i>', 'which slice of the non-IID split this site holds', '0')
  .option('--of <n>', 'number of slices', '5')
  .option('--split-seed <n>', 'data split seed (all sites must agree)', '7')
  .option('--model-dir <dir>', 'base model directory', path.resolve(__dirname, '..', '..', '..', 'examples', 'base-model'))
  .option('--tls', 'connect with TLS, trusting the system CAs (implied by --tls-ca and --tls-cert)')
  .option('--tls-ca <file>', "PEM CA bundle that signed the coordinator's certificate")
  .option('--tls-cert <file>', 'PEM client certificate, for a coordinator that requires mutual TLS')
  .option('--tls-key <file>', 'PEM private key of --tls-cert')
  .option('--identity <file>', "the site's Ed25519 key file, created on first start (default .fedtune/<name>.identity.json)")
  .option('--join-token <token>', 'single-use enrolment token from the operator (first join only)')
  .option('--coordinator-key <keyId>', "refuse a coordinator whose key id differs (pinning)")
  .action(async (o: { address: string; name: string; shard: string; of: string; splitSeed: string; modelDir: string } & TlsFlags & IdentityFlags) => {
    await runSite({ address: o.address, name: o.name, shard: Number(o.shard), of: Number(o.of), splitSeed: Number(o.splitSeed), modelDir: o.modelDir, tls: tlsFromFlags(o), ...identityFromFlags(o) });
  });

program
  .command('simulate')
  .description('Run a whole federation on this machine (see examples/simulate.ts for options)')
  .allowUnknownOption(true)
  .allowExcessArguments(true)
  .action(async () => {
    process.argv.splice(2, 1); // simulate parses its own flags
    await simulateMain();
  });

const checkpoints = program.command('checkpoints').description('Inspect the versions of a run');
// Read-only: these never create, delete or move anything in the run (a typo is an error, not a new run).
checkpoints
  .command('list <runDir>')
  .description('List versions with their round, participants and metrics')
  .action(async (runDir: string) => {
    const store = new FsCheckpointStore(runDir, { readOnly: true });
    console.log(formatVersionTable(await store.list()));
  });
checkpoints
  .command('export <runDir> <version> <outDir>')
  .description('Copy a version as a PEFT adapter directory (adapter_model.safetensors + adapter_config.json)')
  .action(async (runDir: string, version: string, outDir: string) => {
    if (!/^\d+$/.test(version)) throw new Error(`version ${JSON.stringify(version)}: a version number (0, 1, …)`);
    const files = await new FsCheckpointStore(runDir, { readOnly: true }).export(Number(version), outDir);
    console.log(files.join('\n'));
  });

addVerifyCommand(program);
addRecoverCommand(program);
addEnrollCommand(program);

program
  .command('config')
  .description('Print the configuration reference')
  .action(() => {
    for (const k of describeConfig()) console.log(`${k.key}\t${JSON.stringify(k.default)}\t${k.env}\t${k.arg}\t${k.doc}`);
  });

program.parseAsync().catch((e: Error) => {
  console.error(`fedtune: ${e.message}`);
  process.exit(1);
});
