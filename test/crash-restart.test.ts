// kill -9 the coordinator process after a round is committed, start it again on the same run directory:
// it resumes from the latest version, the sites reconnect on their own, and the run finishes with an
// unbroken lineage. The coordinator runs as a real child process (examples/coordinator.js).
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { FederationClient } from '../client-sdk/client';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { prepareSpamTask, DEFAULT_MODEL_DIR } from '../client-sdk/demo/spam-task';
import type { Manifest } from '../coordinator/checkpoints/types';
import { freePort } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

function startCoordinator(port: number, runDir: string): ChildProcess {
  const script = path.join(__dirname, '..', 'examples', 'coordinator.js');
  const args = ['--server.port', String(port), '--run.dir', runDir, '--rounds.total', '3', '--rounds.minClients', '2', '--rounds.minUpdates', '2'];
  args.push('--training.localSteps', '2', '--training.batchSize', '4', '--rounds.deadlineMs', '60000', '--log.level', 'warn', '--auth.mode', 'tofu');
  return spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
}

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('timed out');
}

describe('crash and restart of the coordinator process', function () {
  this.timeout(240_000);
  let tmp: string;
  const children: ChildProcess[] = [];

  before(async () => {
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-crash-'));
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await fs.rm(tmp, { recursive: true, force: true });
  });

  it('resumes from the latest version after SIGKILL and completes the run with an intact lineage', async () => {
    await selectBackend();
    const port = await freePort();
    const runDir = path.join(tmp, 'run');
    const latest = async (): Promise<string> => (await fs.readFile(path.join(runDir, 'latest'), 'utf8').catch(() => '')).trim();

    const first = startCoordinator(port, runDir);
    children.push(first);
    const base = await loadGpt2Dir(DEFAULT_MODEL_DIR);
    const task = prepareSpamTask({ numClients: 2, splitSeed: 3, maxSeqLen: 96, clientEvalLimit: 8 });
    const lora = { r: 8, alpha: 16, dropout: 0.05, targetModules: ['c_attn', 'c_proj', 'c_fc'] };
    let reconnects = 0;
    const sites = task.clients.map((d, i) => {
      const c = new FederationClient({
        address: `127.0.0.1:${port}`,
        name: `site-${i}`,
        trainer: new LoraSftTrainer({ model: base.model, lora, ...d }),
        backoff: { initialMs: 100, maxMs: 500, factor: 2 },
      });
      c.on('reconnecting', () => reconnects++);
      return c;
    });
    const runs = sites.map((s) => s.run());

    await waitFor(async () => (await latest()) === 'v000001', 120_000);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    expect(await latest()).to.equal('v000001');

    const second = startCoordinator(port, runDir);
    children.push(second);
    const summaries = await Promise.all(runs);
    await new Promise((r) => second.once('exit', r));

    expect(reconnects).to.be.greaterThan(0);
    expect(summaries.map((s) => s.finalVersion)).to.deep.equal([3, 3]);
    expect(await latest()).to.equal('v000003');
    const versions = (await fs.readdir(path.join(runDir, 'versions'))).filter((n) => /^v\d+$/.test(n)).sort();
    expect(versions).to.deep.equal(['v000000', 'v000001', 'v000002', 'v000003']);
    let prevHash: string | null = null;
    for (const [i, v] of versions.entries()) {
      const bytes = await fs.readFile(path.join(runDir, 'versions', v, 'manifest.json'));
      const m = JSON.parse(bytes.toString('utf8')) as Manifest;
      expect(m.version).to.equal(i);
      expect(m.round).to.equal(i);
      expect(m.parent?.manifestSha256 ?? null).to.equal(prevHash);
      prevHash = createHash('sha256').update(bytes).digest('hex');
    }
  });
});
