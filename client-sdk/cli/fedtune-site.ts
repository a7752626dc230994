#!/usr/bin/env node
// The `fedtune-site` command: what a data owner runs. A site of the embedded task, its identity key file, and
// a whole federation on one machine. It lives with the SDK, apart from the operator's `fedtune` command
// (coordinator/cli/fedtune.ts), so that starting a coordinator never loads tfjs. Each action loads what it
// needs when it runs: `fedtune-site identity` does not load the model code either.
import * as path from 'node:path';
import { Command } from 'commander';
import type { IdentityFlags, TlsFlags } from '../demo/site';

const program = new Command('fedtune-site').description('Federated LoRA fine-tuning, the site side: run a site, make its identity, simulate a federation');

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
  .option('--roster-key <base64>', "under SecAgg, accept only peers whose identity keys the operator certified with this key (fedtune roster); without it the coordinator is the key authority")
  .action(async (o: { address: string; name: string; shard: string; of: string; splitSeed: string; modelDir: string } & TlsFlags & IdentityFlags) => {
    const { identityFromFlags, runSite, tlsFromFlags } = require('../demo/site') as typeof import('../demo/site');
    await runSite({ address: o.address, name: o.name, shard: Number(o.shard), of: Number(o.of), splitSeed: Number(o.splitSeed), modelDir: o.modelDir, tls: tlsFromFlags(o), ...identityFromFlags(o) });
  });

program
  .command('simulate')
  .description('Run a whole federation on this machine (see client-sdk/demo/simulate.ts for options)')
  .allowUnknownOption(true)
  .allowExcessArguments(true)
  .action(async () => {
    process.argv.splice(2, 1); // simulate parses its own flags
    const { main } = require('../demo/simulate') as typeof import('../demo/simulate');
    await main();
  });

program
  .command('identity <file>')
  .description("Create (if missing) a site's identity key file and print its public key, for auth.allowList or `fedtune enroll add`")
  .action(async (file: string) => {
    const { loadOrCreateIdentity } = require('../identity') as typeof import('../identity');
    const id = await loadOrCreateIdentity(file);
    console.log(Buffer.from(id.publicKey).toString('base64'));
  });

program.parseAsync().catch((e: Error) => {
  console.error(`fedtune-site: ${e.message}`);
  process.exit(1);
});
