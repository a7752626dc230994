// The door over real gRPC: every field has a bound checked before any work or logging; an over-long value is
// refused quickly with a specific status and is never echoed into the reply or the log; malformed protobuf
// is INVALID_ARGUMENT on every RPC; the SDK refuses to send what the coordinator would refuse; the
// coordinator keeps serving (the connection is not stalled) and the round still commits.
import { loadFedtuneProto } from '../proto/load';
import { promises as fs } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { FederationClient } from '../client-sdk/client';
import { LIMITS, MAX_REQUEST_BYTES } from '../proto/limits';
import { ProtocolError } from '../proto/errors';
import { guardService } from '../coordinator/door';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import {
  ConstantTrainer,
  download,
  expectRefused,
  hello,
  join,
  nextTask,
  rawClient,
  reportMetrics,
  sendUpload,
  smallAdapter,
  snapshot,
  startCoordinator,
  tempDir,
  upload,
  uploadFrames,
  type Harness,
  type JoinedRaw,
} from './harness';
import { METHODS, MAX_LOG_LINE, capturingLogger, genericClient, joinWith, rawCall } from './door-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const MB = 1 << 20;
const long = (n: number, ch = 'x'): string => ch.repeat(n);

describe('the door: bounded fields, malformed messages, no echo (over gRPC)', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: RawClient;
  let raw: grpc.Client;
  let a: JoinedRaw;
  let b: JoinedRaw;
  let taskA: TrainTask__Output;
  let taskB: TrainTask__Output;
  const streams: grpc.ClientReadableStream<unknown>[] = [];
  const cap = capturingLogger();

  before(async () => {
    h = await startCoordinator(await tempDir('door'), {}, {}, { logger: cap.logger });
    c = rawClient(h.address);
    raw = genericClient(h.address);
    a = await join(c, 'site-a');
    b = await join(c, 'site-b');
    const ta = nextTask(c, a.session_token);
    const tb = nextTask(c, b.session_token);
    streams.push(ta.stream, tb.stream);
    [taskA, taskB] = await Promise.all([ta.task, tb.task]);
  });

  after(async () => {
    for (const s of streams) s.cancel();
    c.close();
    raw.close();
    await h.coordinator.stop(500);
    await fs.rm(h.runDir, { recursive: true, force: true });
  });

  /** Refused with `code`, quickly, with a short reply that does not echo `secret`; the run directory unchanged. */
  async function refusedQuickly(act: () => Promise<unknown>, code: status, message: string, secret?: string): Promise<void> {
    const t0 = Date.now();
    const err = await expectRefused(h.runDir, act, code, message);
    expect(Date.now() - t0, 'refused well within a deadline').to.be.below(5000);
    expect(err.details.length).to.be.below(700);
    if (secret) expect(err.details).to.not.contain(secret);
  }

  it('refuses a 1 MB client_name (RESOURCE_EXHAUSTED at the byte bound) and a 256 KB one, and the next call on the connection is answered at once', async () => {
    const huge = long(MB, 'n');
    await refusedQuickly(() => joinWith(c, 'site-x', { client_name: huge }), status.RESOURCE_EXHAUSTED, 'Join request of', huge.slice(0, 200));
    await refusedQuickly(
      () => joinWith(c, 'site-x', { client_name: long(256 * 1024, 'n') }),
      status.RESOURCE_EXHAUSTED,
      'exceeds the limit of 32768 bytes',
      long(200, 'n'),
    );
    const t0 = Date.now();
    await hello(c);
    expect(Date.now() - t0).to.be.below(2000);
  });

  it('refuses a client_name over 128 characters and one with characters outside the set with INVALID_ARGUMENT, describing it', async () => {
    await refusedQuickly(
      () => joinWith(c, 'site-x', { client_name: long(129) }),
      status.INVALID_ARGUMENT,
      'client_name is 129 characters long; at most 128',
      long(100),
    );
    await refusedQuickly(
      () => joinWith(c, 'site-x', { client_name: 'bad name\n' }),
      status.INVALID_ARGUMENT,
      'client_name "bad name\\n" must be 1-128 characters',
    );
  });

  it('refuses an over-long backend, too many or too long labels, and an over-long join token at Join', async () => {
    await refusedQuickly(() => joinWith(c, 'site-x', { backend: long(65) }), status.INVALID_ARGUMENT, 'backend is 65 characters long; at most 64');
    await refusedQuickly(() => joinWith(c, 'site-x', { backend: long(MB) }), status.RESOURCE_EXHAUSTED, 'exceeds the limit');
    const many = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 'v']));
    await refusedQuickly(() => joinWith(c, 'site-x', { labels: many }), status.INVALID_ARGUMENT, 'labels has 33 entries; at most 32');
    const flood = Object.fromEntries(Array.from({ length: 20_000 }, (_, i) => [`k${i}`, 'v']));
    await refusedQuickly(() => joinWith(c, 'site-x', { labels: flood }), status.RESOURCE_EXHAUSTED, 'exceeds the limit');
    await refusedQuickly(() => joinWith(c, 'site-x', { labels: { k: long(257) } }), status.INVALID_ARGUMENT, 'label k is 257 characters long; at most 256');
    await refusedQuickly(() => joinWith(c, 'site-x', { join_token: long(129) }), status.INVALID_ARGUMENT, 'join_token is 129 characters long');
  });

  it('refuses over-long metrics fields: a 1 MB backend never reaches the manifest', async () => {
    const report = (patch: Record<string, unknown>): Promise<void> =>
      new Promise((res, rej) =>
        c.ReportMetrics(
          {
            session_token: a.session_token,
            task_id: taskA.task_id,
            round: taskA.round,
            num_examples: 1,
            backend: 'test',
            metrics: { train_loss: 1 },
            ...patch,
          },
          (e) => (e ? rej(e) : res()),
        ),
      );
    await refusedQuickly(() => report({ backend: long(MB) }), status.RESOURCE_EXHAUSTED, 'ReportMetrics request of');
    await refusedQuickly(() => report({ backend: long(100) }), status.INVALID_ARGUMENT, 'backend is 100 characters long');
    await refusedQuickly(() => report({ task_id: long(LIMITS.id + 1) }), status.INVALID_ARGUMENT, `task_id is ${LIMITS.id + 1} characters long`);
    await refusedQuickly(
      () => report({ metrics: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`m${i}`, 1])) }),
      status.INVALID_ARGUMENT,
      '65 metrics; at most 64 are recorded',
    );
    await refusedQuickly(() => report({ metrics: { [long(65)]: 1 } }), status.INVALID_ARGUMENT, 'metric name is 65 characters long');
  });

  it('refuses an over-long Leave reason (the session stays) and an over-long session token on every call', async () => {
    const leave = (reason: string, token = b.session_token): Promise<void> =>
      new Promise((res, rej) => c.Leave({ session_token: token, reason }, (e) => (e ? rej(e) : res())));
    await refusedQuickly(() => leave(long(MB)), status.RESOURCE_EXHAUSTED, 'Leave request of');
    await refusedQuickly(() => leave(long(257)), status.INVALID_ARGUMENT, 'reason is 257 characters long; at most 256');
    await refusedQuickly(() => leave('bye', long(129)), status.INVALID_ARGUMENT, 'session_token is 129 characters long');
    expect(await download(c, b.session_token, 0)).to.be.above(2); // b's session is still there
  });

  it('refuses over-long upload header fields: a 1 MB task_id, a long tensor name, too many tensors or dimensions', async () => {
    const withHeader = (edit: (f: UploadFrame[]) => void): Promise<unknown> => {
      const f = uploadFrames({ who: a, task: taskA }, smallAdapter(0.01));
      edit(f);
      return upload(c, f);
    };
    await refusedQuickly(
      () => withHeader((f) => (f[0].header!.task_id = long(MB, 't'))),
      status.INVALID_ARGUMENT,
      `task_id is ${MB} characters long`,
      long(100, 't'),
    );
    await refusedQuickly(
      () => withHeader((f) => (f[0].header!.tensors!.tensors![0].name = long(300, 'q'))),
      status.INVALID_ARGUMENT,
      'tensor name is 300 characters long',
      long(100, 'q'),
    );
    const specs = Array.from({ length: LIMITS.tensors + 1 }, (_, i) => ({ name: `t${i}`, dtype: 'FLOAT32' as const, shape: [1] }));
    await refusedQuickly(
      () => withHeader((f) => (f[0].header!.tensors!.tensors = specs)),
      status.INVALID_ARGUMENT,
      `tensors has ${LIMITS.tensors + 1} entries`,
    );
    await refusedQuickly(
      () => withHeader((f) => (f[0].header!.tensors!.tensors![0].shape = [1, 1, 1, 1, 1, 1, 1, 1, 1])),
      status.INVALID_ARGUMENT,
      'has 9 entries; at most 8',
    );
    await refusedQuickly(() => withHeader((f) => (f[0].header!.sealed!.run_id = long(300))), status.INVALID_ARGUMENT, 'sealed.run_id is 300 characters long');
  });

  it('refuses over-long SecAgg fields before looking at the round', async () => {
    const adv = (patch: Record<string, unknown>): Promise<void> =>
      new Promise((res, rej) =>
        c.SecAggAdvertise(
          {
            session_token: a.session_token,
            task_id: taskA.task_id,
            round: 1,
            advertisement: {
              client_id: a.client_id,
              enc_public_key: Buffer.alloc(32),
              mask_public_key: Buffer.alloc(32),
              signature: Buffer.alloc(64),
              ...patch,
            },
          },
          (e) => (e ? rej(e) : res()),
        ),
      );
    await refusedQuickly(() => adv({ enc_public_key: Buffer.alloc(33) }), status.INVALID_ARGUMENT, 'advertisement.enc_public_key is 33 bytes; at most 32');
    await refusedQuickly(() => adv({ client_id: long(300) }), status.INVALID_ARGUMENT, 'advertisement.client_id is 300 characters long');
    const shares = Array.from({ length: LIMITS.secaggPeers + 1 }, () => ({
      to: 'c',
      ciphertext: Buffer.alloc(1),
      b_commitment: Buffer.alloc(32),
      sk_commitment: Buffer.alloc(32),
    }));
    const sk = (): Promise<void> =>
      new Promise((res, rej) =>
        c.SecAggShareKeys(
          {
            session_token: a.session_token,
            task_id: taskA.task_id,
            round: 1,
            share_keys: { from: a.client_id, seed_hash: Buffer.alloc(32), shares, signature: Buffer.alloc(64) },
          },
          (e) => (e ? rej(e) : res()),
        ),
      );
    await refusedQuickly(sk, status.INVALID_ARGUMENT, `share_keys.shares has ${LIMITS.secaggPeers + 1} entries`);
    const um = (): Promise<void> =>
      new Promise((res, rej) =>
        c.SecAggUnmask(
          {
            session_token: a.session_token,
            task_id: taskA.task_id,
            round: 1,
            response: { from: a.client_id, b_shares: [{ of: 'c', share: Buffer.alloc(65) }], sk_shares: [] },
          },
          (e) => (e ? rej(e) : res()),
        ),
      );
    await refusedQuickly(um, status.INVALID_ARGUMENT, 'b_shares.share is 65 bytes; at most 64');
  });

  it('answers malformed protobuf bytes with INVALID_ARGUMENT on every RPC (not INTERNAL), and oversized ones with RESOURCE_EXHAUSTED', async () => {
    const before = await snapshot(h.runDir);
    const garbage = Buffer.from([0x7f, 0x00]); // field 15 with wire type 7, which does not exist
    // "Every RPC" is the service's own list: a method added to the proto without a row here fails this line.
    expect([...METHODS].sort()).to.deep.equal(Object.keys(loadFedtuneProto().fedtune.v1.Federation.service).sort());
    for (const m of METHODS) {
      const r = await rawCall(raw, m, [garbage]);
      expect(status[r.code], `${m}: ${r.details}`).to.equal('INVALID_ARGUMENT');
      expect(r.details).to.contain(`malformed ${m} request`);
      const big = Buffer.alloc(Math.min(MAX_REQUEST_BYTES[m] + 1, 4 * MB - 1024), 0);
      if (MAX_REQUEST_BYTES[m] < 4 * MB - 1024) {
        const r2 = await rawCall(raw, m, [big]);
        expect(status[r2.code], `${m}: ${r2.details}`).to.equal('RESOURCE_EXHAUSTED');
        expect(r2.details).to.contain(`${m} request of ${big.length} bytes exceeds the limit of ${MAX_REQUEST_BYTES[m]} bytes`);
      }
    }
    expect(await snapshot(h.runDir)).to.deep.equal(before);
  });

  it('a service with an RPC that has no request size limit is refused at start, naming the RPC', () => {
    const svc = loadFedtuneProto().fedtune.v1.Federation.service;
    const extra = { ...svc, Unlisted: svc.Hello } as grpc.ServiceDefinition;
    expect(() => guardService(extra)).to.throw('RPC Unlisted has no request size limit in proto/limits.ts MAX_REQUEST_BYTES');
    expect(() => guardService(svc)).not.to.throw();
  });

  it('the SDK refuses to send what the coordinator would refuse, before any connection', async () => {
    const mk = (opts: Partial<ConstructorParameters<typeof FederationClient>[0]>): FederationClient =>
      new FederationClient({ address: h.address, name: 'site-sdk', trainer: new ConstantTrainer(0.1), ...opts });
    for (const [opts, msg] of [
      [{ name: long(129) }, 'client_name is 129 characters long'],
      [{ labels: { k: long(300) } }, 'label k is 300 characters long'],
      [{ labels: Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`k${i}`, 'v'])) }, 'labels has 40 entries'],
      [{ joinToken: long(200) }, 'join_token is 200 characters long'],
    ] as const) {
      let err: unknown;
      try {
        mk(opts as never);
      } catch (e) {
        err = e;
      }
      expect(err, msg).to.be.instanceOf(ProtocolError);
      expect((err as ProtocolError).code).to.equal(status.INVALID_ARGUMENT);
      expect((err as ProtocolError).message).to.contain(msg);
    }
  });

  it('wrote no long log line and none carrying a refused value; then the round still commits', async () => {
    for (const l of cap.lines) {
      expect(l.length, l.slice(0, 200)).to.be.below(MAX_LOG_LINE);
      expect(l).to.not.match(/x{200}|n{200}|q{200}|t{200}/);
    }
    await upload(c, uploadFrames({ who: a, task: taskA }, smallAdapter(0.25)));
    const okB = await sendUpload(c, uploadFrames({ who: b, task: taskB }, smallAdapter(0.75)));
    expect(okB.err).to.equal(undefined);
    await reportMetrics(c, a.session_token, taskA.task_id, taskA.round);
    await reportMetrics(c, b.session_token, taskB.task_id, taskB.round);
    const latest = async (): Promise<string> => (await fs.readFile(`${h.runDir}/latest`, 'utf8')).trim();
    for (let i = 0; i < 100 && (await latest()) !== 'v000001'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await latest()).to.equal('v000001');
  });
});
