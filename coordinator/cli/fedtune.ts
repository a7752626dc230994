#!/usr/bin/env node
// The `fedtune` command, the operator's: run a coordinator, admit sites, inspect, verify and export checkpoints, plan
// a private run's ε.
// The site side (`client`, `simulate`, `identity`) is `fedtune-site` (client-sdk/cli/fedtune-site.ts), so that
// nothing here loads tfjs or the SDK.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { Command } from 'commander';
import { Coordinator } from '../coordinator';
import { describeConfig, loadConfig } from '../config';
import { FsCheckpointStore } from '../checkpoints/fs-store';
import { formatVersionTable, prunedByVersion } from '../checkpoints/table';
import { addVerifyCommand } from './verify-command';
import { addEnrollCommand } from './enroll-command';
import { addRosterCommand } from './roster-command';
import { addExportCommands } from './export-command';
import { configExample } from '../ops/config-example';
import { addRecoverCommand } from './recover-command';
import { addReleaseCommand } from './release-command';
import { addPruneCommand } from './prune-command';
import { addPrivacyCommand } from './privacy-command';
import { cliLogger } from '../ops/cli-logger';
import { redactedConfig } from '../ops/redact';

const program = new Command('fedtune').description(
  'Federated LoRA fine-tuning, the operator side: coordinator, enrolment and checkpoints (sites: fedtune-site)',
);
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
    const logger = cliLogger(config.log.level, config.log.format);
    logger.info({ config: redactedConfig(config) }, 'effective configuration');
    const coordinator = new Coordinator({ config, logger });
    // The first signal drains (the open attempt is abandoned cleanly: tasks cancelled, nothing half-written);
    // a second one exits at once.
    let stopping: string | undefined;
    const stop = (signal: string): void => {
      if (stopping) process.exit(130);
      stopping = signal;
      logger.info({ signal }, 'stopping: draining the open round (a second signal exits at once)');
      void coordinator.stop();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    await coordinator.start();
    const final = await coordinator.done;
    if (!stopping) await coordinator.finishNotice(config.server.finishNoticeMs);
    await coordinator.stop();
    const version = final?.manifest.version ?? 0;
    const total = config.rounds.total;
    if (stopping) logger.info({ version, roundsTotal: total, signal: stopping }, `stopped at version ${version} of ${total}`);
    else logger.info({ version, roundsTotal: total }, `run finished: version ${version} of ${total}`);
  });

const checkpoints = program.command('checkpoints').description('Inspect the versions of a run');
// Read-only: these never create, delete or move anything in the run (a typo is an error, not a new run).
checkpoints
  .command('list <runDir>')
  .description('List versions with their round, participants, metrics and what retention pruned')
  .action(async (runDir: string) => {
    const store = new FsCheckpointStore(runDir, { readOnly: true });
    const manifests = await store.list();
    console.log(formatVersionTable(manifests, await prunedByVersion(runDir, manifests)));
  });
addExportCommands(checkpoints);
addVerifyCommand(program);
addRecoverCommand(program);
addReleaseCommand(checkpoints);
addPruneCommand(checkpoints);
addEnrollCommand(program);
addRosterCommand(program);
addPrivacyCommand(program);

// The site commands moved to `fedtune-site`; say so rather than "unknown command".
for (const name of ['client', 'simulate', 'identity']) {
  program
    .command(name, { hidden: true })
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .action(() => {
      throw new Error(`'${name}' is a site command: run \`fedtune-site ${name}\` (it ships with the SDK)`);
    });
}

program
  .command('config')
  .description('Print the configuration reference (--example: a commented JSON5 file of every key at its default)')
  .option('--example', 'print docs/fedtune.example.json5: every key, its default, variable, flag and why to change it')
  .action((o: { example?: boolean }) => {
    if (o.example) {
      process.stdout.write(configExample());
      return;
    }
    for (const k of describeConfig()) console.log(`${k.key}\t${JSON.stringify(k.default)}\t${k.env}\t${k.arg}\t${k.doc}`);
  });

program.parseAsync().catch((e: Error) => {
  console.error(`fedtune: ${e.message}`);
  process.exit(1);
});
