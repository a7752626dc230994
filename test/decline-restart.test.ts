// A declined task survives a coordinator restart (Attempt.decline, coordinator/spool-decline.ts): the decline is
// spooled before the site hears back, so after a kill -9 the resumed attempt carries the task as declined under the
// id it was issued with: it neither waits for its site nor sends it a task, refuses its late upload and report,
// and acknowledges its repeated decline. Every round here has a 10-minute deadline and every test a far shorter
// timeout, so a round that waited for the declined site would fail the test. A damaged or forged decline record is
// dropped with a warning (no path, nothing of the record) and its site is issued a task as any other; a decline
// whose record cannot be written is refused (UNAVAILABLE), nothing changed, and taken when sent again. SecAgg rounds
// are not resumed after a restart (nothing of a SecAgg attempt is spooled: test/secagg-crash.test.ts), so a SecAgg
// decline has nothing to survive. Real coordinators (a child process for the kill), real gRPC.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { FederationClient } from '../client-sdk/client';
import type { Trainer } from '../client-sdk/trainer';
import { clientIdFor } from '../coordinator/registry';
import { capturingLogger } from './door-kit';
import { expectRefused, freePort, reportMetrics, smallAdapter, snapshot, startCoordinator, tempDir, testIdentity, upload, uploadFrames } from './harness';
import { constantSites, declineTask, processSuite, rawRound, rawSites, startCoordinatorProcess, type RawSites } from './sites-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const TEN_MINUTES = 600_000;

/** The run directory as committed: every file but the round spool's (sizes and mtimes). */
const committed = async (runDir: string): Promise<string[]> => (await snapshot(runDir)).filter((l) => !l.startsWith(`spool${path.sep}`));

/** Site `i` of `s` uploads `value` over version 0 and reports. */
async function finish(s: RawSites, i: number, value: number): Promise<void> {
  const [who, task] = [s.joined[i], await s.tasks[i]];
  await upload(s.c, uploadFrames({ who, task }, smallAdapter(value)));
  await reportMetrics(s.c, who.session_token, task.task_id, task.round);
}

describe('DeclineTask across a coordinator restart', function () {
  this.timeout(60_000);
  const { children, dirs } = processSuite();

  it('kill -9 after an acknowledged decline: the resumed round sends the site no task, refuses its late upload and report, acknowledges its repeat, and closes on the others at once', async () => {
    const root = await tempDir('decline-kill');
    dirs.push(root);
    const runDir = path.join(root, 'run');
    const port = await freePort();
    const args = ['--server.port', String(port), '--run.dir', runDir, '--run.seed', '5', '--rounds.total', '1', '--rounds.minClients', '3'];
    args.push('--rounds.minUpdates', '2', '--rounds.deadlineMs', String(TEN_MINUTES), '--log.level', 'info', '--auth.mode', 'tofu');
    const start = async () => {
      const p = await startCoordinatorProcess(args);
      children.push(p.child);
      return p;
    };
    const names = ['site-a', 'site-b', 'site-c'];

    const first = await start();
    let s = await rawSites(`127.0.0.1:${port}`, names);
    const taskC = await s.tasks[2];
    await finish(s, 0, 0.25); // site-a's update and report: spooled, carried over the restart
    const before = await committed(runDir);
    const c = s.joined[2];
    await declineTask(s.c, { session_token: c.session_token, task_id: taskC.task_id, round: 1, reason: 'TRAINING_FAILED' });
    expect(await committed(runDir), 'a decline commits nothing').to.deep.equal(before);
    expect((await fs.readdir(path.join(runDir, 'spool', 'round-1'))).sort()).to.deep.equal(
      ['attempt.json', `${c.client_id}.declined.json`, `${s.joined[0].client_id}.metrics.json`, `${s.joined[0].client_id}.sealed`].sort(),
    );
    s.hangUp();
    first.child.kill('SIGKILL');
    await first.exited();
    expect(first.child.signalCode).to.equal('SIGKILL');

    const second = await start();
    s = await rawSites(`127.0.0.1:${port}`, names);
    try {
      await s.tasks[1]; // the resumed attempt is open: site-b has its fresh task
      const late = s.joined[2];
      const ask = { session_token: late.session_token, task_id: taskC.task_id, round: 1, reason: 'TRAINING_FAILED' as const };
      await declineTask(s.c, ask); // a repeat (the ack lost in the crash): the same ack
      await expectRefused(
        runDir,
        () => reportMetrics(s.c, late.session_token, taskC.task_id, 1),
        status.FAILED_PRECONDITION,
        `task ${taskC.task_id} was declined by its site`,
      );
      await expectRefused(
        runDir,
        () => upload(s.c, uploadFrames({ who: late, task: taskC }, smallAdapter(0.5))),
        status.FAILED_PRECONDITION,
        `task ${taskC.task_id} was declined by its site`,
      );
      await finish(s, 1, 0.75); // site-b's fresh task: with it the round has all it waits for
      await second.exited();
      expect(second.child.exitCode, second.out.join('')).to.equal(0);
      // site-a's update was carried and site-c's task declined: neither was sent a task after the restart.
      expect(s.events[0].filter((e) => e.train)).to.deep.equal([]);
      expect(s.events[2].filter((e) => e.train)).to.deep.equal([]);
      const carried = second.out
        .join('')
        .split('\n')
        .filter((l) => l.includes('declined task carried over a restart'));
      expect(carried).to.have.length(1);
      expect(JSON.parse(carried[0])).to.include({ round: 1, clientId: late.client_id, taskId: taskC.task_id, reason: 'TRAINING_FAILED' });
    } finally {
      s.hangUp();
    }
    const v1 = await new FsCheckpointStore(runDir).read(1);
    expect(v1.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
  });

  it('damaged and forged decline records are dropped with a warning (no path, nothing of the record), their sites issued tasks as any other', async () => {
    const runDir = await tempDir('decline-damaged');
    dirs.push(runDir);
    const rounds = { total: 1, minClients: 5, minUpdates: 2, deadlineMs: TEN_MINUTES };
    const names = ['site-a', 'site-b', 'site-c', 'site-d', 'site-e']; // site-e keeps the round open: it does nothing
    const first = await startCoordinator(runDir, rounds);
    let s = await rawSites(first.address, names);
    const tasks = await Promise.all(s.tasks);
    await finish(s, 0, 0.25);
    for (const i of [1, 2, 3]) {
      await declineTask(s.c, { session_token: s.joined[i].session_token, task_id: tasks[i].task_id, round: 1, reason: 'SETTINGS_MISMATCH' });
    }
    s.hangUp();
    await first.coordinator.stop(500); // the round is open: its spool stays, as after a crash
    const ids = s.joined.map((j) => j.client_id);
    const spool = path.join(runDir, 'spool', 'round-1');
    const file = (id: string): string => path.join(spool, `${id}.declined.json`);
    const good = JSON.parse(await fs.readFile(file(ids[1]), 'utf8')) as Record<string, unknown>;
    const forge = (id: string, over: Record<string, unknown>): Promise<void> => fs.writeFile(file(id), JSON.stringify({ ...good, clientId: id, ...over }));
    await forge(ids[0], { taskId: tasks[0].task_id }); // site-a's own task, but site-a has a spooled update
    await forge(ids[1], { reason: 'OUT_OF_MEMORY /home/site-b/secret' });
    await fs.writeFile(file(ids[2]), '{"round": 1, "baseManifestSha'); // torn
    await forge(ids[3], { taskId: tasks[2].task_id }); // another site's task
    await forge(ids[4], { taskId: tasks[4].task_id, round: 2 }); // site-e's own task, another round
    await forge('site-z', {}); // a site the round never selected
    const { logger, lines } = capturingLogger();
    const second = await startCoordinator(runDir, rounds, {}, { logger });
    s = await rawSites(second.address, names);
    try {
      for (const i of [1, 2, 3, 4]) await finish(s, i, 0.1 * i); // each is sent a fresh task
      const ck = await second.coordinator.done;
      expect(ck.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(names);
      const warned = lines.filter((l) => l.includes('spooled decline dropped'));
      const dropped = warned.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(dropped.map((l) => [l.clientId, l.reason, l.error]).sort()).to.deep.equal(
        [
          [ids[0], 'contradicts', 'its site has a spooled update (a declined task takes none)'],
          [ids[1], 'binding', 'its reason is not a decline reason'],
          [ids[2], 'unreadable', 'not a decline record'],
          [ids[3], 'binding', 'its task id is not one this round issued to its site'],
          [ids[4], 'binding', 'it names another round, base or site'],
          ['site-z', 'binding', 'its site was not selected for this round'],
        ].sort(),
      );
      for (const l of warned) {
        expect(l).to.not.contain(runDir);
        expect(l).to.not.contain('/home/site-b');
      }
      expect(lines.some((l) => l.includes('declined task carried'))).to.equal(false);
    } finally {
      s.hangUp();
      await second.coordinator.stop(500);
    }
  });

  it('a decline whose record cannot be written is refused (UNAVAILABLE, nothing changed); sent again once it can be, it holds and the round closes without the site', async () => {
    const { logger, lines } = capturingLogger();
    const h = await startCoordinator(await tempDir('decline-unwritable'), { total: 1, minUpdates: 1, deadlineMs: TEN_MINUTES }, {}, { logger });
    const s = await rawRound(h, ['site-a', 'site-b']);
    try {
      const [a, taskA] = [s.joined[0], await s.tasks[0]];
      // A directory where the record goes: its rename into place fails.
      const obstacle = path.join(h.runDir, 'spool', 'round-1', `${a.client_id}.declined.json`);
      await fs.mkdir(path.join(obstacle, 'x'), { recursive: true });
      const ask = { session_token: a.session_token, task_id: taskA.task_id, round: 1, reason: 'TRAINING_FAILED' as const };
      let declined = 0;
      h.coordinator.on('taskDeclined', () => declined++);
      const err = await expectRefused(
        h.runDir,
        () => declineTask(s.c, ask),
        status.UNAVAILABLE,
        `task ${taskA.task_id}: the coordinator could not record the decline; send it again`,
      );
      expect(err.details).to.not.contain(h.runDir);
      expect(declined).to.equal(0);
      await fs.rm(obstacle, { recursive: true });
      await declineTask(s.c, ask);
      expect(declined).to.equal(1);
      await finish(s, 1, 0.75);
      const ck = await h.coordinator.done;
      expect(ck.manifest.participants.map((p) => p.clientName)).to.deep.equal(['site-b']);
      const failed = lines.filter((l) => l.includes('could not spool a decline'));
      expect(failed.map((l) => JSON.parse(l) as Record<string, unknown>).map((l) => [l.taskId, l.errno])).to.deep.equal([[taskA.task_id, 'EISDIR']]);
      for (const l of failed) expect(l).to.not.contain(h.runDir);
    } finally {
      await s.close();
    }
  });
  it('an SDK site whose decline cannot be recorded is answered UNAVAILABLE and sends it again; once the record is written the round closes without it', async () => {
    const { logger, lines } = capturingLogger();
    const h = await startCoordinator(await tempDir('decline-sdk-retry'), { total: 1, minUpdates: 1, deadlineMs: TEN_MINUTES }, {}, { logger });
    const obstacle = path.join(h.runDir, 'spool', 'round-1', `${clientIdFor('failing')}.declined.json`);
    // The trainer puts a directory where the decline's record goes (its rename into place fails), then fails.
    const failing: Trainer = {
      backend: 'test',
      train: async () => {
        await fs.mkdir(path.join(obstacle, 'x'), { recursive: true });
        throw new Error('out of device memory');
      },
    };
    const fast = { backoff: { initialMs: 20, maxMs: 200, factor: 2 } };
    const sites = constantSites(h.address, 'ok', 1, () => fast);
    sites.push(new FederationClient({ address: h.address, name: 'failing', identity: testIdentity('failing'), trainer: failing, ...fast }));
    const declined: string[] = [];
    h.coordinator.on('taskDeclined', (e) => declined.push(e.clientId));
    try {
      const runs = sites.map((c) => c.run());
      while (!lines.some((l) => l.includes('could not spool a decline'))) await new Promise((r) => setTimeout(r, 10));
      expect(declined, 'a decline not yet recorded does not hold').to.deep.equal([]);
      await fs.rm(obstacle, { recursive: true });
      const ck = await h.coordinator.done;
      await Promise.all(runs);
      expect(declined).to.deep.equal([clientIdFor('failing')]);
      expect(ck.manifest.participants.map((p) => p.clientName)).to.deep.equal(['ok-0']);
    } finally {
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });
});
