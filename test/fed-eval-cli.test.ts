// Federated evaluation with the shipped commands: a `fedtune coordinator` process (--evaluation.enabled) and two
// `fedtune-site client --model --data` processes on their own JSON Lines files (a tiny Llama directory); the
// version's manifest carries the sites' validation figures, and `fedtune checkpoints list` shows them.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort, tempDir } from './harness';
import { makeTinyLlamaDir } from './tiny-llama-dir';
import type { Manifest } from '../coordinator/checkpoints/types';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const FEDTUNE = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const SITE_CLI = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');

/** 20 rows; --val-fraction 0.25 holds out 5 for validation. */
function dataFile(file: string, site: number): void {
  const rows: string[] = [];
  for (let i = 0; i < 20; i++) rows.push(JSON.stringify({ prompt: `Site ${site} question ${i}: what is ${i} plus ${i}?`, completion: ` ${2 * i}` }));
  fs.writeFileSync(file, rows.join('\n') + '\n');
}

const run = (cli: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  promisify(execFile)(process.execPath, [cli, ...args], { timeout: 120_000 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }),
  );

describe('federated evaluation with `fedtune coordinator` and `fedtune-site client --model --data`', function () {
  this.timeout(150_000);
  let tmp: string;
  before(async () => {
    tmp = await tempDir('fed-eval-cli');
    makeTinyLlamaDir(path.join(tmp, 'model'));
    dataFile(path.join(tmp, 'a.jsonl'), 0);
    dataFile(path.join(tmp, 'b.jsonl'), 1);
  });
  after(() => fs.promises.rm(tmp, { recursive: true, force: true }));

  it("the version commits with both sites' validation figures; checkpoints list shows them and the best version", async () => {
    const port = await freePort();
    const runDir = path.join(tmp, 'run');
    const coord = spawn(
      process.execPath,
      [
        FEDTUNE,
        'coordinator',
        ...['--server.port', String(port), '--run.dir', runDir, '--auth.mode', 'tofu', '--log.level', 'warn', '--log.format', 'json'],
        ...[
          '--model.dir',
          path.join(tmp, 'model'),
          '--model.name',
          'tiny-llama',
          '--lora.r',
          '4',
          '--lora.alpha',
          '8',
          '--lora.targetModules',
          'q_proj,v_proj',
        ],
        ...['--rounds.total', '1', '--training.localSteps', '2', '--training.batchSize', '2', '--training.maxSeqLen', '64', '--evaluation.enabled', 'true'],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let log = '';
    coord.stdout.on('data', (b: Buffer) => (log += b.toString()));
    coord.stderr.on('data', (b: Buffer) => (log += b.toString()));
    const exited = new Promise<number | null>((r) => coord.once('exit', (code) => r(code)));
    try {
      const site = (name: string): Promise<{ code: number; stdout: string; stderr: string }> =>
        run(SITE_CLI, [
          'client',
          ...['--address', `127.0.0.1:${port}`, '--name', name, '--model', path.join(tmp, 'model'), '--data', path.join(tmp, `${name.slice(-1)}.jsonl`)],
          ...['--val-fraction', '0.25', '--identity', path.join(tmp, `${name}.id.json`)],
        ]);
      // The sites retry until the coordinator listens.
      const [a, b] = await Promise.all([site('site-a'), site('site-b')]);
      expect(a.code, a.stderr).to.equal(0);
      expect(b.code, b.stderr).to.equal(0);
      expect(await exited, log).to.equal(0);
    } finally {
      if (coord.exitCode === null) coord.kill('SIGKILL');
    }
    const m = JSON.parse(fs.readFileSync(path.join(runDir, 'versions', 'v000001', 'manifest.json'), 'utf8')) as Manifest;
    expect(m.evaluation).to.include({ examples: 10, sites: 2, selected: 2 });
    expect(m.evaluation!.loss).to.be.a('number').and.above(0);
    expect(m.metrics['eval.loss']).to.equal(m.evaluation!.loss);
    expect(m.best).to.deep.equal({ metric: 'eval.loss', mode: 'min', version: 1, value: m.evaluation!.loss, sinceBest: 0 });
    expect(fs.readFileSync(path.join(runDir, 'release'), 'utf8')).to.equal('v000001\n');
    const list = await run(FEDTUNE, ['checkpoints', 'list', runDir]);
    expect(list.code, list.stderr).to.equal(0);
    const [header, , row] = list.stdout.split('\n').map((l) => l.split(/\s+/));
    expect(header.slice(6, 8)).to.deep.equal(['eval_loss', 'eval_acc']);
    expect(row[6]).to.equal(m.evaluation!.loss.toFixed(4));
    expect(row[10]).to.equal('v1');
  });
});
