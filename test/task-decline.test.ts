// DeclineTask (client-sdk/decline.ts, Attempt.decline): a site whose training fails says so, with a reason code and
// never its error text, and the round stops waiting for it instead of waiting out its deadline. Every round here has
// a 10-minute deadline and every test a far shorter timeout, so a round that waited for a declined site would fail
// the test. Over real gRPC: SDK sites training a tiny Llama for real, one of them refusing the coordinator's rank
// every round (the run of bench/QUALITY.md run 28's first call, where such rounds waited out 600 s); and raw calls
// for each refusal, each leaving the run directory untouched.
import { promises as fs } from 'node:fs';
import { status } from '@grpc/grpc-js';
import { FederationClient } from '../client-sdk/client';
import { selectBackend } from '../client-sdk/model/backend';
import { loadModelDir, type CausalLm } from '../client-sdk/model/load';
import { TaskLoraTrainer } from '../client-sdk/sft/task-lora';
import type { DeclineTaskRequest } from '../proto/generated/fedtune/v1/DeclineTaskRequest';
import { clientIdFor } from '../coordinator/registry';
import { capturingLogger } from './door-kit';
import { BASE, data } from './flora-kit';
import type { Trainer } from '../client-sdk/trainer';
import { expectRefused, reportMetrics, sendUpload, siteDelta, startCoordinator, tempDir, testIdentity, uploadFrames } from './harness';
import { constantSites, declineTask as decline, twoSitesInRound } from './sites-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const TEN_MINUTES = 600_000;

describe('DeclineTask: a site whose training fails does not hold up the round', function () {
  this.timeout(120_000);
  let model: CausalLm;
  before(async () => {
    await selectBackend();
    model = (await loadModelDir(BASE)).model;
  });

  it('over gRPC with real training: a site refusing the rank declines each round (SETTINGS_MISMATCH) and both rounds commit without it', async () => {
    const { logger, lines } = capturingLogger();
    const h = await startCoordinator(
      await tempDir('decline'),
      { total: 2, minClients: 3, minUpdates: 2, deadlineMs: TEN_MINUTES },
      {
        model: { dir: BASE, name: 'tiny-llama' },
        lora: { r: 4, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'], aggregation: 'fedit' },
        training: { localSteps: 1, batchSize: 2, maxSeqLen: 16, learningRate: 0.05 },
      },
      { fromModelDir: true, logger },
    );
    try {
      const declines: { round: number; clientId: string; reason: string }[] = [];
      h.coordinator.on('taskDeclined', (e) => declines.push(e));
      const siteLog: string[] = [];
      const site = (name: string, r: number | undefined, seed: number): FederationClient =>
        new FederationClient({
          address: h.address,
          name,
          identity: testIdentity(name),
          trainer: new TaskLoraTrainer({ model, data: data(seed), lora: { ...(r ? { r } : {}), dropout: 0 }, backend: 'test' }),
          log: (level, msg, f) => siteLog.push(`${level} ${msg} ${JSON.stringify(f)}`),
        });
      // 'too-wide' says --lora.r 8 against the coordinator's r = 4: the real trainer refuses every task.
      const clients = [site('site-a', undefined, 1), site('site-b', undefined, 2), site('too-wide', 8, 3)];
      const runs = clients.map((c) => c.run());
      await h.coordinator.done;
      await Promise.all(runs);
      const versions = await Promise.all([1, 2].map((v) => h.coordinator.store.read(v)));
      for (const v of versions) expect(v.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
      const wide = clientIdFor('too-wide');
      expect(declines).to.deep.equal([
        { round: 1, attempt: 1, clientId: wide, reason: 'SETTINGS_MISMATCH' },
        { round: 2, attempt: 1, clientId: wide, reason: 'SETTINGS_MISMATCH' },
      ]);
      const logged = lines.filter((l) => l.includes('"task declined"'));
      expect(logged).to.have.length(2);
      for (const l of logged) expect(JSON.parse(l)).to.include({ clientId: wide, reason: 'SETTINGS_MISMATCH' });
      // The site's own error text (it names its settings) stays in the site's log; the coordinator has only the code.
      expect(siteLog.filter((l) => l.startsWith('info task declined'))).to.have.length(2);
      expect(siteLog.some((l) => l.includes('this site says --lora.r 8'))).to.equal(true);
      expect(lines.some((l) => l.includes('--lora.r'))).to.equal(false);
    } finally {
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });

  it('refusals (each leaves the run directory as it was); a repeat is acknowledged; the round then closes on the other site alone', async () => {
    const h = await startCoordinator(await tempDir('decline-raw'), { total: 1, minUpdates: 1, deadlineMs: TEN_MINUTES });
    const s = await twoSitesInRound(h);
    try {
      const { c, a, b, taskA, taskB } = s;
      const ask = (over: Partial<DeclineTaskRequest> = {}): DeclineTaskRequest => ({
        session_token: a.session_token,
        task_id: taskA.task_id,
        round: taskA.round,
        reason: 'TRAINING_FAILED',
        ...over,
      });
      await expectRefused(
        h.runDir,
        () => decline(c, ask({ reason: 'DECLINE_REASON_UNSPECIFIED' })),
        status.INVALID_ARGUMENT,
        'reason "DECLINE_REASON_UNSPECIFIED" is not one of TRAINING_FAILED, SETTINGS_MISMATCH',
      );
      await expectRefused(h.runDir, () => decline(c, ask({ reason: 7 as unknown as 'TRAINING_FAILED' })), status.INVALID_ARGUMENT, 'reason "7" is not one of');
      await expectRefused(
        h.runDir,
        () => decline(c, ask({ session_token: b.session_token })),
        status.PERMISSION_DENIED,
        `was not selected for task ${taskA.task_id}`,
      );
      await expectRefused(h.runDir, () => decline(c, ask({ round: taskA.round + 1 })), status.FAILED_PRECONDITION, `belongs to round ${taskA.round}`);
      // A task that already reported cannot be declined (it is past training).
      await reportMetrics(c, b.session_token, taskB.task_id, taskB.round);
      await expectRefused(
        h.runDir,
        () => decline(c, ask({ session_token: b.session_token, task_id: taskB.task_id })),
        status.FAILED_PRECONDITION,
        `task ${taskB.task_id} has a metrics report: it cannot be declined`,
      );
      let declined = 0;
      h.coordinator.on('taskDeclined', () => declined++);
      await decline(c, ask());
      await decline(c, ask()); // a repeat (the answer lost in transit): the same ack, nothing counted again
      expect(declined).to.equal(1);
      await expectRefused(
        h.runDir,
        () => reportMetrics(c, a.session_token, taskA.task_id, taskA.round),
        status.FAILED_PRECONDITION,
        `task ${taskA.task_id} was declined by its site`,
      );
      const up = await sendUpload(c, uploadFrames({ who: a, task: taskA }, siteDelta('a', await h.coordinator.store.read(0).then((v) => v.adapter))));
      expect(up.err?.code, up.err?.details).to.equal(status.FAILED_PRECONDITION);
      expect(up.err?.details).to.contain('was declined by its site');
      // Site b's update is the round's: it closes at once, not after ten minutes.
      const got = await sendUpload(c, uploadFrames({ who: b, task: taskB }, siteDelta('b', (await h.coordinator.store.read(0)).adapter)));
      expect(got.err, got.err?.details).to.equal(undefined);
      const final = await h.coordinator.done;
      expect(final.manifest.participants.map((p) => p.clientName)).to.deep.equal(['site-b']);
    } finally {
      await s.close();
    }
  });

  it('under SecAgg: a site whose training fails declines before stage 1; the session goes on and commits with the other five', async () => {
    const rounds = { total: 1, minClients: 6, minUpdates: 5, clientsPerRound: 6, deadlineMs: TEN_MINUTES, maxAttempts: 1 };
    const h = await startCoordinator(await tempDir('decline-secagg'), rounds, { secagg: { enabled: true, threshold: 4, stageTimeoutMs: TEN_MINUTES } });
    try {
      const failing: Trainer = { backend: 'test', train: () => Promise.reject(new Error('out of device memory at /site/private/path')) };
      const declines: string[] = [];
      h.coordinator.on('taskDeclined', (e) => declines.push(e.reason));
      const sites = constantSites(h.address, 'sa', 6, (i) => (i === 5 ? { trainer: failing } : {}));
      const runs = sites.map((c) => c.run());
      const final = await h.coordinator.done;
      await Promise.all(runs);
      expect(declines).to.deep.equal(['TRAINING_FAILED']);
      expect(final.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['sa-0', 'sa-1', 'sa-2', 'sa-3', 'sa-4']);
    } finally {
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });
});
