// rounds.reconnectGraceMs with the real SDK: a site whose connection is cut while its task runs (during training,
// during the evaluation after its upload, during a federated evaluation) reopens its task stream at once while the
// task runs on, so the coordinator has it back while the task runs. The task then outlasts the grace, and its
// update, its report and its evaluation report still count: the version and every figure are the same bits as a run
// without the cut. Real coordinator on a tiny Llama directory, real training, real gRPC; site-b talks to it through a
// TCP relay that cuts its connections (its gRPC channel connects again through the relay). A cut during a report
// call (ReportMetrics, ReportEvaluation), before it lands or after, loses nothing and counts it once. And a
// `fedtune-site` process cut mid-round exits by itself once the run is over: no stream or timer of the reconnect is
// left behind.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as path from 'node:path';
import { clientIdFor } from '../coordinator/registry';
import { expectRanOnce, SdkRig, SITE_B, type Phase } from './reconnect-sdk-kit';
import { tcpRelay } from './tcp-relay';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SITE_CLI = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');

describe('reconnect grace with the SDK: a cut during a task (real coordinator, training and gRPC)', function () {
  this.timeout(180_000);
  const rig = new SdkRig();
  before(() => rig.setUp('reconnect-sdk'));
  after(() => rig.tearDown());

  /** The run without a cut, and one cut in `cuts`: site-b counted, the same bits as without the cut. */
  async function expectCounted(cuts: readonly Phase[]): Promise<void> {
    await rig.plain();
    const r = await rig.oneRound(cuts.join('-'), cuts);
    // Back while each task still ran, having reopened its stream under the same session (no second join); the
    // task ran once (the coordinator's re-send of the open task on the new stream was not run again), nothing failed.
    expect(r.b.backInTask).to.deep.equal(cuts);
    expect({ trains: r.b.trains, evaluations: r.b.evaluations, joined: r.b.joined, failed: r.b.failed, evaluated: r.b.evaluated }).to.deep.equal({
      trains: 1,
      evaluations: 2,
      joined: 1,
      failed: [],
      evaluated: 1,
    });
    expect(r.b.reconnects).to.be.at.least(cuts.length);
    // Its update, its report and its evaluation report counted: the version, the sites' figures and the federated
    // evaluation are those of the run without the cut, bit for bit.
    await rig.expectSameBits(r);
  }

  it('cut during training: the stream is back while it trains; its update and report count', () => expectCounted(['train']));

  it('cut during the evaluation after its upload: its report counts', () => expectCounted(['localEval']));

  it('cut during training and again during the federated evaluation: its update, report and evaluation report count', () =>
    expectCounted(['train', 'fedEval']));

  /**
   * Site-b's connection cut during its ReportMetrics call. The relay spots the call by its bytes (metric names travel
   * in clear only in a MetricsReport). 'holdReplies': the report lands, and its answer is held until the coordinator
   * recorded it, then the connection is cut: the site cannot know it landed. 'cut': the report never reaches the
   * coordinator. Either way the SDK sends it again over its reconnected channel, and the round commits with site-b's
   * report, once, the same bits as without the cut, long before the round's deadline (120 s).
   */
  async function expectReportCounted(act: 'cut' | 'holdReplies'): Promise<void> {
    await rig.plain();
    let cutAt = 0;
    const r = await rig.oneRound(`report-${act}`, [], {
      arm: (h, relay) =>
        void relay.onSiteBytes(/train_loss/, act).then(async () => {
          if (act === 'holdReplies') await new Promise((landed) => h.coordinator.once('metricsReported', landed));
          relay.cutAll();
          cutAt = Date.now();
        }),
    });
    expect(cutAt, 'the relay saw the report call').to.be.above(0);
    expectRanOnce(r);
    expect(r.b.resent, 'the report was sent again').to.be.at.least(1);
    expect(r.committedAt - cutAt, 'committed without waiting for the deadline').to.be.below(30_000);
    await rig.expectSameBits(r);
  }

  it('cut during its ReportMetrics call after the report landed (the answer lost): sent again, acknowledged, counted once', () =>
    expectReportCounted('holdReplies'));

  it('cut during its ReportMetrics call before the report arrived: sent again, counted, the round does not wait for its deadline', () =>
    expectReportCounted('cut'));

  /**
   * Site-b's connection cut during its ReportEvaluation call, the federated evaluation's report. The relay is armed
   * when site-b's federated evaluation starts (after the candidate's download, whose request names the same task)
   * on the evaluation task's id, which the report carries in clear: 'cut', it never reaches the coordinator;
   * 'holdReplies', it lands and its answer is held until the coordinator accepted it, then the connection is cut.
   * Either way the SDK sends it again over its reconnected channel; the coordinator accepts it once (a repeat is
   * acknowledged), and the version's federated evaluation record is that of the run without the cut, bit for bit.
   */
  async function expectEvaluationCounted(act: 'cut' | 'holdReplies'): Promise<void> {
    await rig.plain();
    let cutAt = 0;
    let accepted = (): void => undefined;
    const landed = new Promise<void>((r) => (accepted = r));
    const r = await rig.oneRound(`evaluation-${act}`, [], {
      onFedEval: (relay) =>
        void relay.onSiteBytes(new RegExp(`e1-v1-[0-9a-f]{8}-${SITE_B}`), act).then(async () => {
          if (act === 'holdReplies') await landed;
          relay.cutAll();
          cutAt = Date.now();
        }),
      onLog: (msg) => msg === 'evaluation report accepted' && accepted(),
    });
    expect(cutAt, 'the relay saw the evaluation report call').to.be.above(0);
    expectRanOnce(r);
    expect(r.b.resent, 'the evaluation report was sent again').to.be.at.least(1);
    expect(r.bEvalReports.accepted, 'accepted once').to.equal(1);
    if (act === 'cut') expect(r.bEvalReports.repeated, 'the first copy never arrived').to.equal(0);
    else expect(r.bEvalReports.repeated, 'the copy sent again was a repeat').to.be.at.least(1);
    expect(r.manifest.evaluation).to.include({ sites: 2, selected: 2 });
    expect(r.committedAt - cutAt, 'committed without waiting for the evaluation deadline').to.be.below(30_000);
    await rig.expectSameBits(r);
  }

  it('cut during its ReportEvaluation call after the report landed (the answer lost): sent again, acknowledged, counted once', () =>
    expectEvaluationCounted('holdReplies'));

  it('cut during its ReportEvaluation call before the report arrived: sent again, counted once, the same evaluation record', () =>
    expectEvaluationCounted('cut'));

  it('a site process cut when it is selected reconnects, counts, and exits by itself once the run is over (under its connection flags)', async () => {
    const h = await rig.coordinator('process');
    const tmp = rig.tmp;
    const relay = await tcpRelay(h.address);
    try {
      h.coordinator.on('clientSelected', (e: { clientId: string }) => e.clientId === clientIdFor('site-b') && relay.cuts() === 0 && relay.cutAll());
      // execFile settles only when the process has exited: a stream or timer left behind would keep it alive.
      const site = (name: string, address: string, data: number, extra: string[] = []): Promise<{ stdout: string; stderr: string }> =>
        promisify(execFile)(
          process.execPath,
          [SITE_CLI, 'client', ...['--address', address, '--name', name, '--model', path.join(tmp, 'model'), '--data', path.join(tmp, `${data}.jsonl`)]].concat(
            ['--val-fraction', '0.25', '--identity', path.join(tmp, `${name}.id.json`), '--progress', 'off'],
            extra,
          ),
          { timeout: 120_000 },
        );
      // site-b runs under its own connection flags (site-connection-flags.test.ts), site-a under the SDK's defaults.
      const flags = ['--keepalive-ms', '5000', '--keepalive-timeout-ms', '20000', '--report-deadline-ms', '15000'];
      const [a, b] = await Promise.all([site('site-a', h.address, 0), site('site-b', relay.address, 1, flags)]);
      const json = (out: string): { msg: string; connection?: unknown }[] =>
        out
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { msg: string });
      const lines = json(b.stdout);
      const starting = (ls: { msg: string; connection?: unknown }[]): unknown => ls.find((l) => l.msg === 'site starting')?.connection;
      expect(starting(lines)).to.deep.equal({ keepaliveMs: 5000, keepaliveTimeoutMs: 20000, reportDeadlineMs: 15000 });
      expect(starting(json(a.stdout))).to.deep.equal({ keepaliveMs: 10000, keepaliveTimeoutMs: 25000, reportDeadlineMs: 20000 });
      expect(relay.cuts()).to.be.at.least(1);
      expect(lines.filter((l) => l.msg === 'connection lost; retrying').length).to.be.at.least(1);
      expect(lines.filter((l) => l.msg === 'joined')).to.have.length(1); // the stream reopened under the same session
      const final = await h.coordinator.done;
      expect(final.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['site-a', 'site-b']);
      expect(final.manifest.evaluation).to.include({ sites: 2, selected: 2 });
    } finally {
      relay.close();
      await h.coordinator.stop(500);
    }
  });
});
