#!/usr/bin/env node
// The `fedtune-site` command: what a data owner runs. A site of the embedded task, its identity key file, and
// a whole federation on one machine. It lives with the SDK, apart from the operator's `fedtune` command
// (coordinator/cli/fedtune.ts), so that starting a coordinator never loads tfjs. Each action loads what it
// needs when it runs: `fedtune-site identity` does not load the model code either.
import * as path from 'node:path';
import { Command } from 'commander';
import type { IdentityFlags, TlsFlags } from '../demo/site';
import { connectionFromFlags, type ConnectionFlags } from '../site/connection-flags';
import { noiseFloorFromFlag } from '../site/noise-floor-flag';
import { templateKwargsFromFlag } from '../site/template-kwargs-flag';
import { simulateCommand } from '../demo/simulate-cli';
import { parseProgressMode } from '../site/progress';

interface ClientFlags extends TlsFlags, IdentityFlags, ConnectionFlags {
  address: string;
  name: string;
  shard: string;
  of: string;
  splitSeed: string;
  modelDir: string;
  model?: string;
  data?: string;
  valFraction: string;
  chatTemplateKwargs?: string;
  'lora.r'?: string;
  'lora.targetModules'?: string;
  'lora.alpha'?: string;
  'lora.dropout'?: string;
  progress: string;
  minNoiseMultiplier?: string;
}

/** A numeric flag, refused by name when it is not a number. */
function num(flag: string, v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new Error(`${flag} must be a number, got '${v}'`);
  return n;
}

const program = new Command('fedtune-site').description('Federated LoRA fine-tuning, the site side: run a site, make its identity, simulate a federation');

program
  .command('client')
  .description('Run a site against a coordinator: on your own model and data (--model, --data), or a shard of the embedded SpamAssassin task')
  .requiredOption('--address <host:port>', 'coordinator address')
  .requiredOption('--name <name>', 'site name (stable across restarts)')
  .option('--model <dir>', 'your Hugging Face model directory (config.json, safetensors, tokenizer.json); with --data')
  .option('--data <file.jsonl>', 'your JSON Lines data: {"prompt","completion"}, {"messages":[{role,content}…]} or {"text"} rows; with --model')
  .option('--val-fraction <p>', 'share of --data rows held out for validation', '0.1')
  .option(
    '--chat-template-kwargs <json>',
    "options for the model's chat template, as a JSON object (e.g. '{\"enable_thinking\": false}'); a row's chat_template_kwargs override them",
  )
  .option('--lora.r <n>', "LoRA rank to train: the coordinator's adapter's (checked), or smaller (zero-padded to it); never larger")
  .option('--lora.target-modules <list>', "expected target modules, comma-separated; checked against the coordinator's adapter")
  .option('--lora.alpha <n>', "LoRA alpha (default: the coordinator's scaling alpha/r); not carried by the adapter tensors")
  .option('--lora.dropout <p>', "expected LoRA dropout, checked against the coordinator's task plan; used only when a plan states none (default 0.05)")
  .option('--shard <i>', 'which slice of the non-IID split this site holds', '0')
  .option('--of <n>', 'number of slices', '5')
  .option('--split-seed <n>', 'data split seed (all sites must agree)', '7')
  .option('--model-dir <dir>', 'base model directory of the embedded task', path.resolve(__dirname, '..', '..', '..', 'examples', 'base-model'))
  .option('--tls', 'connect with TLS, trusting the system CAs (implied by --tls-ca and --tls-cert)')
  .option('--tls-ca <file>', "PEM CA bundle that signed the coordinator's certificate")
  .option('--tls-cert <file>', 'PEM client certificate, for a coordinator that requires mutual TLS')
  .option('--tls-key <file>', 'PEM private key of --tls-cert')
  .option('--identity <file>', "the site's Ed25519 key file, created on first start (default .fedtune/<name>.identity.json)")
  .option('--join-token <token>', 'single-use enrolment token from the operator (first join only)')
  .option('--progress <mode>', 'local training progress: auto (a bar on a terminal, JSON lines otherwise), bar, json or off', 'auto')
  .option('--coordinator-key <keyId>', 'refuse a coordinator whose key id differs (pinning)')
  .option(
    '--roster-key <base64>',
    'under SecAgg, accept only peers whose identity keys the operator certified with this key (fedtune roster); without it the coordinator is the key authority',
  )
  .option('--keepalive-ms <ms>', 'ping the coordinator after this long without one, while a call is open (default 10000)')
  .option('--keepalive-timeout-ms <ms>', "drop the connection when a ping's answer is not read within this (default 25000)")
  .option('--report-deadline-ms <ms>', 'how long one metrics or evaluation report call may take before it is sent again (default 20000)')
  .option(
    '--min-noise-multiplier <z>',
    'take part only in secure-aggregation tasks whose sites add DP noise of at least this multiplier; refuse any other before training',
  )
  .action(async (o: ClientFlags) => {
    const { identityFromFlags, runSite, tlsFromFlags } = require('../demo/site') as typeof import('../demo/site');
    const progress = parseProgressMode(o.progress);
    const connection = connectionFromFlags(o);
    const minNoiseMultiplier = noiseFloorFromFlag(o.minNoiseMultiplier);
    const chatTemplateKwargs = templateKwargsFromFlag(o.chatTemplateKwargs);
    if (o.model !== undefined || o.data !== undefined) {
      if (o.model === undefined || o.data === undefined) throw new Error('--model and --data go together');
      const { runOwnDataSite } = require('../site/own-data') as typeof import('../site/own-data');
      await runOwnDataSite({
        address: o.address,
        name: o.name,
        modelDir: o.model,
        dataFile: o.data,
        validationFraction: num('--val-fraction', o.valFraction),
        splitSeed: num('--split-seed', o.splitSeed),
        ...(chatTemplateKwargs !== undefined ? { chatTemplateKwargs } : {}),
        lora: {
          ...(o['lora.r'] !== undefined ? { r: num('--lora.r', o['lora.r']) } : {}),
          ...(o['lora.targetModules'] !== undefined
            ? {
                targetModules: o['lora.targetModules']
                  .split(',')
                  .map((t) => t.trim())
                  .filter((t) => t),
              }
            : {}),
          ...(o['lora.alpha'] !== undefined ? { alpha: num('--lora.alpha', o['lora.alpha']) } : {}),
          ...(o['lora.dropout'] !== undefined ? { dropout: num('--lora.dropout', o['lora.dropout']) } : {}),
        },
        tls: tlsFromFlags(o),
        ...identityFromFlags(o),
        progress,
        connection,
        minNoiseMultiplier,
      });
      return;
    }
    if (chatTemplateKwargs !== undefined) throw new Error('--chat-template-kwargs goes with --model and --data (the embedded task has no chat template)');
    await runSite({
      address: o.address,
      name: o.name,
      shard: Number(o.shard),
      of: Number(o.of),
      splitSeed: Number(o.splitSeed),
      modelDir: o.modelDir,
      tls: tlsFromFlags(o),
      ...identityFromFlags(o),
      progress,
      connection,
      minNoiseMultiplier,
    });
  });

// The simulation's flags live with it (demo/simulate-cli.ts, which loads no model code), so `--help` lists them.
program.addCommand(
  simulateCommand(async (o) => {
    const { simulate } = require('../demo/simulate') as typeof import('../demo/simulate');
    await simulate(o);
  }),
);

program
  .command('identity <file>')
  .description("Create (if missing) a site's identity key file and print its public key, for auth.allowList or `fedtune enroll add`; --rotate replaces the key")
  .option('--rotate', 'move the current key aside (<file>.<keyId>.retired) and create a new one; prints the new public key for the operator')
  .action(async (file: string, o: { rotate?: boolean }) => {
    const { loadOrCreateIdentity, rotateIdentity } = require('../identity') as typeof import('../identity');
    if (!o.rotate) {
      console.log(Buffer.from((await loadOrCreateIdentity(file)).publicKey).toString('base64'));
      return;
    }
    const { old, fresh, retiredFile } = await rotateIdentity(file);
    // stdout: the new public key alone (as without --rotate, for a script); what happened: stderr.
    console.error(`fedtune-site: key ${old.keyId} retired to ${retiredFile}; new key ${fresh.keyId} in ${file}`);
    console.error(
      `fedtune-site: send the new public key to the operator (fedtune enroll rotate <name> <key>), or after a compromise ask for a new join token; delete ${retiredFile} once the new key is enrolled`,
    );
    console.log(Buffer.from(fresh.publicKey).toString('base64'));
  });

program.parseAsync().catch((e: Error) => {
  console.error(`fedtune-site: ${e.message}`);
  process.exit(1);
});
