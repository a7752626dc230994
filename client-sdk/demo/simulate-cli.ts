// The `simulate` command (`fedtune-site simulate`, `npm run demo`): its flags, and how they layer with the
// coordinator's configuration. The simulation runs a real coordinator in-process, so it reads the same layers
// as `fedtune coordinator`: defaults < --config FILE < FEDTUNE_* variables < flags. A demo flag that maps to a
// coordinator key (--rounds is rounds.total…) wins when given on the command line; when it is not, its demo
// default applies only where neither the file nor a variable sets that key. What a one-machine simulation must
// fix itself (SIMULATION_FIXED) is not taken from the layers, and the help says so.
// This file loads no model code: `fedtune-site simulate --help` stays fast.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import JSON5 from 'json5';
import type { SimulationOptions } from './simulate';

/** Demo flags that set a coordinator key: [commander's option name, key, how to read the flag's text]. */
export const SIMULATE_KEYS: readonly (readonly [string, string, (v: string) => string | number])[] = [
  ['rounds', 'rounds.total', Number],
  ['runDir', 'run.dir', String],
  ['seed', 'run.seed', Number],
  ['localSteps', 'training.localSteps', Number],
  ['batchSize', 'training.batchSize', Number],
  ['lr', 'training.learningRate', Number],
  ['strategy', 'strategy.name', String],
  ['serverLr', 'strategy.serverLearningRate', Number],
  ['proximalMu', 'training.proximalMu', Number],
  ['schedule', 'training.schedule', String],
  ['warmupRounds', 'training.warmupRounds', Number],
  ['deadlineMs', 'rounds.deadlineMs', Number],
];

/** Keys the simulation sets itself, whatever the layers say (the help lists them). */
export const SIMULATION_FIXED = [
  'server.port (0: any free port on loopback)',
  'auth.* (each site gets a fresh identity on the allow-list)',
  'rounds.minClients, rounds.clientsPerRound (--clients), rounds.minUpdates (half the sites; all under --secagg)',
  'secagg.enabled (--secagg)',
  'model.*, lora.targetModules (--model)',
  'log.level (warn; the simulation prints its own lines)',
];

/** Whether a configuration file (JSON or JSON5) sets the dotted `key`. */
function fileSets(file: string | undefined, key: string): boolean {
  if (file === undefined) return false;
  let node: unknown;
  try {
    node = JSON5.parse(readFileSync(file, 'utf8'));
  } catch {
    return false; // loadConfig reports an unreadable or invalid file, naming it
  }
  for (const part of key.split('.')) {
    if (node === null || typeof node !== 'object' || !(part in node)) return false;
    node = (node as Record<string, unknown>)[part];
  }
  return true;
}

/** Where the schema names a key's variable otherwise than envNameOf's rule (the test checks every entry). */
const ENV_EXCEPTIONS: Readonly<Record<string, string>> = { 'strategy.name': 'FEDTUNE_STRATEGY' };

/** The environment variable the coordinator's schema gives `key` (rounds.deadlineMs → FEDTUNE_ROUNDS_DEADLINE_MS). */
export function envNameOf(key: string): string {
  return (
    ENV_EXCEPTIONS[key] ??
    'FEDTUNE_' +
      key
        .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
        .replace(/\./g, '_')
        .toUpperCase()
  );
}

/**
 * The coordinator keys the demo flags set: a flag given on the command line always; a flag's demo default only
 * where neither `file` nor `env` sets the key.
 */
export function demoKeys(p: Command, file: string | undefined, env: NodeJS.ProcessEnv): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  const opts = p.opts<Record<string, string | undefined>>();
  for (const [name, key, read] of SIMULATE_KEYS) {
    const value = opts[name];
    if (value === undefined) continue;
    const fromCli = p.getOptionValueSource(name) === 'cli';
    if (fromCli || !(env[envNameOf(key)] !== undefined || fileSets(file, key))) out[key] = read(value);
  }
  return out;
}

/** The command; `run` receives the options (main() runs the simulation, tests may capture them). */
export function simulateCommand(run: (o: SimulationOptions) => Promise<unknown>, env: NodeJS.ProcessEnv = process.env): Command {
  const p = new Command('simulate')
    .description(
      'Run a whole federation on this machine: a coordinator and N sites over gRPC on loopback, on the embedded SpamAssassin task. ' +
        'Reads the coordinator configuration layers (--config FILE, FEDTUNE_* variables) under the flags below. ' +
        "Unset, it runs the coordinator's defaults, the best-measured recipe (docs/recipes/fedsgd-steady.json5: 600 rounds of " +
        "one SGD step of 32 e-mails a site under FedAdam, the server's average scored); the demo before 2026-11-30: " +
        '--config docs/recipes/fedavg-classic.json5 --rounds 10 --local-steps 10 --batch-size 16.',
    )
    .option('--clients <n>', 'sites', '5')
    .option('--rounds <n>', "rounds (rounds.total; default the coordinator's, 600)")
    .option('--run-dir <dir>', 'run directory (run.dir; an existing one resumes)', `runs/demo-${new Date().toISOString().replace(/[:.]/g, '-')}`)
    .option('--config <file>', 'a coordinator configuration file (JSON), as `fedtune coordinator --config`')
    .option('--seed <n>', "master seed (run.seed; default the coordinator's, 42)")
    .option('--split-seed <n>', 'data split seed', '7')
    .option('--local-steps <n>', "local steps per round (training.localSteps; default the coordinator's, 1)")
    .option('--batch-size <n>', "examples per step (training.batchSize; default the coordinator's, 32)")
    .option('--lr <x>', "client learning rate (training.learningRate; default the coordinator's, 1 with its SGD)")
    .option('--alpha <x>', 'Dirichlet concentration of the non-IID split', '0.5')
    .option(
      '--partition <name>',
      "how the e-mails are split among the sites: 'dirichlet' (at --alpha) or 'groups' (the corpus's five groups, whole, one to a site)",
      'dirichlet',
    )
    .option('--test-limit <n>', 'held-out e-mails evaluated in each scored round', '400')
    .option(
      '--eval-every <k>',
      'score the held-out set every k-th round and the last (default: every round up to 60 rounds, else every ⌈rounds/60⌉-th: 600 rounds, every 10th, as the benchmark); with k > 1 the sites also skip validating their own adapter after each round, as the benchmark did',
    )
    .option('--site-eval-limit <n>', "validation e-mails each site scores after each round's training (the manifest's clients.eval_*; 0: none)", '50')
    .option('--no-workers', 'run every site on the main thread instead of one worker thread each')
    .option('--secagg', 'secure aggregation: the coordinator learns only the sum of the updates (needs ≥ 5 sites)')
    .option('--strategy <name>', "server strategy (strategy.name): fedavg, fedavgm, fedadam, fedyogi, fedadagrad (default the coordinator's, fedadam)")
    .option('--server-lr <x>', "server learning rate η (strategy.serverLearningRate; default the coordinator's, 0.003 for fedadam; 0: the strategy default)")
    .option('--proximal-mu <x>', "FedProx μ (training.proximalMu; default the coordinator's, 0: off)")
    .option('--schedule <name>', "client learning-rate schedule (training.schedule): 'constant' or 'cosine' (default the coordinator's, constant)")
    .option('--warmup-rounds <n>', "rounds of linear learning-rate warm-up (training.warmupRounds; default the coordinator's, 0)")
    .option('--deadline-ms <n>', 'time a site has per round (rounds.deadlineMs; default 120000; raise it on a slow or shared box)')
    .option('--model <family>', 'the pretrained demo base: gpt2 (examples/base-model) or llama (examples/llama-base)', 'gpt2')
    .option(
      '--site-ranks <list>',
      "each site's own LoRA rank, comma-separated, one per site (≤ lora.r; alpha scaled with it, as `fedtune-site --lora.r`): zero-padded to lora.r, or its fresh rank under lora.aggregation 'flora' (default: every site at lora.r)",
    )
    .addHelpText(
      'after',
      '\nPrecedence: coordinator defaults < --config FILE < FEDTUNE_* variables < the flags above (a flag not given\n' +
        'keeps its demo default only where neither the file nor a variable sets its key).\n' +
        'Set by the simulation itself, whatever the file or variables say:\n' +
        SIMULATION_FIXED.map((l) => `  ${l}`).join('\n'),
    )
    .action(async () => {
      const a = p.opts<Record<string, string | boolean | undefined>>();
      const file = a.config as string | undefined;
      const keys = demoKeys(p, file, env);
      const { parseDemoModel } = require('../demo/spam-task') as typeof import('../demo/spam-task');
      await run({
        clients: Number(a.clients),
        splitSeed: Number(a.splitSeed),
        alpha: Number(a.alpha),
        partition: parsePartition(String(a.partition)),
        testLimit: Number(a.testLimit),
        evalEvery: a.evalEvery === undefined ? undefined : Number(a.evalEvery),
        clientEvalLimit: Number(a.siteEvalLimit),
        workers: a.workers === true,
        secagg: a.secagg === true,
        model: parseDemoModel(String(a.model)),
        ...(a.siteRanks !== undefined ? { siteRanks: parseSiteRanks(String(a.siteRanks)) } : {}),
        config: { file, env, keys },
        print: (l) => console.log(l),
      });
    });
  return p;
}

/** --partition: the two ways client-sdk/data/spam-assassin.ts splits the corpus. */
export function parsePartition(name: string): 'groups' | 'dirichlet' {
  if (name !== 'groups' && name !== 'dirichlet') throw new Error(`--partition is 'dirichlet' or 'groups', not '${name}'`);
  return name;
}

/** --site-ranks: positive integers, comma-separated (checked against --clients and lora.r by the simulation). */
export function parseSiteRanks(list: string): number[] {
  const ranks = list.split(',').map((t) => Number(t.trim()));
  if (ranks.length === 0 || !ranks.every((r) => Number.isInteger(r) && r >= 1))
    throw new Error(`--site-ranks wants positive integers, comma-separated: '${list}'`);
  return ranks;
}

/** `npm run demo` and `fedtune-site simulate`: parses process.argv and runs the simulation. */
export async function main(argv: readonly string[] = process.argv): Promise<void> {
  const { simulate } = require('../demo/simulate') as typeof import('../demo/simulate');
  await simulateCommand(simulate).parseAsync([...argv]);
}
