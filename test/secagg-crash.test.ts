// A coordinator killed (kill -9) in the middle of a SecAgg round: nothing of a SecAgg attempt is spooled, so the
// restarted coordinator starts the round's next attempt — a new session (new round tag, new task ids) over the
// sites connected then — and the sites train again and commit it. The kill comes after the masked inputs, once
// the consistency check is out (secagg:consistency-sent), the latest stage at which this holds: once a site has
// answered an unmask request for a base checkpoint, its ledger refuses any other sum over that checkpoint (the
// second-sum attack), so a crash after the unmask requests stalls the run until the operator intervenes.
import { spawn, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FederationClient } from '../client-sdk/client';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import type { Manifest } from '../coordinator/checkpoints/types';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { KILL_AT_ENV } from '../proto/durable-file';
import type { TensorList } from '../proto/tensors';
import { freePort, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** 0.5 added to every value, plus a seed-dependent trace: a retried task is a new update (the site's ledger refuses the same one twice). */
class SeededTrainer implements Trainer {
  readonly backend = 'test';
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    const adapter = global.map((t) => ({ ...t, data: t.data.map((x) => x + 0.5) }));
    const last = adapter[adapter.length - 1].data;
    last[0] += 1e-4 * ((plan.seed % 997) / 997);
    return { adapter, numExamples: 10, metrics: { train_loss: 0.5 } };
  }
}

function startCoordinator(port: number, runDir: string, killAt: string | undefined, out: string[]): ChildProcess {
  const script = path.join(__dirname, 'fixtures', 'tiny-coordinator.js');
  const args = ['--server.port', String(port), '--run.dir', runDir, '--run.seed', '5', '--rounds.total', '1', '--rounds.minClients', '5'];
  args.push('--rounds.minUpdates', '5', '--rounds.clientsPerRound', '5', '--rounds.deadlineMs', '30000', '--rounds.maxAttempts', '2');
  args.push('--secagg.enabled', 'true', '--secagg.stageTimeoutMs', '20000', '--log.level', 'warn', '--auth.mode', 'tofu');
  // The test's trainers move lora_A too, so FedIT rather than the SecAgg default (FFA, which freezes A).
  args.push('--lora.aggregation', 'fedit');
  const env = { ...process.env };
  delete env[KILL_AT_ENV];
  if (killAt) env[KILL_AT_ENV] = killAt;
  const child = spawn(process.execPath, [script, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  child.stdout!.on('data', (d: Buffer) => out.push(d.toString()));
  child.stderr!.on('data', (d: Buffer) => out.push(d.toString()));
  return child;
}

const exited = (c: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve({ code: c.exitCode, signal: c.signalCode })
    : new Promise((r) => c.once('exit', (code, signal) => r({ code, signal })));

describe('secure aggregation: a coordinator crash mid-round (kill -9)', function () {
  this.timeout(120_000);
  const children: ChildProcess[] = [];
  const sites: FederationClient[] = [];
  let dir: string;
  before(async () => {
    dir = await tempDir('secagg-crash');
  });
  after(async () => {
    for (const s of sites) await s.stop().catch(() => undefined);
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('killed once the masked inputs are in: the restarted coordinator runs a new attempt (new session, new task ids) and commits it', async () => {
    const port = await freePort();
    const runDir = path.join(dir, 'run');
    const out: string[] = [];
    const first = startCoordinator(port, runDir, 'secagg:consistency-sent', out);
    children.push(first);
    const tasks: { name: string; taskId: string; attempt: number }[] = [];
    for (let i = 0; i < 5; i++) {
      const name = `sa-${i}`;
      const c = new FederationClient({
        address: `127.0.0.1:${port}`,
        name,
        identity: testIdentity(name),
        trainer: new SeededTrainer(),
        backoff: { initialMs: 50, maxMs: 300, factor: 2 },
      });
      c.on('task', (t) => tasks.push({ name, taskId: t.taskId, attempt: t.attempt }));
      sites.push(c);
    }
    const runs = sites.map((s) => s.run());
    const killed = await exited(first);
    expect(killed.signal, out.join('')).to.equal('SIGKILL');
    expect(await fs.readFile(path.join(runDir, 'latest'), 'utf8')).to.equal('v000000\n');
    const state = JSON.parse(await fs.readFile(path.join(runDir, 'spool', 'round-1', 'attempt.json'), 'utf8')) as { attempt: number; failed: number };
    expect(state).to.deep.include({ attempt: 1, failed: 0 });
    expect(
      tasks
        .filter((t) => t.attempt === 1)
        .map((t) => t.name)
        .sort(),
    ).to.deep.equal(['sa-0', 'sa-1', 'sa-2', 'sa-3', 'sa-4']);

    const second = startCoordinator(port, runDir, undefined, out);
    children.push(second);
    const summaries = await Promise.all(runs);
    expect((await exited(second)).code, out.join('')).to.equal(0);
    expect(summaries.map((s) => s.finalVersion)).to.deep.equal([1, 1, 1, 1, 1]);

    const m = JSON.parse(await fs.readFile(path.join(runDir, 'versions', 'v000001', 'manifest.json'), 'utf8')) as Manifest;
    // Attempt 1 was cut short by the crash: not counted as failed, and the new attempt is number 2.
    expect(m).to.deep.include({ round: 1, attempt: 2 });
    expect(m.secureAggregation!.survivors).to.have.length(5);
    expect(m.secureAggregation!.dropped).to.deep.equal([]);
    // Each site trained twice, under two different task ids; no id was issued twice.
    const byName = new Map<string, string[]>();
    for (const t of tasks) byName.set(t.name, [...(byName.get(t.name) ?? []), t.taskId]);
    for (const [name, ids] of byName) {
      expect(ids, name).to.have.length(2);
      expect(ids[0], name).to.contain('-a1-');
      expect(ids[1], name).to.contain('-a2-');
    }
    expect(new Set(tasks.map((t) => t.taskId)).size).to.equal(tasks.length);
    // The mean of five 0.5 updates: each is weighted by 10/weightCap (10,000) before it meets SecAgg's grid, so
    // the grid's step is about 1% of a weighted value; bit-exactness is secagg.test.ts's to show, not this test's.
    const ck = await new FsCheckpointStore(runDir, { readOnly: true }).read(1);
    for (const t of ck.adapter) for (const x of t.data) expect(Math.abs(x - 0.5)).to.be.below(1e-2);
    expect(m.participants.map((p) => p.clientName).sort()).to.deep.equal(['sa-0', 'sa-1', 'sa-2', 'sa-3', 'sa-4']);
    expect(await fs.readdir(path.join(runDir, 'spool')).catch(() => [])).to.deep.equal([]);
  });
});
