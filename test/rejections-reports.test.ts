// The rejection rows of the README that had no test: metric count and name, an upload while another is in
// progress for the same task, and a download of a committed version whose file was damaged on disk.
import { status } from '@grpc/grpc-js';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { encodePruned, PRUNED_FILE } from '../coordinator/checkpoints/pruned-record';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import {
  refusal,
  reportMetrics,
  sendUpload,
  smallAdapter,
  snapshot,
  startCoordinator,
  tempDir,
  uploadFrames,
  download,
  type Harness,
  type JoinedRaw,
} from './harness';
import { twoSitesInRound, type TwoSitesInRound } from './sites-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('rejections over gRPC: metrics, uploads in progress, damaged versions', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: RawClient;
  let a: JoinedRaw;
  let b: JoinedRaw;
  let taskA: TrainTask__Output;
  let taskB: TrainTask__Output;
  let round: TwoSitesInRound;

  before(async () => {
    h = await startCoordinator(await tempDir('reject-reports'), {}, { transport: { chunkBytes: 1 << 20 } });
    round = await twoSitesInRound(h);
    ({ c, a, b, taskA, taskB } = round);
  });

  after(() => round.close());

  it('refuses more than 64 metrics with INVALID_ARGUMENT, and accepts 64', async () => {
    const before = await snapshot(h.runDir);
    const many = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`m${i}`, i]));
    const err = await refusal(reportMetrics(c, a.session_token, taskA.task_id, taskA.round, many));
    expect(status[err.code]).to.equal('INVALID_ARGUMENT');
    expect(err.details).to.contain('65 metrics; at most 64');
    expect(await snapshot(h.runDir)).to.deep.equal(before);
    await reportMetrics(c, a.session_token, taskA.task_id, taskA.round, Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`m${i}`, i])));
  });

  it('refuses a metric name outside [A-Za-z0-9_.:/-]{1,64} with INVALID_ARGUMENT', async () => {
    for (const bad of ['', 'has space', 'x'.repeat(65), 'semi;colon']) {
      const err = await refusal(reportMetrics(c, a.session_token, taskA.task_id, taskA.round, { [bad]: 1 }));
      expect(status[err.code], JSON.stringify(bad)).to.equal('INVALID_ARGUMENT');
      expect(err.details).to.contain('metric name');
    }
  });

  it('refuses a second upload while the first is still arriving with ALREADY_EXISTS', async () => {
    const frames = uploadFrames({ who: a, task: taskA }, smallAdapter(0.01));
    const first = c.UploadUpdate(() => undefined);
    first.write(frames[0]);
    first.write(frames[1]);
    await new Promise((r) => setTimeout(r, 200));
    const { err } = await sendUpload(c, frames);
    first.cancel();
    expect(err, 'the second upload should have been refused').to.not.equal(undefined);
    expect(status[err!.code]).to.equal('ALREADY_EXISTS');
    expect(err!.details).to.contain('in progress');
  });

  it('refuses a download of an older version whose adapter file was damaged with DATA_LOSS, naming no path', async () => {
    // Commit round 1 so that v0 is no longer the latest (the latest is served from memory, checked at commit).
    // Waited for by the coordinator's own event, not by the latest file on disk: the store moves the file before
    // the engine takes the new version as its latest (the directory's fsync, then the commit's follow-ups), and a
    // download of v0 in that window is still served from memory, damage or not. Under load the window grew long
    // enough for the damaged download to succeed once.
    const committed = new Promise<void>((r) => h.coordinator.on('roundCommitted', (e) => e.version === 1 && r()));
    expect((await sendUpload(c, uploadFrames({ who: a, task: taskA }, smallAdapter(0.25)))).err).to.equal(undefined);
    expect((await sendUpload(c, uploadFrames({ who: b, task: taskB }, smallAdapter(0.75)))).err).to.equal(undefined);
    await reportMetrics(c, b.session_token, taskB.task_id, taskB.round);
    await committed;
    expect(h.coordinator.engine.latest!.manifest.version).to.equal(1);
    expect((await fs.readFile(path.join(h.runDir, 'latest'), 'utf8')).trim()).to.equal('v000001');
    expect(await download(c, a.session_token, 0)).to.be.greaterThan(0);
    const file = path.join(h.runDir, 'versions', 'v000000', 'adapter_model.safetensors');
    const bytes = await fs.readFile(file);
    bytes[bytes.length - 1] ^= 0x01;
    await fs.writeFile(file, bytes);
    const err = await refusal(download(c, a.session_token, 0));
    expect(status[err.code]).to.equal('DATA_LOSS');
    expect(err.details).to.contain('version 0');
    expect(err.details).to.not.contain(h.runDir);
    expect(err.details).to.not.match(/(^|[\s:'"])\//); // names the file inside the run (v000000/…), never an absolute path
  });

  it('refuses a download of a version whose adapter retention pruned (recorded, not damage) with FAILED_PRECONDITION, naming no path', async () => {
    const dir = path.join(h.runDir, 'versions', 'v000000');
    const manifestSha256 = createHash('sha256')
      .update(await fs.readFile(path.join(dir, 'manifest.json')))
      .digest('hex');
    // An unsigned record suffices for the read path: verify is what checks its signature (test/retention.test.ts).
    await fs.writeFile(
      path.join(dir, PRUNED_FILE),
      encodePruned({ version: 0, manifestSha256, files: ['adapter_model.safetensors'], reason: 'test' }, undefined),
    );
    await fs.rm(path.join(dir, 'adapter_model.safetensors'));
    const err = await refusal(download(c, a.session_token, 0));
    expect(status[err.code]).to.equal('FAILED_PRECONDITION');
    expect(err.details).to.match(/^version 0 cannot be sent: v000000: its adapter was removed by the run's retention policy/);
    expect(err.details).to.not.contain(h.runDir);
  });
});
