// A report sent again (a site that lost the ack when its connection dropped) is the same report: the coordinator
// answers it with the same ack and changes nothing; a second report with other content is refused (ALREADY_EXISTS).
// Real coordinator, raw gRPC clients, for both kinds of report: ReportMetrics (after the upload) and
// ReportEvaluation (federated evaluation). "The same" is the digest of the canonical encoding (report-digest.ts).
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { clientIdFor } from '../coordinator/registry';
import type { Participant } from '../coordinator/checkpoints/types';
import { metricsReportDigest } from '../coordinator/report-digest';
import type { MetricsReport__Output } from '../proto/generated/fedtune/v1/MetricsReport';
import { expectRefused, rawClient, snapshot, snapshotBytes, startCoordinator, tempDir } from './harness';
import { capturingLogger } from './door-kit';
import { reportEvaluation, twoSitesUploaded } from './fed-eval-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

type Raw = ReturnType<typeof rawClient>;
const report = (c: Raw, r: Omit<MetricsReport__Output, 'lora_rank'>): Promise<void> =>
  new Promise((res, rej) => c.ReportMetrics(r, (e) => (e ? rej(e) : res())));
/** Every file of the run directory: name, size, mtime and bytes (a repeat must leave all of them as they were). */
const state = async (dir: string): Promise<[string[], Map<string, Buffer>]> => [await snapshot(dir), await snapshotBytes(dir)];
const metricsOf = (ps: readonly Participant[], name: string): Record<string, number> | undefined => ps.find((p) => p.clientName === name)?.metrics;

describe('a repeated report: acknowledged and counted once; a different one refused (real coordinator, gRPC)', function () {
  this.timeout(60_000);

  it('ReportMetrics: the same report again is acked with the run directory untouched; other content is ALREADY_EXISTS', async () => {
    const runDir = await tempDir('report-repeat-metrics');
    const { logger, lines } = capturingLogger();
    const h = await startCoordinator(path.join(runDir, 'run'), { total: 1 }, {}, { logger });
    const reported: string[] = [];
    h.coordinator.on('metricsReported', (e) => reported.push(e.clientId));
    const c = rawClient(h.address);
    const { a, b, sa, sb, ta, tb } = await twoSitesUploaded(c, false);
    try {
      const first = {
        session_token: a.session_token,
        task_id: ta.task_id,
        round: 1,
        num_examples: 10,
        backend: 'test',
        metrics: { train_loss: 0.1, eval_loss: 0.3 },
      };
      await report(c, first);
      const after1 = await state(h.runDir);
      expect(
        [...after1[1].keys()].some((f) => f.endsWith(`${clientIdFor('site-a')}.metrics.json`)),
        'the report is spooled',
      ).to.equal(true);
      // The same report again, and again with its metrics in another order (protobuf leaves map order to the sender).
      await report(c, first);
      await report(c, { ...first, metrics: { eval_loss: 0.3, train_loss: 0.1 } });
      expect(await state(h.runDir), 'a repeat leaves every file as it was (names, sizes, mtimes, bytes)').to.deep.equal(after1);
      const ALREADY = grpc.status.ALREADY_EXISTS;
      const other = `task ${ta.task_id} already has a metrics report, with other content`;
      // One ulp off, a metric fewer, another example count or backend: another report, refused; nothing changes.
      await expectRefused(h.runDir, () => report(c, { ...first, metrics: { train_loss: 0.1, eval_loss: 0.30000000000000004 } }), ALREADY, other);
      await expectRefused(h.runDir, () => report(c, { ...first, metrics: { train_loss: 0.1 } }), ALREADY, other);
      await expectRefused(h.runDir, () => report(c, { ...first, num_examples: 11 }), ALREADY, other);
      await expectRefused(h.runDir, () => report(c, { ...first, backend: 'other' }), ALREADY, other);
      expect(await state(h.runDir)).to.deep.equal(after1);
      // Another site's token with site-a's task: not a repeat (the task is not that site's), PERMISSION_DENIED.
      await expectRefused(h.runDir, () => report(c, { ...first, session_token: b.session_token }), grpc.status.PERMISSION_DENIED, 'was not selected for task');
      await report(c, { ...first, session_token: b.session_token, task_id: tb.task_id, metrics: { train_loss: 0.2 } });
      const final = await h.coordinator.done;
      // Counted once: one event per site; the committed figures are the first report's, bit for bit.
      expect(reported.sort()).to.deep.equal([clientIdFor('site-a'), clientIdFor('site-b')].sort());
      expect(metricsOf(final.manifest.participants, 'site-a')).to.deep.equal({ train_loss: 0.1, eval_loss: 0.3 });
      expect(metricsOf(final.manifest.participants, 'site-b')).to.deep.equal({ train_loss: 0.2 });
      // The round is over: the same report is still acked (the ack it lost), and the committed run is untouched.
      const committed = await state(h.runDir);
      await report(c, first);
      expect(await state(h.runDir)).to.deep.equal(committed);
      // Logged as repeats, never as refusals or new reports.
      const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(msgs.filter((m) => m === 'metrics report repeated: acknowledged, counted once')).to.have.length(3);
      expect(msgs.filter((m) => m === 'metrics rejected')).to.have.length(5);
    } finally {
      sa.stream.cancel();
      sb.stream.cancel();
      c.close();
      await h.coordinator.stop(500);
    }
  });

  it('ReportEvaluation: the same report again is acked, even after the commit; other content is ALREADY_EXISTS; figures counted once', async () => {
    const runDir = await tempDir('report-repeat-eval');
    const { logger, lines } = capturingLogger();
    const h = await startCoordinator(path.join(runDir, 'run'), { total: 1 }, { evaluation: { enabled: true, deadlineMs: 20_000 } }, { logger });
    const c = rawClient(h.address);
    const { a, b, sa, sb } = await twoSitesUploaded(c);
    try {
      const ea = (await sa.next((e) => !!e.evaluate)).evaluate!;
      const eb = (await sb.next((e) => !!e.evaluate)).evaluate!;
      const ok = { session_token: a.session_token, task_id: ea.task_id, version: 1, num_examples: 10, loss: 0.5, accuracy: 0.75, has_accuracy: true };
      await reportEvaluation(c, ok);
      const before = await state(h.runDir);
      await reportEvaluation(c, ok);
      expect(await state(h.runDir)).to.deep.equal(before);
      const other = `evaluation task ${ea.task_id} already has a report, with other content`;
      await expectRefused(h.runDir, () => reportEvaluation(c, { ...ok, loss: 0.25 }), grpc.status.ALREADY_EXISTS, other);
      await expectRefused(h.runDir, () => reportEvaluation(c, { ...ok, has_accuracy: false, accuracy: 0 }), grpc.status.ALREADY_EXISTS, other);
      await reportEvaluation(c, { ...ok, session_token: b.session_token, task_id: eb.task_id, num_examples: 30, loss: 1, accuracy: 0.25 });
      const final = await h.coordinator.done;
      // Each site once: (10·0.5 + 30·1) / 40 and (10·0.75 + 30·0.25) / 40.
      expect(final.manifest.evaluation).to.deep.equal({ loss: 35 / 40, accuracy: 15 / 40, examples: 40, sites: 2, selected: 2 });
      const committed = await state(h.runDir);
      await reportEvaluation(c, ok); // the evaluation is closed: the lost ack is still given
      expect(await state(h.runDir)).to.deep.equal(committed);
      const msgs = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
      expect(msgs.filter((m) => m === 'evaluation report accepted')).to.have.length(2);
      expect(msgs.filter((m) => m === 'evaluation report repeated: acknowledged, counted once')).to.have.length(2);
    } finally {
      sa.stream.cancel();
      sb.stream.cancel();
      c.close();
      await h.coordinator.stop(500);
    }
  });

  it('the digest: the session token and map order do not count; every reported bit does', () => {
    const r: MetricsReport__Output = { session_token: 't1', task_id: 'x', round: 1, num_examples: 3, backend: 'cpu', metrics: { b: 1, a: 0 }, lora_rank: 0 };
    const d = metricsReportDigest(r);
    expect(metricsReportDigest({ ...r, session_token: 't2', metrics: { a: 0, b: 1 } })).to.equal(d);
    for (const other of [{ metrics: { b: 1, a: -0 } }, { round: 2 }, { task_id: 'y' }, { lora_rank: 2 }, { num_examples: 4 }]) {
      expect(metricsReportDigest({ ...r, ...other }), JSON.stringify(other)).to.not.equal(d);
    }
  });
});
