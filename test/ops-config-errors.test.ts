// Configuration never fails silently: unknown flags, stray arguments and unknown FEDTUNE_* variables are errors
// naming the closest valid key, and a bad value names its source (flag, variable, file) and the value as given.
// Exact messages, through loadConfig and through the real `fedtune coordinator` process (exit 1, nothing created).
import { spawn } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { ConfigError, loadConfig, type LoadConfigOptions } from '../coordinator/config';
import { tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.resolve(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');

function message(opts: LoadConfigOptions): string {
  try {
    loadConfig(opts);
  } catch (e) {
    expect(e).to.be.instanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(opts)}`);
}

function fedtune(args: string[], env: Record<string, string>, cwd: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd, env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('ops: configuration errors name the key, the source and the value', function () {
  this.timeout(30_000);
  let dir: string;
  before(async () => (dir = await tempDir('ops-config')));
  after(async () => fs.rm(dir, { recursive: true, force: true }));

  it('an unknown flag names the closest valid one', () => {
    expect(message({ args: ['--rounds.totl', '3'] })).to.equal('invalid configuration: unknown flag --rounds.totl; did you mean --rounds.total?');
    expect(message({ args: ['--rounds', '3'] })).to.equal('invalid configuration: unknown flag --rounds; did you mean --rounds.total?');
    expect(message({ args: ['--round.minClients=3'] })).to.equal('invalid configuration: unknown flag --round.minClients; did you mean --rounds.minClients?');
    expect(message({ args: ['--lora.rank', '4'] })).to.equal('invalid configuration: unknown flag --lora.rank; `fedtune config` lists every key');
    expect(message({ args: ['--rounds.total', '3', 'extra'] })).to.equal(
      'invalid configuration: unexpected argument "extra": settings are given as --section.key value',
    );
  });

  it('an unknown FEDTUNE_* variable names the closest valid one; the site and test variables pass', () => {
    expect(message({ env: { FEDTUNE_ROUNDS_TOTL: '3' } })).to.equal(
      'invalid configuration: unknown environment variable FEDTUNE_ROUNDS_TOTL; did you mean FEDTUNE_ROUNDS_TOTAL?',
    );
    expect(message({ env: { FEDTUNE_METRICS: '9464', FEDTUNE_NONSENSE: '1' } })).to.equal(
      'invalid configuration: unknown environment variable FEDTUNE_METRICS; did you mean FEDTUNE_METRICS_PORT?; unknown environment variable FEDTUNE_NONSENSE; `fedtune config` lists every key',
    );
    expect(
      loadConfig({ env: { FEDTUNE_BACKEND: 'wasm', FEDTUNE_ENGINE: 'auto', FEDTUNE_TEST_KILL_AT: 'x', FEDTUNE_CI_CONTAINER: '1', HOME: '/h' } }).rounds.total,
    ).to.equal(600);
  });

  it('a bad value names its source and the value as given', async () => {
    expect(message({ env: { FEDTUNE_ROUNDS_TOTAL: 'abc' } })).to.equal(
      'invalid configuration: environment variable FEDTUNE_ROUNDS_TOTAL="abc": rounds.total: must be an integer ≥ 1',
    );
    expect(message({ args: ['--rounds.total', '0'] })).to.equal('invalid configuration: flag --rounds.total "0": rounds.total: must be an integer ≥ 1');
    expect(message({ args: ['--server.port=70000'] })).to.equal(
      'invalid configuration: flag --server.port="70000": server.port: must be a port number 0..65535 (0: any free port): value was 70000',
    );
    const file = path.join(dir, 'bad.json');
    await fs.writeFile(file, JSON.stringify({ rounds: { minClients: 0 } }));
    expect(message({ file })).to.equal(`invalid configuration: file ${file}: rounds.minClients: must be an integer ≥ 1`);
    // The flag wins over the variable, and is the one named.
    expect(message({ env: { FEDTUNE_LORA_R: '4' }, args: ['--lora.r', 'x'] })).to.equal(
      'invalid configuration: flag --lora.r "x": lora.r: must be an integer ≥ 1',
    );
  });

  it('`fedtune coordinator` exits 1 with the message and creates nothing', async () => {
    const cwd = path.join(dir, 'cwd');
    await fs.mkdir(cwd);
    const typo = await fedtune(['coordinator', '--rounds.totl', '3'], {}, cwd);
    expect(typo.code).to.equal(1);
    expect(typo.stderr).to.equal('fedtune: invalid configuration: unknown flag --rounds.totl; did you mean --rounds.total?\n');
    const env = await fedtune(['coordinator'], { FEDTUNE_ROUNDS_TOTAL: 'abc' }, cwd);
    expect(env.code).to.equal(1);
    expect(env.stderr).to.equal('fedtune: invalid configuration: environment variable FEDTUNE_ROUNDS_TOTAL="abc": rounds.total: must be an integer ≥ 1\n');
    expect(await fs.readdir(cwd)).to.deep.equal([]);
  });
});
