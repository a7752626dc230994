// A damaged clients.json (an operator's edit gone wrong): at start the coordinator refuses with a message
// naming the file; while it runs, it keeps serving the sites already enrolled under the last good reading,
// enrols nobody new (UNAVAILABLE, no path in the message) until the file is repaired, and says so once in
// its log. Real coordinator, real gRPC.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { status } from '@grpc/grpc-js';
import pino from 'pino';
import { readClientsFile } from '../coordinator/auth/enrolment';
import { join, refusal, reportMetrics, smallAdapter, startCoordinator, tempDir, upload, uploadFrames } from './harness';
import { rawSites } from './sites-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('enrolment: a damaged clients.json', function () {
  this.timeout(30_000);

  it('refuses to start, naming the file and what is wrong with it', async () => {
    const dir = await tempDir('enrol-damaged-start');
    try {
      await fs.writeFile(path.join(dir, 'clients.json'), '{"format": "fedtune.clients/1", "clients": [');
      const err = await startCoordinator(dir, { total: 1 }).catch((e: unknown) => e as Error);
      expect(err).to.be.instanceOf(Error);
      expect((err as Error).message).to.contain(`${path.join(dir, 'clients.json')} is not valid JSON`);
      await fs.writeFile(path.join(dir, 'clients.json'), '[]');
      const err2 = await startCoordinator(dir, { total: 1 }).catch((e: unknown) => e as Error);
      expect((err2 as Error).message).to.contain('is not a fedtune.clients/1 file');
      expect(await fs.readdir(path.join(dir, 'versions')).catch(() => [])).to.deep.equal([]); // nothing was committed
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('while running: keeps the enrolled sites in the round, enrols nobody new until it is repaired, and logs it once', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (lines.push(chunk.toString()), cb()) });
    const h = await startCoordinator(await tempDir('enrol-damaged-run'), { total: 1 }, {}, { logger: pino({ level: 'warn' }, sink) });
    const sites = await rawSites(h.address, ['site-a', 'site-b']);
    const { c } = sites;
    try {
      const [a, b] = sites.joined;
      const [taskA, taskB] = await Promise.all(sites.tasks);
      const file = path.join(h.runDir, 'clients.json');
      const good = await fs.readFile(file, 'utf8');
      expect(readClientsFile(h.runDir).clients.map((x) => x.name)).to.deep.equal(['site-a', 'site-b']);
      await sleep(20);
      await fs.writeFile(file, good.slice(0, good.length / 2)); // a torn edit

      // Sweeps over the sessions do not throw (they did: registry.connected() → Enrolment.refresh).
      expect(
        h.coordinator.registry
          .connected()
          .map((s) => s.name)
          .sort(),
      ).to.deep.equal(['site-a', 'site-b']);
      const err = await refusal(join(c, 'site-new'));
      expect(status[err.code]).to.equal('UNAVAILABLE');
      expect(err.details).to.contain('enrolment file is damaged');
      expect(err.details).to.not.contain(h.runDir);
      expect(await fs.readFile(file, 'utf8'), 'the damaged file is left for the operator').to.equal(good.slice(0, good.length / 2));

      // The enrolled sites finish the round.
      await upload(c, uploadFrames({ who: a, task: taskA }, smallAdapter(0.25)));
      await upload(c, uploadFrames({ who: b, task: taskB }, smallAdapter(0.75)));
      await reportMetrics(c, a.session_token, taskA.task_id, 1);
      await reportMetrics(c, b.session_token, taskB.task_id, 1);
      const ck = await h.coordinator.done;
      expect(ck.manifest.version).to.equal(1);
      for (const st of sites.streams) st.cancel();

      const warned = lines.filter((l) => l.includes('is not valid JSON'));
      expect(warned, lines.join('')).to.have.length(1);
      expect(warned[0]).to.contain('no site can enrol until it is repaired');

      // Repaired: a new site enrols again.
      await sleep(20);
      await fs.writeFile(file, good);
      const n = await join(c, 'site-new');
      expect(n.client_id).to.match(/^c-/);
      expect(readClientsFile(h.runDir).clients.map((x) => x.name)).to.deep.equal(['site-a', 'site-b', 'site-new']);
    } finally {
      sites.hangUp();
      await h.coordinator.stop(200);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });
});
