// `fedtune-site client --min-noise-multiplier` (client-sdk/site/noise-floor-flag.ts): a site's own DP terms from
// the command line. A value that is not a positive number is refused before anything loads, naming the flag; a real
// site process with a floor, against a real coordinator over gRPC whose rounds are plain (no SecAgg, so only the
// coordinator could add noise), says so when it starts and refuses the task before training, while a site without a
// floor trains it.
import { spawn, execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { noiseFloorFromFlag } from '../client-sdk/site/noise-floor-flag';
import { MAX_NOISE_FLOOR } from '../client-sdk/secagg-flow';
import { FederationClient } from '../client-sdk/client';
import { ConstantTrainer, testIdentity } from './harness';
import { SdkRig } from './reconnect-sdk-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SITE_CLI = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');

describe('fedtune-site client --min-noise-multiplier', function () {
  this.timeout(120_000);
  const rig = new SdkRig();
  before(() => rig.setUp('site-noise-floor'));
  after(() => rig.tearDown());

  it('takes a positive number up to the bound, and refuses anything else naming the flag', async () => {
    expect([noiseFloorFromFlag(undefined), noiseFloorFromFlag('0.5'), noiseFloorFromFlag(String(MAX_NOISE_FLOOR))]).to.deep.equal([undefined, 0.5, 1000]);
    for (const [v, got] of [
      ['0', '0'],
      ['-1', '-1'],
      ['NaN', 'NaN'],
      ['abc', 'NaN'],
      ['', 'NaN'],
      ['1001', '1001'],
      ['Infinity', 'Infinity'],
    ])
      expect(() => noiseFloorFromFlag(v), v).to.throw(
        Error,
        `--min-noise-multiplier ${JSON.stringify(v)}: minNoiseMultiplier must be a number in (0, 1000]; got ${got}`,
      );
    // The SDK holds its option to the same bound, before anything is sent.
    for (const z of [0, -1, NaN, 1001])
      expect(
        () =>
          new FederationClient({ address: '127.0.0.1:1', name: 'x', identity: testIdentity('x'), trainer: new ConstantTrainer(0.1), minNoiseMultiplier: z }),
      ).to.throw(RangeError, `minNoiseMultiplier must be a number in (0, ${MAX_NOISE_FLOOR}]; got ${z}`);
    const r = await promisify(execFile)(process.execPath, [SITE_CLI, 'client', '--address', '127.0.0.1:1', '--name', 'x', '--min-noise-multiplier', '-2'], {
      timeout: 20_000,
    }).then(
      () => ({ code: 0, out: '' }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
    expect(r).to.deep.equal({ code: 1, out: 'fedtune-site: --min-noise-multiplier "-2": minNoiseMultiplier must be a number in (0, 1000]; got -2\n' });
  });

  it('a site process with a floor refuses a plain round’s task before training; one without trains it', async () => {
    const h = await rig.coordinator('plain');
    const lines: Record<string, { msg: string; [k: string]: unknown }[]> = { 'site-a': [], 'site-b': [] };
    let refused = (): void => undefined;
    const sawRefusal = new Promise<void>((r) => (refused = r));
    const site = (name: 'site-a' | 'site-b', data: number, extra: string[]) => {
      const p = spawn(
        process.execPath,
        [
          SITE_CLI,
          'client',
          '--address',
          h.address,
          '--name',
          name,
          '--model',
          path.join(rig.tmp, 'model'),
          '--data',
          path.join(rig.tmp, `${data}.jsonl`),
        ].concat(['--val-fraction', '0.25', '--identity', path.join(rig.tmp, `${name}.id.json`), '--progress', 'off'], extra),
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let buf = '';
      p.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const l = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!l.startsWith('{')) continue;
          const line = JSON.parse(l) as { msg: string; [k: string]: unknown };
          lines[name].push(line);
          if (name === 'site-b' && line.msg === 'task failed') refused();
        }
      });
      return p;
    };
    const procs = [site('site-a', 0, []), site('site-b', 1, ['--min-noise-multiplier', '1'])];
    try {
      await sawRefusal;
      const b = lines['site-b'];
      expect(b.find((l) => l.msg === 'site starting')).to.include({ minNoiseMultiplier: 1 });
      expect(lines['site-a'].find((l) => l.msg === 'site starting')).to.include({ minNoiseMultiplier: null });
      expect(b.find((l) => l.msg === 'task failed')).to.include({
        round: 1,
        error: 'refused: this site adds DP noise itself (noise multiplier ≥ 1) and the task is not under secure aggregation',
      });
      // Refused before training: site-b never trained (no step, no finished task), site-a trains its task.
      expect(b.filter((l) => l.msg === 'task done')).to.deep.equal([]);
      await new Promise<void>((resolve) => {
        const done = (): void => (lines['site-a'].some((l) => l.msg === 'task done') ? resolve() : void setTimeout(done, 50));
        done();
      });
    } finally {
      for (const p of procs) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.once('exit', r)))));
      await h.coordinator.stop(200);
    }
  });
});
