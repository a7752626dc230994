// Sealed uploads with their crypto on a sealing thread (proto/crypto/seal-offload.ts): the site's pipelined
// sealing (seal-pipelined.ts) and the coordinator's opening off the main thread (coordinator/upload-chunks.ts,
// forced here for small uploads with transport.openOffThreadMinBytes 0). The same bytes as in line, the same
// refusals with the same status and message, the run directory untouched by any refusal, and a round that
// commits the exact weighted mean. Real X25519, ChaCha20-Poly1305, Ed25519, gRPC on loopback.
import { promises as fs } from 'node:fs';
import { createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import nacl from 'tweetnacl';
import { SealedUploadOpener, sealUpload, uploadBinding, type CoordinatorBoxSecret } from '../proto/crypto/sealed-upload';
import { sealUploadPipelined } from '../proto/crypto/seal-pipelined';
import { dataChunks, tensorHeader } from '../proto/tensor-stream';
import { sealDeltaPipelined, sendSealed, serializeUploadMessage } from '../client-sdk/sealed-sender';
import { loadFedtuneProto } from '../proto/load';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import type { SealedEnvelope__Output } from '../proto/generated/fedtune/v1/SealedEnvelope';
import {
  expectRefused,
  join,
  rawClient,
  reportMetrics,
  settled,
  smallAdapter,
  startCoordinator,
  tempDir,
  upload,
  uploadFrames,
  type Harness,
  type JoinedRaw,
} from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const box = nacl.box.keyPair.fromSecretKey(createHash('sha256').update('seal-offload test coordinator').digest());
const COORDINATOR: CoordinatorBoxSecret = { keyId: 'ck-9', boxPublicKey: box.publicKey, boxSecretKey: box.secretKey };
const site = nacl.sign.keyPair.fromSeed(createHash('sha256').update('seal-offload test site').digest());
const TASK = { task_id: 'task-1', round: 1, attempt: 1, base_version: 0, base_manifest_sha256: 'cd'.repeat(32) };
const BINDING = uploadBinding('run-1', 'client-1', TASK, 7);

describe('seal-offload: sealing and opening on a sealing thread', function () {
  this.timeout(30_000);

  describe('the site: sealUploadPipelined', () => {
    const delta = [{ name: 'w', dtype: 'float32' as const, shape: [300], data: Float32Array.from({ length: 300 }, (_, i) => Math.sin(i)) }];
    const tensors = tensorHeader(delta, 256);
    const opts = { binding: BINDING, tensors, coordinator: COORDINATOR, identitySecretKey: site.secretKey };
    const received = (): TensorHeader__Output =>
      ({ ...tensors, total_bytes: Number(tensors.total_bytes), chunk_bytes: tensors.chunk_bytes! }) as TensorHeader__Output;

    it('on the thread: every chunk opens in order, the signed hash and the signature verify, the plaintext is the delta', async () => {
      const s = await sealUploadPipelined({ ...opts, plaintextChunks: dataChunks(delta, 256), minBytes: 0 });
      expect(s.parts.length).to.equal(5); // 1,200 bytes in chunks of 256
      const hash = createHash('sha256');
      for (const c of s.chunks) hash.update(c);
      expect(hash.digest().equals(Buffer.from(s.envelope.ciphertext_sha256 as Uint8Array))).to.equal(true);
      const o = new SealedUploadOpener(s.envelope as SealedEnvelope__Output, BINDING, received(), COORDINATOR, site.publicKey, 'site');
      const plain = Buffer.concat(s.chunks.map((c) => o.open(c)));
      o.finish();
      expect(plain.equals(Buffer.from(delta[0].data.buffer))).to.equal(true);
    });

    it("the SDK path: each chunk's wire message is built on the thread, byte for byte what the generated serializer writes", async () => {
      const ctx = { token: 't', runId: 'run-1', clientId: 'client-1', coordinator: COORDINATOR, identitySecretKey: site.secretKey, chunkBytes: 256 };
      // 1,200 bytes in chunks of 256: four sealed chunks of 272 bytes and a last one of 192.
      const f = await sealDeltaPipelined(ctx, TASK as unknown as TrainTask__Output, delta, 7, 0);
      const serialize = loadFedtuneProto().fedtune.v1.Federation.service.UploadUpdate.requestSerialize;
      expect(f.sealed.parts.length).to.equal(5);
      for (const p of f.sealed.parts) {
        expect(p.wire, 'built on the thread').to.not.equal(undefined);
        expect(serializeUploadMessage(p).equals(serialize({ chunk: Buffer.concat([p.ciphertext, p.tag]) }))).to.equal(true);
      }
    });

    it('below minBytes: seals in line, with the same layout as sealUpload', async () => {
      const a = await sealUploadPipelined({ ...opts, plaintextChunks: dataChunks(delta, 256), minBytes: 1 << 20 });
      const b = sealUpload({ ...opts, plaintextChunks: dataChunks(delta, 256) });
      expect(a.parts.map((p) => p.ciphertext.length)).to.deep.equal(b.parts.map((p) => p.ciphertext.length));
      expect(a.envelope.chunk_count).to.equal(b.envelope.chunk_count);
    });

    it('an opener whose chunks were handed off refuses to open or finish here until the thread reports', () => {
      const s = sealUpload({ ...opts, plaintextChunks: dataChunks(delta, 256) });
      const o = new SealedUploadOpener(s.envelope as SealedEnvelope__Output, BINDING, received(), COORDINATOR, site.publicKey, 'site');
      const keys = o.handOff();
      expect(keys.count).to.equal(5);
      expect(() => o.handOff()).to.throw('only once');
      expect(() => o.open(s.chunks[0])).to.throw('opened by the sealing thread');
      expect(() => o.finish()).to.throw('has not reported');
      o.adopt(4, Buffer.alloc(32));
      expect(() => o.finish()).to.throw('sealed stream truncated: 4 of 5 chunks arrived');
    });
  });

  describe('the coordinator: transport.openOffThreadMinBytes 0, over gRPC', () => {
    let h: Harness;
    let c: RawClient;
    let a: JoinedRaw;
    let b: JoinedRaw;
    const streams: grpc.ClientReadableStream<TaskEvent__Output>[] = [];
    let taskA: TrainTask__Output;
    let taskB: TrainTask__Output;
    const refused = (frames: UploadFrame[], code: status, message: string): Promise<grpc.ServiceError> =>
      expectRefused(h.runDir, () => upload(c, frames), code, message);
    /** site-a's 56-byte delta in chunks of 16 bytes: frames [header, c0..c3, trailer]. */
    const framesA = (value = 0.01, numExamples = 10): UploadFrame[] => uploadFrames({ who: a, task: taskA, chunkBytes: 16, numExamples }, smallAdapter(value));

    const firstTask = (who: JoinedRaw): Promise<TrainTask__Output> =>
      new Promise((resolve) => {
        const s = c.StreamTasks({ session_token: who.session_token });
        s.on('error', () => undefined);
        s.on('data', (ev: TaskEvent__Output) => ev.train && resolve(ev.train));
        streams.push(s);
      });

    before(async () => {
      h = await startCoordinator(await tempDir('seal-offload'), { total: 1 }, { transport: { openOffThreadMinBytes: 0 } });
      await settled(h);
      c = rawClient(h.address);
      a = await join(c, 'site-a');
      b = await join(c, 'site-b');
      [taskA, taskB] = await Promise.all([firstTask(a), firstTask(b)]);
    });

    after(async () => {
      for (const s of streams) s.cancel();
      c.close();
      await h.coordinator.stop(500);
      await fs.rm(h.runDir, { recursive: true, force: true });
    });

    it('refuses a tampered chunk with DATA_LOSS, as in line', () => {
      const f = framesA();
      const chunk = Buffer.from(f[2].chunk as Buffer);
      chunk[3] ^= 0x40;
      f[2] = { chunk };
      return refused(f, status.DATA_LOSS, 'sealed chunk 1 fails authentication');
    });

    it('refuses reordered and dropped chunks with DATA_LOSS naming the position', async () => {
      const f = framesA();
      await refused([f[0], f[2], f[1], f[3], f[4], f[5]], status.DATA_LOSS, 'sealed chunk 1 arrived at position 0');
      await refused([f[0], f[1], f[3], f[4], f[5]], status.DATA_LOSS, 'sealed chunk 2 arrived at position 1');
    });

    it('refuses a truncated stream, with or without its trailer, with DATA_LOSS', async () => {
      const f = framesA();
      await refused([f[0], f[1], f[2], f[3], f[5]], status.DATA_LOSS, 'sealed stream truncated: 3 of 4 chunks arrived');
      await refused([f[0], f[1], f[2], f[3]], status.DATA_LOSS, 'sealed stream truncated: 3 of 4 chunks arrived');
    });

    it('refuses a chunk past the declared count with OUT_OF_RANGE and a wrong trailer hash with DATA_LOSS', async () => {
      const f = framesA();
      await refused([...f.slice(0, 5), f[4], f[5]], status.OUT_OF_RANGE, 'more than the 4 chunks its header declares');
      const wrong = framesA();
      wrong[5] = { trailer: { chunk_count: 4, sha256: Buffer.alloc(32, 7) } };
      await refused(wrong, status.DATA_LOSS, 'trailer SHA-256 0707070707070707');
    });

    it('accepts honest uploads and commits the exact weighted mean', async () => {
      expect(await upload(c, framesA(0.25, 10))).to.include({ task_id: taskA.task_id, duplicate: false });
      // site-b through the SDK's own path: pipelined sealing forced onto the thread, then sendSealed.
      const ctx = {
        token: b.session_token,
        runId: b.run_id,
        clientId: b.client_id,
        coordinator: b.coordinator,
        identitySecretKey: b.identity.secretKey,
        chunkBytes: 16,
      };
      await sendSealed(c, await sealDeltaPipelined(ctx, taskB, smallAdapter(0.75), 30, 0));
      await reportMetrics(c, a.session_token, taskA.task_id, 1);
      await reportMetrics(c, b.session_token, taskB.task_id, 1);
      const latest = async (): Promise<string> => (await fs.readFile(`${h.runDir}/latest`, 'utf8')).trim();
      for (let i = 0; i < 200 && (await latest()) !== 'v000001'; i++) await new Promise((r) => setTimeout(r, 25));
      expect(await latest()).to.equal('v000001');
      const ck = await h.coordinator.store.read(1);
      // (10 × 0.25 + 30 × 0.75) / 40, exactly.
      for (const t of ck.adapter) expect(Array.from(t.data)).to.deep.equal(new Array(t.data.length).fill(0.625));
    });
  });
});
