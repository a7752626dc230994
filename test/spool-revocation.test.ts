// A revoked site's update never counts, even one the coordinator already accepted: revoked mid-round (after its
// upload, before the round closed) it is dropped at aggregation and the sum rebuilt without it; revoked while
// the coordinator was down, its spooled record is dropped on reload (it still verifies under the key it was
// signed with, so only the enrolment check can catch it). Real coordinator, real gRPC, real sealed uploads.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { revokeClient } from '../coordinator/auth/enrolment';
import { join, nextTask, rawClient, reportMetrics, smallAdapter, startCoordinator, tempDir, upload, uploadFrames } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function logSink(): { lines: string[]; logger: pino.Logger } {
  const lines: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString()), cb()) });
  return { lines, logger: pino({ level: 'warn' }, sink) };
}

describe('revocation and accepted updates', function () {
  this.timeout(60_000);

  it('an update accepted before its site is revoked mid-round is dropped at aggregation: the version is the mean of the others, bit for bit', async () => {
    const { lines, logger } = logSink();
    const h = await startCoordinator(await tempDir('revoke-midround'), { total: 1, minClients: 3, minUpdates: 2 }, {}, { logger });
    const c = rawClient(h.address);
    try {
      const sites = [await join(c, 'site-a'), await join(c, 'site-b'), await join(c, 'site-c')];
      const streams = sites.map((s) => nextTask(c, s.session_token));
      const tasks = await Promise.all(streams.map((s) => s.task));
      const values = [0.25, 0.75, 8];
      for (let i = 0; i < 3; i++) await upload(c, uploadFrames({ who: sites[i], task: tasks[i] }, smallAdapter(values[i])));
      for (const i of [1, 2]) await reportMetrics(c, sites[i].session_token, tasks[i].task_id, 1);
      expect(await fs.readdir(path.join(h.runDir, 'spool', 'round-1'))).to.include(`${sites[2].client_id}.sealed`);
      await sleep(20); // past the mtime tick of the coordinator's last clients.json write
      revokeClient(h.runDir, 'site-c', 'key leaked');
      await reportMetrics(c, sites[0].session_token, tasks[0].task_id, 1); // the round can close now
      const ck = await h.coordinator.done;
      for (const s of streams) s.stream.cancel();
      // (10·0.25 + 10·0.75) / 20 on the exact grid: site-c's 8 is not in it.
      for (const t of ck.adapter) expect(Array.from(t.data)).to.deep.equal(new Array(t.data.length).fill(0.5));
      expect(ck.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
      expect(Object.keys(ck.manifest.seeds.clients).sort()).to.deep.equal([sites[0].client_id, sites[1].client_id].sort());
      const dropped = lines.filter((l) => l.includes('accepted update dropped'));
      expect(dropped, lines.join('')).to.have.length(1);
      expect(JSON.parse(dropped[0])).to.include({ clientId: sites[2].client_id, round: 1 });
      expect(dropped[0]).to.contain('revoked before the round closed');
    } finally {
      c.close();
      await h.coordinator.stop(200);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });

  it('a spooled update whose site was revoked while the coordinator was down is dropped on reload; the others still count', async () => {
    const runDir = await tempDir('revoke-restart');
    const first = await startCoordinator(runDir, { total: 1, minClients: 3, minUpdates: 3 });
    let c = rawClient(first.address);
    const spoolDir = path.join(runDir, 'spool', 'round-1');
    try {
      const sites = [await join(c, 'site-a'), await join(c, 'site-b'), await join(c, 'site-c')];
      const streams = sites.map((s) => nextTask(c, s.session_token));
      const tasks = await Promise.all(streams.map((s) => s.task));
      for (const [i, v] of [
        [0, 0.25],
        [1, 8],
      ] as const) {
        await upload(c, uploadFrames({ who: sites[i], task: tasks[i] }, smallAdapter(v)));
        await reportMetrics(c, sites[i].session_token, tasks[i].task_id, 1);
      }
      for (const s of streams) s.stream.cancel();
      c.close();
      await first.coordinator.stop(200); // the round is open: its spool stays, as after a crash
      expect((await fs.readdir(spoolDir)).filter((f) => f.endsWith('.sealed')).sort()).to.deep.equal(
        [`${sites[0].client_id}.sealed`, `${sites[1].client_id}.sealed`].sort(),
      );
      revokeClient(runDir, 'site-b', 'left the federation');

      const { lines, logger } = logSink();
      const second = await startCoordinator(runDir, { total: 1, minClients: 2, minUpdates: 2 }, {}, { logger });
      c = rawClient(second.address);
      const a = await join(c, 'site-a');
      const cc = await join(c, 'site-c');
      const sa = nextTask(c, a.session_token);
      const sc = nextTask(c, cc.session_token);
      const taskC = await sc.task;
      await upload(c, uploadFrames({ who: cc, task: taskC }, smallAdapter(0.75)));
      await reportMetrics(c, cc.session_token, taskC.task_id, 1);
      const ck = await second.coordinator.done;
      sa.stream.cancel();
      sc.stream.cancel();
      await second.coordinator.stop(200);
      // site-a's carried 0.25 and site-c's fresh 0.75; site-b's spooled 8 verified under its own key but was revoked.
      for (const t of ck.adapter) expect(Array.from(t.data)).to.deep.equal(new Array(t.data.length).fill(0.5));
      expect(ck.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-c']);
      const dropped = lines.filter((l) => l.includes('spooled update dropped')).map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(dropped.map((d) => [d.clientId, d.reason])).to.deep.equal([[sites[1].client_id, 'revoked']]);
      expect(String(dropped[0].error)).to.contain('site-b was revoked');
      expect(await fs.readdir(path.join(runDir, 'spool')).catch(() => [])).to.deep.equal([]);
    } finally {
      c.close();
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });
});
