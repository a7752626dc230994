// Tier A trust for uploads, over real gRPC on loopback: every update is sealed to the coordinator's X25519 key
// (ChaCha20-Poly1305 chunks whose nonce carries index and final flag) under a header the client signs.
// Forged signatures, altered headers, tampered, reordered, dropped or spliced chunks, wrong checkpoints,
// stale rounds and replays each get their own status and message and leave the run directory untouched;
// a resumed upload is answered without being counted twice, and both rounds still commit.
import { promises as fs } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import nacl from 'tweetnacl';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import {
  expectRefused,
  join,
  rawClient,
  reportMetrics,
  settled,
  smallAdapter,
  snapshot,
  startCoordinator,
  tempDir,
  testIdentity,
  upload,
  uploadFrames,
  type Harness,
  type JoinedRaw,
  type UploadHeaderFields,
} from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A task stream that keeps every TrainTask, so later rounds can be awaited. */
function taskFeed(c: RawClient, token: string): { stream: grpc.ClientReadableStream<TaskEvent__Output>; round: (n: number) => Promise<TrainTask__Output> } {
  const tasks: TrainTask__Output[] = [];
  const stream = c.StreamTasks({ session_token: token });
  stream.on('error', () => undefined);
  stream.on('data', (ev: TaskEvent__Output) => ev.train && tasks.push(ev.train));
  return {
    stream,
    async round(n) {
      for (let i = 0; i < 500 && !tasks.some((t) => t.round === n); i++) await sleep(10);
      const t = tasks.find((x) => x.round === n);
      if (!t) throw new Error(`no task for round ${n}`);
      return t;
    },
  };
}

describe('trust: sealed, signed uploads', function () {
  this.timeout(30_000);
  let h: Harness;
  let c: RawClient;
  let a: JoinedRaw;
  let b: JoinedRaw;
  let feedA: ReturnType<typeof taskFeed>;
  let feedB: ReturnType<typeof taskFeed>;
  let taskA: TrainTask__Output;
  let taskB: TrainTask__Output;
  let acceptedA: UploadFrame[]; // round 1's accepted upload of site-a, replayed later
  let round1A: TrainTask__Output;
  const refused = (frames: UploadFrame[], code: status, message: string): Promise<grpc.ServiceError> =>
    expectRefused(h.runDir, () => upload(c, frames), code, message);
  /** site-a's upload in chunks of 16 bytes: the 56-byte delta makes 4 chunks, frames [header, c0..c3, trailer]. */
  const framesA = (o: Partial<UploadHeaderFields> = {}, value = 0.01): UploadFrame[] =>
    uploadFrames({ who: a, task: taskA, chunkBytes: 16, ...o }, smallAdapter(value));

  before(async () => {
    h = await startCoordinator(await tempDir('trust-upload'), { total: 2 });
    await settled(h);
    c = rawClient(h.address);
    a = await join(c, 'site-a');
    b = await join(c, 'site-b');
    feedA = taskFeed(c, a.session_token);
    feedB = taskFeed(c, b.session_token);
    [taskA, taskB] = await Promise.all([feedA.round(1), feedB.round(1)]);
  });

  after(async () => {
    feedA.stream.cancel();
    feedB.stream.cancel();
    c.close();
    await h.coordinator.stop(500);
    await fs.rm(h.runDir, { recursive: true, force: true });
  });

  it('seals in several chunks (the premise of the chunk tests)', () => {
    const f = framesA();
    expect(f.length).to.equal(6);
    expect(f[0].header!.sealed!.chunk_count).to.equal(4);
  });

  it('refuses an upload signed by another key with UNAUTHENTICATED', () =>
    refused(
      framesA({ signWith: testIdentity('mallory').secretKey }),
      status.UNAUTHENTICATED,
      'upload signature does not verify with the enrolled key of site-a',
    ));

  it('refuses a header altered after signing with UNAUTHENTICATED', async () => {
    const more = framesA();
    more[0].header!.num_examples = 11;
    await refused(more, status.UNAUTHENTICATED, 'upload signature does not verify');
    const otherKey = framesA();
    otherKey[0].header!.sealed!.ephemeral_public_key = nacl.box.keyPair().publicKey;
    await refused(otherKey, status.UNAUTHENTICATED, 'upload signature does not verify');
  });

  it('refuses an envelope bound to another client with FAILED_PRECONDITION', () => {
    const f = framesA();
    f[0].header!.sealed!.client_id = b.client_id;
    return refused(f, status.FAILED_PRECONDITION, 'sealed envelope is bound to');
  });

  it('refuses a tampered chunk with DATA_LOSS', () => {
    const f = framesA();
    const chunk = Buffer.from(f[2].chunk as Buffer);
    chunk[3] ^= 0x40;
    f[2] = { chunk };
    return refused(f, status.DATA_LOSS, 'sealed chunk 1 fails authentication');
  });

  it('refuses reordered chunks with DATA_LOSS', () => {
    const f = framesA();
    return refused([f[0], f[2], f[1], f[3], f[4], f[5]], status.DATA_LOSS, 'sealed chunk 1 arrived at position 0');
  });

  it('refuses a stream truncated before the trailer, or without it, with DATA_LOSS', async () => {
    const f = framesA();
    await refused([f[0], f[1], f[2], f[3], f[5]], status.DATA_LOSS, 'sealed stream truncated: 3 of 4 chunks arrived');
    await refused([f[0], f[1], f[2], f[3]], status.DATA_LOSS, 'sealed stream truncated: 3 of 4 chunks arrived');
  });

  it('refuses a dropped middle chunk with DATA_LOSS', () => {
    const f = framesA();
    return refused([f[0], f[1], f[3], f[4], f[5]], status.DATA_LOSS, 'sealed chunk 2 arrived at position 1');
  });

  it('refuses a chunk spliced in from another sealing of the same delta with DATA_LOSS', () => {
    const f = framesA();
    const g = framesA();
    return refused([f[0], f[1], g[2], f[3], f[4], f[5]], status.DATA_LOSS, 'sealed chunk 1 fails authentication');
  });

  it('refuses an update against another checkpoint with FAILED_PRECONDITION', () =>
    refused(framesA({ baseManifestSha256: 'ab'.repeat(32) }), status.FAILED_PRECONDITION, 'update is against checkpoint abababababababab'));

  it('refuses an upload sealed to another coordinator key with FAILED_PRECONDITION', async () => {
    const other = { keyId: 'feedfacefeedface', boxPublicKey: nacl.box.keyPair().publicKey };
    await refused(
      framesA({ who: { ...a, coordinator: other } }),
      status.FAILED_PRECONDITION,
      `sealed to coordinator key feedfacefeedface; this coordinator's key is ${h.coordinator.keys.keyId}`,
    );
    // The right key id over another box key: the header verifies, the chunks cannot be opened.
    const lying = { keyId: a.coordinator.keyId, boxPublicKey: nacl.box.keyPair().publicKey };
    await refused(framesA({ who: { ...a, coordinator: lying } }), status.DATA_LOSS, 'sealed chunk 0 fails authentication');
  });

  it('answers a resumed upload (same sealed frames) with duplicate: true and refuses a different second one', async () => {
    acceptedA = framesA({ numExamples: 10 }, 0.25);
    const first = await upload(c, acceptedA);
    expect(first).to.include({ task_id: taskA.task_id, round: 1, duplicate: false });
    const before = await snapshot(h.runDir);
    const again = await upload(c, acceptedA);
    expect(again).to.include({ task_id: taskA.task_id, round: 1, duplicate: true });
    expect(Buffer.from(again.sha256).equals(Buffer.from(first.sha256))).to.equal(true);
    expect(await snapshot(h.runDir)).to.deep.equal(before);
    await refused(framesA({ numExamples: 10 }, 0.5), status.ALREADY_EXISTS, `task ${taskA.task_id} already has an accepted update`);
  });

  it("refuses another client's accepted ciphertext under a new header as a replay", () => {
    const mine = uploadFrames({ who: b, task: taskB, chunkBytes: 16 }, smallAdapter(0.25));
    return refused([{ header: { ...mine[0].header!, sealed: acceptedA[0].header!.sealed } }, ...acceptedA.slice(1)], status.ALREADY_EXISTS, 'replayed upload');
  });

  it('commits round 1 counting the resumed upload once (weighted fixed-point mean)', async () => {
    await upload(c, uploadFrames({ who: b, task: taskB, numExamples: 30 }, smallAdapter(0.75)));
    await reportMetrics(c, a.session_token, taskA.task_id, 1);
    await reportMetrics(c, b.session_token, taskB.task_id, 1);
    round1A = taskA;
    [taskA, taskB] = await Promise.all([feedA.round(2), feedB.round(2)]);
    const ck = await h.coordinator.store.read(1);
    // (10 × 0.25 + 30 × 0.75) / 40; counting site-a twice would give (20 × 0.25 + 30 × 0.75) / 50 = 0.55.
    for (const t of ck.adapter) expect(Array.from(t.data)).to.deep.equal(new Array(t.data.length).fill(0.625));
    expect(ck.manifest.participants.map((p) => p.numExamples).sort()).to.deep.equal([10, 30]);
  });

  it("refuses round 1's task during round 2 with FAILED_PRECONDITION", async () => {
    await refused(
      uploadFrames({ who: a, task: round1A }, smallAdapter(0.1)),
      status.FAILED_PRECONDITION,
      `task ${round1A.task_id} is for round 1 attempt 1, which is closed`,
    );
  });

  it("refuses a replay of round 1's accepted frames during round 2 with ALREADY_EXISTS", () => refused(acceptedA, status.ALREADY_EXISTS, 'replayed upload'));

  it('kept serving: round 2 commits', async () => {
    await upload(c, uploadFrames({ who: a, task: taskA }, smallAdapter(0.125)));
    await upload(c, uploadFrames({ who: b, task: taskB }, smallAdapter(0.125)));
    await reportMetrics(c, a.session_token, taskA.task_id, 2);
    await reportMetrics(c, b.session_token, taskB.task_id, 2);
    const ck = await h.coordinator.done;
    expect(ck.manifest.version).to.equal(2);
    expect(ck.adapter[0].data[0]).to.equal(0.75);
  });
});
