// Bad input over real gRPC: every malformed, forged, out-of-round or non-finite message gets its own status
// and message, the run directory is untouched, and the coordinator keeps serving (the round then commits).
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { promises as fs } from 'node:fs';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import type { NamedTensor } from '../proto/tensors';
import {
  PREFIX,
  rawClient,
  join,
  nextTask,
  sendUpload,
  smallAdapter,
  snapshot,
  startCoordinator,
  tempDir,
  uploadFrames,
  type Harness,
  type JoinedRaw,
} from './harness';
import { twoSitesInRound, type TwoSitesInRound } from './sites-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const delta = (v = 0.01): NamedTensor[] => smallAdapter(v);

describe('rejections over gRPC (nothing persisted, coordinator keeps serving)', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: RawClient;
  let a: JoinedRaw;
  let b: JoinedRaw;
  let taskA: TrainTask__Output;
  let taskB: TrainTask__Output;
  let round: TwoSitesInRound;

  before(async () => {
    h = await startCoordinator(await tempDir('reject'), {}, { transport: { maxUploadBytes: 4096, chunkBytes: 1 << 20 } });
    round = await twoSitesInRound(h);
    ({ c, a, b, taskA, taskB } = round);
  });

  after(() => round.close());

  async function expectRejected(frames: UploadFrame[], code: status, message: string): Promise<void> {
    const before = await snapshot(h.runDir);
    const { err } = await sendUpload(c, frames);
    expect(err, 'the upload should have been rejected').to.not.equal(undefined);
    expect(status[err!.code]).to.equal(status[code]);
    expect(err!.details).to.contain(message);
    expect(await snapshot(h.runDir)).to.deep.equal(before);
  }

  const good = (d: NamedTensor[] = delta()): UploadFrame[] => uploadFrames({ who: a, task: taskA }, d);

  it('refuses a protocol version mismatch at Join with FAILED_PRECONDITION', async () => {
    const err = await join(c, 'site-x', 99).catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).code).to.equal(status.FAILED_PRECONDITION);
    expect((err as grpc.ServiceError).details).to.contain('protocol version 99');
  });

  it('refuses an unknown session token with UNAUTHENTICATED', () =>
    expectRejected(uploadFrames({ who: a, token: 'f'.repeat(64), task: taskA }, delta()), status.UNAUTHENTICATED, 'unknown session token'));

  it('refuses a protocol version mismatch in the upload header', () =>
    expectRejected(uploadFrames({ who: a, task: taskA, version: 99 }, delta()), status.FAILED_PRECONDITION, 'protocol version 99'));

  it("refuses an upload for another client's task with PERMISSION_DENIED", () =>
    expectRejected(uploadFrames({ who: a, task: taskB }, delta()), status.PERMISSION_DENIED, 'not assigned to client'));

  it('refuses a wrong round with FAILED_PRECONDITION', () =>
    expectRejected(uploadFrames({ who: a, task: taskA, round: 7 }, delta()), status.FAILED_PRECONDITION, 'the message says round 7'));

  it('refuses an update against another base version', () =>
    expectRejected(uploadFrames({ who: a, task: taskA, baseVersion: 3 }, delta()), status.FAILED_PRECONDITION, 'against version 3'));

  it('refuses num_examples 0', () => expectRejected(uploadFrames({ who: a, task: taskA, numExamples: 0 }, delta()), status.INVALID_ARGUMENT, 'num_examples 0'));

  it('refuses a wrong shape, naming the tensor', () => {
    const d = delta();
    d[1] = { ...d[1], shape: [2, 4] };
    return expectRejected(good(d), status.INVALID_ARGUMENT, `${PREFIX}.lora_B.weight has shape [2,4]`);
  });

  it('refuses an unexpected tensor and a missing one', async () => {
    const extra = [...delta(), { name: 'zzz.extra', dtype: 'float32' as const, shape: [1], data: new Float32Array(1) }];
    await expectRejected(good(extra), status.INVALID_ARGUMENT, 'unexpected tensor zzz.extra');
    await expectRejected(good(delta().slice(0, 1)), status.INVALID_ARGUMENT, 'missing tensors');
  });

  it('refuses a dtype other than FLOAT32', () => {
    const frames = good();
    frames[0].header!.tensors!.tensors![0].dtype = 'DTYPE_UNSPECIFIED';
    return expectRejected(frames, status.INVALID_ARGUMENT, 'only FLOAT32');
  });

  it('refuses NaN and Inf, naming tensor and element', async () => {
    const n = delta();
    n[0].data[4] = NaN;
    await expectRejected(good(n), status.INVALID_ARGUMENT, `${PREFIX}.lora_A.weight holds NaN at element 4`);
    const i = delta();
    i[1].data[0] = -Infinity;
    await expectRejected(good(i), status.INVALID_ARGUMENT, 'holds -Infinity at element 0');
  });

  it('refuses a truncated stream, a missing trailer and a tampered chunk with DATA_LOSS', async () => {
    const f = good();
    const short = Buffer.from(f[1].chunk as Buffer).subarray(0, 20);
    await expectRejected([f[0], { chunk: short }, f[2]], status.DATA_LOSS, 'sealed chunk 0 fails authentication');
    await expectRejected([f[0], f[2]], status.DATA_LOSS, 'sealed stream truncated: 0 of 1 chunks arrived');
    await expectRejected([f[0], f[1]], status.DATA_LOSS, 'without its trailer');
    const tampered = Buffer.from(f[1].chunk as Buffer);
    tampered[0] ^= 1;
    await expectRejected([f[0], { chunk: tampered }, f[2]], status.DATA_LOSS, 'sealed chunk 0 fails authentication');
  });

  it('refuses chunks beyond the declared count with OUT_OF_RANGE', () => {
    const f = good();
    return expectRejected([f[0], f[1], { chunk: Buffer.alloc(20) }, f[2]], status.OUT_OF_RANGE, 'more than the 1 chunks its header declares');
  });

  it('refuses an upload larger than transport.maxUploadBytes with RESOURCE_EXHAUSTED', () => {
    const big = delta();
    big[0] = { ...big[0], shape: [2, 1000], data: new Float32Array(2000) };
    return expectRejected(good(big), status.RESOURCE_EXHAUSTED, 'exceeds the limit of 4096');
  });

  it('refuses a chunk before the header, an empty frame and a stream without a header', async () => {
    const f = good();
    await expectRejected([f[1], f[0], f[2]], status.INVALID_ARGUMENT, 'before the upload header');
    await expectRejected([{} as UploadFrame], status.INVALID_ARGUMENT, 'empty upload frame');
    await expectRejected([], status.INVALID_ARGUMENT, 'without a header');
  });

  it('refuses a download of a version that does not exist with NOT_FOUND', async () => {
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const call = c.DownloadAdapter({ session_token: a.session_token, version: 42 });
      call.on('data', (_f: TensorFrame__Output) => undefined);
      call.on('error', resolve);
    });
    expect(err.code).to.equal(status.NOT_FOUND);
    expect(err.details).to.contain('version 42');
  });

  it('refuses a non-finite metric', async () => {
    const err = await new Promise<grpc.ServiceError | null>((resolve) =>
      c.ReportMetrics(
        { session_token: a.session_token, task_id: taskA.task_id, round: taskA.round, num_examples: 1, backend: 'x', metrics: { train_loss: NaN } },
        (e) => resolve(e),
      ),
    );
    expect(err?.code).to.equal(status.INVALID_ARGUMENT);
    expect(err?.details).to.contain('train_loss');
  });

  it('refuses a client that was not selected with PERMISSION_DENIED, whatever task id it names', async () => {
    const late = await join(c, 'site-c'); // joined after selection: no task this round
    await expectRejected(
      uploadFrames({ who: late, task: taskA, taskId: `r1-a1-${late.client_id}` }, delta()),
      status.PERMISSION_DENIED,
      'client site-c was not selected for task',
    );
    await expectRejected(
      uploadFrames({ who: late, task: taskA }, delta()),
      status.PERMISSION_DENIED,
      `client site-c was not selected for task ${taskA.task_id}`,
    );
  });

  it('refuses num_examples above 2^21', () =>
    expectRejected(uploadFrames({ who: a, task: taskA, numExamples: 2 ** 21 + 1 }, delta()), status.INVALID_ARGUMENT, `num_examples ${2 ** 21 + 1} outside`));

  it('refuses a trailer first and a second header with INVALID_ARGUMENT', async () => {
    const f = good();
    await expectRejected([f[2], f[0], f[1]], status.INVALID_ARGUMENT, 'the first upload frame must be the header: a trailer arrived');
    await expectRejected([f[0], f[1], f[0], f[2]], status.INVALID_ARGUMENT, 'a second upload header');
  });

  it('refuses a trailer whose chunk count differs with DATA_LOSS', () => {
    const f = good();
    return expectRejected([f[0], f[1], { trailer: { ...f[2].trailer!, chunk_count: 2 } }], status.DATA_LOSS, 'trailer counts 2 chunks; 1 arrived');
  });

  it('refuses at upload time a finite update the strategy could not aggregate (beyond the fixed-point range)', () => {
    const d = delta();
    d[0].data[3] = 200;
    return expectRejected(good(d), status.INVALID_ARGUMENT, 'update refused by the fedavg strategy');
  });

  it('frees the task when a client cancels its upload mid-stream', async () => {
    const before = await snapshot(h.runDir);
    const f = good();
    await new Promise<void>((resolve) => {
      const call = c.UploadUpdate(() => resolve());
      call.write(f[0]);
      setTimeout(() => call.cancel(), 100);
    });
    await new Promise((r) => setTimeout(r, 100));
    // Were the task still 'receiving', this would be ALREADY_EXISTS ("already in progress").
    const d = delta();
    d[0] = { ...d[0], shape: [3, 2] };
    await expectRejected(good(d), status.INVALID_ARGUMENT, 'has shape [3,2]');
    expect(await snapshot(h.runDir)).to.deep.equal(before);
  });

  it('refuses an unknown session on every call with UNAUTHENTICATED', async () => {
    const bad = 'e'.repeat(64);
    const streamErr = await new Promise<grpc.ServiceError>((resolve) => c.StreamTasks({ session_token: bad }).on('error', resolve));
    expect(streamErr.code).to.equal(status.UNAUTHENTICATED);
    const dlErr = await new Promise<grpc.ServiceError>((resolve) => c.DownloadAdapter({ session_token: bad, version: 0 }).on('error', resolve));
    expect(dlErr.code).to.equal(status.UNAUTHENTICATED);
    const mErr = await new Promise<grpc.ServiceError | null>((resolve) =>
      c.ReportMetrics({ session_token: bad, task_id: taskA.task_id, round: 1, num_examples: 1, backend: 'x', metrics: {} }, (e) => resolve(e)),
    );
    expect(mErr?.code).to.equal(status.UNAUTHENTICATED);
    expect(mErr?.details).to.contain('unknown session token');
  });

  it('still accepts valid uploads, refuses a second one with ALREADY_EXISTS, and commits the round', async () => {
    const okA = await sendUpload(c, good(delta(0.25)));
    expect(okA.err).to.equal(undefined);
    expect(okA.ok!.task_id).to.equal(taskA.task_id);
    await expectRejected(good(delta(0.5)), status.ALREADY_EXISTS, 'already has an accepted update');
    const okB = await sendUpload(c, uploadFrames({ who: b, task: taskB }, delta(0.75)));
    expect(okB.err).to.equal(undefined);
    const report = (tok: string, t: TrainTask__Output): Promise<void> =>
      new Promise((res, rej) =>
        c.ReportMetrics({ session_token: tok, task_id: t.task_id, round: t.round, num_examples: 10, backend: 'test', metrics: { train_loss: 1 } }, (e) =>
          e ? rej(e) : res(),
        ),
      );
    await report(a.session_token, taskA);
    await report(b.session_token, taskB);
    const latest = async (): Promise<string> => (await fs.readFile(`${h.runDir}/latest`, 'utf8')).trim();
    for (let i = 0; i < 100 && (await latest()) !== 'v000001'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await latest()).to.equal('v000001');
    const ck = await h.coordinator.store.read(1);
    // Equal weights: the mean of 0.25 and 0.75 on the fixed-point grid.
    expect(Array.from(ck.adapter[0].data)).to.deep.equal(new Array(6).fill(0.5));
  });
});

describe('an upload that outlives its deadline', function () {
  this.timeout(30_000);
  it('is refused with DEADLINE_EXCEEDED and nothing is committed', async () => {
    const h = await startCoordinator(await tempDir('deadline'), { minClients: 1, minUpdates: 1, deadlineMs: 1500, maxAttempts: 5 });
    const c = rawClient(h.address);
    try {
      const a = await join(c, 'late');
      const { task, stream } = nextTask(c, a.session_token);
      const t = await task;
      const frames = uploadFrames({ who: a, task: t }, delta());
      const result = new Promise<grpc.ServiceError | null>((resolve) => {
        const call = c.UploadUpdate((err) => resolve(err));
        call.write(frames[0]);
        setTimeout(() => {
          call.write(frames[1]);
          call.write(frames[2]);
          call.end();
        }, 2500);
      });
      const err = await result;
      expect(err?.code).to.equal(status.DEADLINE_EXCEEDED);
      expect(err?.details).to.contain('closed before the upload completed');
      expect((await fs.readFile(`${h.runDir}/latest`, 'utf8')).trim()).to.equal('v000000');
      stream.cancel();
    } finally {
      c.close();
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });
});
