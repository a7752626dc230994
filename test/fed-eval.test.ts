// Federated evaluation over real gRPC: a real coordinator, real SDK clients (FederationClient) and raw clients
// speaking the protocol directly. Each candidate version is evaluated by the sites before it commits; its manifest
// holds exactly the example-weighted mean of what they reported (client-id order), and the adapter each site
// evaluated is byte for byte the one committed. Refusals: out-of-range figures at the door, unknown and foreign
// tasks, the wrong version, a different second report, a closed evaluation; a silent site costs the deadline, not the run.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { FederationClient } from '../client-sdk/client';
import type { EvaluationDone } from '../client-sdk/evaluate-task';
import { clientIdFor } from '../coordinator/registry';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { formatVersionTable } from '../coordinator/checkpoints/table';
import { sortByName } from '../proto/tensors';
import { readSafetensors } from '../proto/safetensors';
import { expectRefused, rawClient, reportMetrics, startCoordinator, tempDir, testIdentity } from './harness';
import { ScriptedEvalTrainer, adapterSha, downloadCandidate, reportEvaluation, taskEvents, twoSitesUploaded } from './fed-eval-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('federated evaluation (real gRPC, real sites)', function () {
  this.timeout(60_000);
  let dirs: string[] = [];
  const dir = async (p: string): Promise<string> => {
    const d = await tempDir(p);
    dirs.push(d);
    return d;
  };
  after(async () => {
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
    dirs = [];
  });

  it('three sites evaluate each candidate; its manifest holds the example-weighted mean of their reports, exactly', async () => {
    const runDir = await dir('fed-eval');
    const h = await startCoordinator(runDir, { total: 2, minClients: 3, minUpdates: 3 }, { evaluation: { enabled: true, deadlineMs: 20_000 } });
    // Figures differ per site and per version, and are not round numbers, so the mean's every bit matters.
    const sites = [
      { name: 'eval-a', examples: 7, f: (l: number) => ({ eval_loss: 1.1 / (l + 0.3), eval_accuracy: 0.61 + l / 97, eval_examples: 13 }) },
      { name: 'eval-b', examples: 11, f: (l: number) => ({ eval_loss: 0.7 + l / 7, eval_accuracy: 0.5 - l / 31, eval_examples: 29 }) },
      { name: 'eval-c', examples: 5, f: (l: number) => ({ eval_loss: Math.PI / (l + 2), eval_accuracy: 1 / 3, eval_examples: 3 }) },
    ];
    // Each site moves the adapter by a different amount, so the committed mean equals no site's own adapter.
    const trainers = sites.map((s, i) => new ScriptedEvalTrainer(i + 1, s.examples, s.f));
    const reported = new Map<string, EvaluationDone[]>();
    const clients = sites.map((s, i) => {
      const c = new FederationClient({ address: h.address, name: s.name, trainer: trainers[i], identity: testIdentity(s.name) });
      reported.set(s.name, []);
      c.on('evaluated', (e) => reported.get(s.name)!.push(e));
      return c;
    });
    try {
      await Promise.all(clients.map((c) => c.run()));
      const final = await h.coordinator.done;
      expect(final.manifest.version).to.equal(2);
      const store = new FsCheckpointStore(runDir, { readOnly: true });
      const manifests = await store.list();
      expect(manifests[0].evaluation, 'v0 (the initial adapter) is committed before any site joined').to.equal(undefined);
      // The weighted mean, in client-id order, from what each site's SDK said it reported.
      const order = [...sites].sort((a, b) => (clientIdFor(a.name) < clientIdFor(b.name) ? -1 : 1));
      for (const v of [1, 2]) {
        const reps = order.map((s) => reported.get(s.name)!.find((e) => e.version === v)!);
        let n = 0;
        let loss = 0;
        let acc = 0;
        for (const r of reps) {
          n += r.numExamples;
          loss += r.numExamples * r.loss;
          acc += r.numExamples * r.accuracy!;
        }
        const m = manifests[v];
        expect(m.evaluation).to.deep.equal({ loss: loss / n, accuracy: acc / n, examples: 45, sites: 3, selected: 3 });
        expect(m.metrics['eval.loss']).to.equal(loss / n);
        expect(m.metrics['eval.accuracy']).to.equal(acc / n);
        // Each site evaluated exactly the adapter that was then committed as this version (the SDK also evaluates
        // its own trained adapter for ReportMetrics, so the trainer saw others too).
        const committed = adapterSha(
          sortByName(readSafetensors(await fs.readFile(path.join(runDir, 'versions', `v00000${v}`, 'adapter_model.safetensors'))).tensors),
        );
        for (const t of trainers) expect(t.evaluated.filter((x) => x === committed)).to.have.length(1);
      }
      // checkpoints list shows the federated figures (not '-'), and which version is best so far.
      const row = formatVersionTable(manifests).split('\n')[2].split(/\s+/);
      expect(row.slice(6, 8)).to.deep.equal([manifests[1].metrics['eval.loss'].toFixed(4), manifests[1].metrics['eval.accuracy'].toFixed(3)]);
      expect(row[10]).to.equal(`v${manifests[1].best!.version}`);
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
      await h.coordinator.stop();
    }
  });

  it('under SecAgg: the sum stays masked, sites still evaluate the candidate; the manifest evaluation record is the aggregate of their reports', async () => {
    const runDir = await dir('fed-eval-secagg');
    const h = await startCoordinator(
      runDir,
      { total: 1, minClients: 5, minUpdates: 5, clientsPerRound: 5 },
      { secagg: { enabled: true }, evaluation: { enabled: true, deadlineMs: 20_000 } },
    );
    const names = ['sa-1', 'sa-2', 'sa-3', 'sa-4', 'sa-5'];
    const reported: EvaluationDone[] = [];
    const clients = names.map((name, i) => {
      const c = new FederationClient({
        address: h.address,
        name,
        identity: testIdentity(name),
        trainer: new ScriptedEvalTrainer(0.01 * (i + 1), 10 + i, () => ({ eval_loss: 0.3 + i / 10, eval_accuracy: 0.9 - i / 20, eval_examples: 2 + i })),
      });
      c.on('evaluated', (e) => reported.push({ ...e, taskId: name }));
      return c;
    });
    try {
      await Promise.all(clients.map((c) => c.run()));
      const final = await h.coordinator.done;
      const m = final.manifest;
      expect(m.secureAggregation?.survivors).to.have.length(5);
      expect(m.participants.every((p) => p.numExamples === null)).to.equal(true);
      const order = [...reported].sort((x, y) => (clientIdFor(x.taskId) < clientIdFor(y.taskId) ? -1 : 1));
      let n = 0;
      let loss = 0;
      let acc = 0;
      for (const r of order) {
        n += r.numExamples;
        loss += r.numExamples * r.loss;
        acc += r.numExamples * r.accuracy!;
      }
      expect(m.evaluation).to.deep.equal({ loss: loss / n, accuracy: acc / n, examples: 20, sites: 5, selected: 5 });
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
      await h.coordinator.stop();
    }
  });

  it('refuses bad evaluation reports with a specific status; a silent site costs the deadline, and the version commits with the reports it has', async () => {
    const runDir = await dir('fed-eval-refuse');
    const h = await startCoordinator(runDir, { total: 1 }, { evaluation: { enabled: true, deadlineMs: 4000 } });
    const c = rawClient(h.address);
    const { a, b, sa, sb, ta } = await twoSitesUploaded(c);
    try {
      const ea = (await sa.next((e) => !!e.evaluate)).evaluate!;
      const eb = (await sb.next((e) => !!e.evaluate)).evaluate!;
      expect(ea.version).to.equal(1);
      expect(ea.round).to.equal(1);
      // The candidate a site downloads is the one the task names.
      expect(await downloadCandidate(c, a.session_token, ea.task_id)).to.equal(ea.adapter_sha256);
      const ok = { session_token: a.session_token, task_id: ea.task_id, version: 1, num_examples: 10, loss: 0.5, accuracy: 0.75, has_accuracy: true };
      const I = grpc.status.INVALID_ARGUMENT;
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, loss: NaN }), I, 'loss is NaN; an evaluation loss must be finite');
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, loss: Infinity }), I, 'must be finite');
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, loss: -0.1 }), I, 'loss -0.1 outside 0..10000');
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, loss: 1e9 }), I, 'loss 1000000000 outside 0..10000');
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, accuracy: 1.5 }), I, 'accuracy 1.5 outside [0, 1]');
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, accuracy: NaN }), I, 'accuracy is NaN');
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, num_examples: 2 ** 21 + 1 }), I, 'num_examples 2097153 outside 0..2097152');
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, num_examples: 0 }), I, 'a declined evaluation (num_examples 0) carries no figures');
      const P = grpc.status.PERMISSION_DENIED;
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, task_id: 'e1-v1-nope' }), P, 'site site-a was not asked to evaluate task e1-v1-nope');
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, task_id: ta.task_id }), P, `not asked to evaluate task ${ta.task_id}`);
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, task_id: eb.task_id }), P, `site site-a was not asked to evaluate task ${eb.task_id}`);
      await expectRefused(runDir, () => downloadCandidate(c, a.session_token, eb.task_id), P, 'was not asked to evaluate');
      await expectRefused(runDir, () => reportEvaluation(c, { ...ok, session_token: 'f'.repeat(64) }), grpc.status.UNAUTHENTICATED, '');
      await expectRefused(
        runDir,
        () => reportEvaluation(c, { ...ok, version: 2 }),
        grpc.status.FAILED_PRECONDITION,
        `evaluation report is for version 2; task ${ea.task_id} evaluates version 1`,
      );
      await reportEvaluation(c, ok);
      // A second report with other content (the same one again is acknowledged: test/report-repeat.test.ts).
      await expectRefused(
        runDir,
        () => reportEvaluation(c, { ...ok, loss: 0.25 }),
        grpc.status.ALREADY_EXISTS,
        `evaluation task ${ea.task_id} already has a report`,
      );
      // Site b stays silent: the version commits at the evaluation deadline with site a's figures alone.
      const final = await h.coordinator.done;
      expect(final.manifest.evaluation).to.deep.equal({ loss: 0.5, accuracy: 0.75, examples: 10, sites: 1, selected: 2 });
      await expectRefused(
        runDir,
        () => reportEvaluation(c, { ...ok, session_token: b.session_token, task_id: eb.task_id }),
        grpc.status.FAILED_PRECONDITION,
        `evaluation task ${eb.task_id} (round 1, version 1) is closed`,
      );
    } finally {
      sa.stream.cancel();
      sb.stream.cancel();
      c.close();
      await h.coordinator.stop();
    }
  });

  it('asks a participant still inside its reconnect grace: its report came before its task stream did; it evaluates once the stream attaches', async () => {
    const runDir = await dir('fed-eval-grace');
    const h = await startCoordinator(runDir, { total: 1, reconnectGraceMs: 10_000 }, { evaluation: { enabled: true, deadlineMs: 20_000 } });
    const c = rawClient(h.address);
    const { a, b, sa, sb, ta, tb } = await twoSitesUploaded(c, false);
    let sb2: ReturnType<typeof taskEvents> | undefined;
    try {
      // Site b's stream drops; its report still arrives (a channel that reconnected before its stream did).
      sb.stream.cancel();
      while (h.coordinator.registry.isLive(clientIdFor('site-b'))) await new Promise((r) => setTimeout(r, 5));
      await reportMetrics(c, a.session_token, ta.task_id, 1);
      await reportMetrics(c, b.session_token, tb.task_id, 1);
      const ea = (await sa.next((e) => !!e.evaluate)).evaluate!;
      await reportEvaluation(c, {
        session_token: a.session_token,
        task_id: ea.task_id,
        version: 1,
        num_examples: 10,
        loss: 0.5,
        accuracy: 0,
        has_accuracy: false,
      });
      sb2 = taskEvents(c, b.session_token); // back: its evaluation task comes on the new stream
      const eb = (await sb2.next((e) => !!e.evaluate)).evaluate!;
      await reportEvaluation(c, {
        session_token: b.session_token,
        task_id: eb.task_id,
        version: 1,
        num_examples: 30,
        loss: 1,
        accuracy: 0,
        has_accuracy: false,
      });
      const final = await h.coordinator.done;
      expect(final.manifest.evaluation).to.deep.equal({ loss: 35 / 40, examples: 40, sites: 2, selected: 2 });
    } finally {
      sa.stream.cancel();
      sb2?.stream.cancel();
      c.close();
      await h.coordinator.stop();
    }
  });

  it('commits without figures when fewer than evaluation.minSites report examples (a declining site does not count)', async () => {
    const runDir = await dir('fed-eval-min');
    const h = await startCoordinator(runDir, { total: 1 }, { evaluation: { enabled: true, deadlineMs: 20_000, minSites: 2 } });
    // One site has figures, the other's trainer has no validation split (it declines at once: no deadline wait).
    const withEval = new ScriptedEvalTrainer(1, 10, () => ({ eval_loss: 0.25, eval_examples: 4 }));
    const without = new ScriptedEvalTrainer(1, 10, () => ({}));
    const declined: EvaluationDone[] = [];
    const clients = [
      new FederationClient({ address: h.address, name: 'm-a', trainer: withEval, identity: testIdentity('m-a') }),
      new FederationClient({ address: h.address, name: 'm-b', trainer: without, identity: testIdentity('m-b') }),
    ];
    clients[1].on('evaluated', (e) => declined.push(e));
    try {
      const started = Date.now();
      await Promise.all(clients.map((c) => c.run()));
      const final = await h.coordinator.done;
      expect(Date.now() - started, 'no site was waited for until the deadline').to.be.below(15_000);
      expect(declined).to.deep.equal([{ taskId: declined[0].taskId, version: 1, numExamples: 0, loss: 0 }]);
      expect(final.manifest.version).to.equal(1);
      expect(final.manifest.evaluation).to.equal(undefined);
      expect(final.manifest.metrics).to.not.have.property('eval.loss');
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
      await h.coordinator.stop();
    }
  });
});
