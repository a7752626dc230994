// `fedtune-site simulate`: its --help lists its flags, and it reads the coordinator's configuration layers
// (--config FILE < FEDTUNE_* variables < its flags), with the same errors as `fedtune coordinator` for an
// unknown or invalid variable. One real 2-site, 1-round simulation shows the layers reach the manifest.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { describeConfig } from '../coordinator/config';
import { SIMULATE_KEYS, envNameOf, simulateCommand } from '../client-sdk/demo/simulate-cli';
import type { SimulationOptions } from '../client-sdk/demo/simulate';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SITE = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');
const site = (args: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> =>
  promisify(execFile)(process.execPath, [SITE, ...args], { timeout: 150_000, env: { PATH: process.env.PATH ?? '', ...env } }).then(
    (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
  );

describe('ops: fedtune-site simulate takes the coordinator configuration layers', function () {
  this.timeout(180_000);
  let root: string;
  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-ops-sim-'));
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  it('--help lists every flag and the keys the simulation fixes itself', async () => {
    const r = await site(['simulate', '--help']);
    expect(r.code).to.equal(0);
    for (const flag of [
      '--clients <n>',
      '--rounds <n>',
      '--run-dir <dir>',
      '--config <file>',
      '--local-steps <n>',
      '--eval-every <k>',
      '--site-eval-limit <n>',
      '--no-workers',
      '--secagg',
      '--model <family>',
      '--site-ranks <list>',
      '--partition <name>',
    ]) {
      expect(r.out, flag).to.contain(`  ${flag} `);
    }
    expect(r.out).to.contain('Precedence: coordinator defaults < --config FILE < FEDTUNE_* variables < the flags above');
    expect(r.out).to.contain('  server.port (0: any free port on loopback)\n');
    // Unset, the flags leave the coordinator's defaults (the measured recipe) in place, and the help says how to get the old demo.
    expect(r.out.replace(/\s+/g, ' ')).to.contain('--config docs/recipes/fedavg-classic.json5 --rounds 10 --local-steps 10 --batch-size 16');
  });

  it('each demo flag names a real key, and its variable is the one convict reads', () => {
    const keys = describeConfig();
    for (const [, key] of SIMULATE_KEYS) expect(envNameOf(key), key).to.equal(keys.find((k) => k.key === key)?.env);
  });

  it('a flag given wins; the only demo default left (the run directory) yields to the file or a variable', async () => {
    const file = path.join(root, 'layers.json');
    await fs.writeFile(file, JSON.stringify({ training: { batchSize: 3 } }));
    let seen: Record<string, string | number> | undefined;
    const capture = (o: SimulationOptions): Promise<void> => ((seen = { ...o.config?.keys }), Promise.resolve());
    await simulateCommand(capture, { FEDTUNE_ROUNDS_TOTAL: '2', FEDTUNE_TRAINING_LOCAL_STEPS: '4' }).parseAsync(
      ['--config', file, '--local-steps', '6', '--run-dir', 'runs/x'],
      { from: 'user' },
    );
    // rounds.total (variable) and training.batchSize (file) are left to the layers; --local-steps beats its variable;
    // the flags not given set nothing, so the coordinator's defaults (docs/recipes/fedsgd-steady.json5) apply.
    expect(seen).to.deep.equal({ 'run.dir': 'runs/x', 'training.localSteps': 6 });
    await simulateCommand(capture, { FEDTUNE_RUN_DIR: 'runs/y' }).parseAsync([], { from: 'user' });
    expect(seen).to.deep.equal({});
  });

  it('an unknown or invalid FEDTUNE_* variable stops it with the coordinator’s message, before any training', async () => {
    let r = await site(['simulate', '--clients', '2'], { FEDTUNE_ROUNDS_TOTL: '1' });
    expect(r.code).to.equal(1);
    expect(r.err.trim()).to.equal('fedtune-site: invalid configuration: unknown environment variable FEDTUNE_ROUNDS_TOTL; did you mean FEDTUNE_ROUNDS_TOTAL?');
    r = await site(['simulate', '--clients', '2'], { FEDTUNE_ROUNDS_TOTAL: 'abc' });
    expect(r.code).to.equal(1);
    expect(r.err.trim()).to.equal('fedtune-site: invalid configuration: environment variable FEDTUNE_ROUNDS_TOTAL="abc": rounds.total: must be an integer ≥ 1');
  });

  it('a real simulation (2 sites, real gRPC) runs with the file and variables: 1 round, their batch size and steps in the manifest', async () => {
    const run = path.join(root, 'run');
    const file = path.join(root, 'run.json');
    await fs.writeFile(file, JSON.stringify({ training: { batchSize: 2 }, run: { dir: run } }));
    const r = await site(['simulate', '--clients', '2', '--test-limit', '8', '--no-workers', '--config', file], {
      FEDTUNE_ROUNDS_TOTAL: '1',
      FEDTUNE_TRAINING_LOCAL_STEPS: '1',
    });
    expect(r.code, r.err).to.equal(0);
    const lines = r.out.split('\n');
    expect(lines[0]).to.match(
      new RegExp(
        `^fedtune simulation: 2 sites, 1 rounds, strategy fedadam \\(scored as its average, ema 0.99\\), 1 local sgd step\\(s\\) of 2, backend \\w+, base model base-model \\(gpt2, [0-9a-f]{12}\\), run dir ${run.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`,
      ),
    );
    expect(lines.some((l) => l.startsWith('round 1/1: 2 updates, train loss '))).to.equal(true);
    expect(await fs.readdir(path.join(run, 'versions'))).to.deep.equal(['v000000', 'v000001']);
    const m = JSON.parse(await fs.readFile(path.join(run, 'versions', 'v000001', 'manifest.json'), 'utf8')) as {
      config: { training: { batchSize: number; localSteps: number; learningRate: number }; rounds: { total: number; minClients: number } };
    };
    // The defaults' (the measured recipe's) rate, under the file's batch size and the variable's steps.
    expect(m.config.training).to.include({ batchSize: 2, localSteps: 1, learningRate: 1 });
    expect(m.config.rounds).to.include({ total: 1, minClients: 2 });
  });

  it("--site-ranks: each site trains its own rank; under 'flora' the manifest records both and the version stacks them", async () => {
    const run = path.join(root, 'ranks');
    const r = await site(['simulate', '--clients', '2', '--test-limit', '8', '--no-workers', '--site-ranks', '2,8', '--run-dir', run], {
      FEDTUNE_ROUNDS_TOTAL: '1',
      FEDTUNE_TRAINING_LOCAL_STEPS: '1',
      FEDTUNE_TRAINING_BATCH_SIZE: '2',
      FEDTUNE_LORA_AGGREGATION: 'flora',
      FEDTUNE_STRATEGY: 'fedavg',
      FEDTUNE_STRATEGY_EMA: '0',
    });
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.contain('  site-0: ');
    expect(r.out.split('\n').filter((l) => l.endsWith(', LoRA rank 2'))).to.have.length(1);
    const m = JSON.parse(await fs.readFile(path.join(run, 'versions', 'v000001', 'manifest.json'), 'utf8')) as {
      participants: { clientName: string; loraRank?: number }[];
    };
    expect(Object.fromEntries(m.participants.map((p) => [p.clientName, p.loraRank]))).to.deep.equal({ 'site-0': 2, 'site-1': 8 });
    // The version is the stack of the round's components: rank 2 + 8 in every module (flora-stack.ts).
    const header = await fs.readFile(path.join(run, 'versions', 'v000001', 'adapter_config.json'), 'utf8');
    expect((JSON.parse(header) as { r: number }).r).to.equal(10);
  });

  it('--site-ranks under zero-padding (the default aggregation): the rank-2 site trains and counts, its rank in the manifest', async () => {
    const run = path.join(root, 'ranks-padded');
    const r = await site(['simulate', '--clients', '2', '--test-limit', '8', '--site-ranks', '2,8', '--run-dir', run], {
      FEDTUNE_ROUNDS_TOTAL: '1',
      FEDTUNE_TRAINING_BATCH_SIZE: '2',
    });
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.contain('round 1/1: 2 updates, ');
    const m = JSON.parse(await fs.readFile(path.join(run, 'versions', 'v000001', 'manifest.json'), 'utf8')) as {
      participants: { clientName: string; loraRank?: number }[];
      config: { lora: { r: number } };
    };
    expect(Object.fromEntries(m.participants.map((p) => [p.clientName, p.loraRank]))).to.deep.equal({ 'site-0': 2, 'site-1': undefined });
    expect(m.config.lora.r).to.equal(8);
  });

  it('--partition groups: each site holds one whole corpus group, its worker splitting as the main thread does; another name is refused', async () => {
    const run = path.join(root, 'groups');
    const r = await site(['simulate', '--clients', '5', '--test-limit', '8', '--site-eval-limit', '2', '--partition', 'groups', '--run-dir', run], {
      FEDTUNE_ROUNDS_TOTAL: '1',
      FEDTUNE_TRAINING_LOCAL_STEPS: '1',
      FEDTUNE_TRAINING_BATCH_SIZE: '2',
    });
    expect(r.code, r.err).to.equal(0);
    // The corpus's five groups, sorted by name, one to a site (client-sdk/data/spam-assassin.ts): ham sites hold no
    // spam and spam sites nothing else.
    const sites = [...r.out.matchAll(/^ {2}site-(\d): (\d+) train \/ \d+ val e-mails, (\d+)% spam, groups (\S+)$/gm)].map((m) => ({
      name: `site-${m[1]}`,
      train: Number(m[2]),
      spam: m[3],
      group: m[4],
    }));
    expect(sites.map((s) => [s.name, s.spam, s.group])).to.deep.equal([
      ['site-0', '0', 'easy-ham-1'],
      ['site-1', '0', 'easy-ham-2'],
      ['site-2', '0', 'hard-ham-1'],
      ['site-3', '100', 'spam-1'],
      ['site-4', '100', 'spam-2'],
    ]);
    // Each worker split the corpus itself: the examples it reported are the main thread's count for its group.
    const m = JSON.parse(await fs.readFile(path.join(run, 'versions', 'v000001', 'manifest.json'), 'utf8')) as {
      participants: { clientName: string; numExamples: number }[];
    };
    const reported = Object.fromEntries(m.participants.map((p) => [p.clientName, p.numExamples]));
    for (const s of sites) expect(reported[s.name], s.name).to.equal(s.train);
    expect(m.participants.map((p) => p.clientName).sort()).to.deep.equal(sites.map((s) => s.name));
    const bad = await site(['simulate', '--clients', '2', '--partition', 'iid'], {});
    expect(bad.code).to.equal(1);
    expect(bad.err.trim()).to.equal("fedtune-site: --partition is 'dirichlet' or 'groups', not 'iid'");
  });

  it('--site-ranks that do not fit are refused before any training, naming why', async () => {
    let r = await site(['simulate', '--clients', '2', '--site-ranks', '2'], {});
    expect(r.code).to.equal(1);
    expect(r.err.trim()).to.equal('fedtune-site: --site-ranks names 1 rank(s) for 2 sites: one per site');
    r = await site(['simulate', '--clients', '2', '--site-ranks', '2,16'], {});
    expect(r.code).to.equal(1);
    expect(r.err.trim()).to.equal("fedtune-site: --site-ranks: site-1's rank 16 is not from 1 to lora.r 8");
    r = await site(['simulate', '--clients', '2', '--site-ranks', '2,x'], {});
    expect(r.code).to.equal(1);
    expect(r.err.trim()).to.equal("fedtune-site: --site-ranks wants positive integers, comma-separated: '2,x'");
  });
});
