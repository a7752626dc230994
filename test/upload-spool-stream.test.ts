// An upload's ciphertext streams to the round spool as it arrives (coordinator/upload.ts, spool-upload.ts):
// while it is in flight a hidden temporary in spool/round-N/ grows chunk by chunk; the trailer's acceptance
// renames it to <client>.sealed (the record a restart reloads); a refused, idle or cancelled upload leaves no
// file. The declared bytes of all uploads in flight are bounded (admission.maxUploadBytesInFlight), a lone larger
// one still passes. Real coordinator, real gRPC, real sealed uploads.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import { retryAfterOf } from '../proto/limits';
import { SPOOL_RECORD_MAGIC } from '../coordinator/sealed-update';
import { expectRefused, join, nextTask, rawClient, sendUpload, smallAdapter, startCoordinator, tempDir, upload, uploadFrames, type Harness } from './harness';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(get: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await get();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await sleep(20);
  }
}

async function withTwoSites(
  extra: Record<string, unknown>,
  body: (h: Harness, c: RawClient, s: Awaited<ReturnType<typeof join>>[], tasks: Awaited<ReturnType<typeof nextTask>['task']>[]) => Promise<void>,
): Promise<void> {
  const h = await startCoordinator(await tempDir('upload-stream'), { total: 1 }, extra);
  const c = rawClient(h.address);
  const sites = [await join(c, 'site-a'), await join(c, 'site-b')];
  const streams = sites.map((s) => nextTask(c, s.session_token));
  try {
    await body(h, c, sites, await Promise.all(streams.map((s) => s.task)));
  } finally {
    for (const s of streams) s.stream.cancel();
    c.close();
    await h.coordinator.stop(300);
    await fs.rm(h.runDir, { recursive: true, force: true });
  }
}

/** Files in the round's spool directory, with their sizes (hidden temporaries included). */
const spoolFiles = async (h: Harness): Promise<Record<string, number>> => {
  const dir = path.join(h.runDir, 'spool', 'round-1');
  const out: Record<string, number> = {};
  for (const f of await fs.readdir(dir).catch(() => [] as string[])) if (f !== 'attempt.json') out[f] = (await fs.stat(path.join(dir, f))).size;
  return out;
};

/** Opens an upload call and writes `frames` into it; the call stays open. */
function openUpload(c: RawClient, frames: readonly UploadFrame[]): { call: grpc.ClientWritableStream<UploadFrame>; answer: Promise<grpc.ServiceError | null> } {
  let call!: grpc.ClientWritableStream<UploadFrame>;
  const answer = new Promise<grpc.ServiceError | null>((resolve) => {
    call = c.UploadUpdate((e) => resolve(e));
  });
  for (const f of frames) call.write(f);
  return { call, answer };
}

describe('uploads stream their ciphertext to the round spool', function () {
  this.timeout(60_000);

  it('a temporary grows chunk by chunk while the upload is in flight; the trailer renames it to <client>.sealed', () =>
    withTwoSites({}, async (h, c, [a], [taskA]) => {
      const frames = uploadFrames({ who: a, task: taskA, chunkBytes: 8 }, smallAdapter(0.25)); // 56 bytes: 7 chunks
      const chunks = frames.slice(1, -1).map((f) => f.chunk as Uint8Array);
      expect(chunks).to.have.length(7);
      const { call, answer } = openUpload(c, frames.slice(0, 4)); // header and 3 chunks
      // The record's head is MAGIC, its length (u32) and the head itself, so its size is read from the file: the
      // wait ends when exactly the head and three chunks are there (a size bound alone is met by the head).
      const three = chunks.slice(0, 3).reduce((s, ch) => s + 4 + ch.length, 0);
      const headOf = (bytes: Buffer): number =>
        bytes.length >= SPOOL_RECORD_MAGIC.length + 4 ? SPOOL_RECORD_MAGIC.length + 4 + bytes.readUInt32BE(SPOOL_RECORD_MAGIC.length) : Infinity;
      const mid = await waitFor(
        async () => {
          const f = await spoolFiles(h);
          const names = Object.keys(f);
          const bytes =
            names.length === 1 ? await fs.readFile(path.join(h.runDir, 'spool', 'round-1', names[0])).catch(() => Buffer.alloc(0)) : Buffer.alloc(0);
          return { names, bytes };
        },
        ({ names, bytes }) => names.length === 1 && bytes.length === headOf(bytes) + three,
        'the head and three chunks on disk',
      );
      const [tmp] = mid.names;
      expect(tmp).to.match(new RegExp(`^\\.${a.client_id}\\.sealed\\.[0-9a-f]{12}\\.tmp$`));
      const head = headOf(mid.bytes);
      expect(head).to.be.greaterThan(SPOOL_RECORD_MAGIC.length + 4);
      for (const f of frames.slice(4)) call.write(f);
      call.end();
      expect(await answer).to.equal(null);
      const after = await spoolFiles(h);
      const total = head + chunks.reduce((s, ch) => s + 4 + ch.length, 0);
      expect(after).to.deep.equal({ [`${a.client_id}.sealed`]: total });
      // The record is the head then each sealed chunk as it arrived, length-prefixed.
      const rec = await fs.readFile(path.join(h.runDir, 'spool', 'round-1', `${a.client_id}.sealed`));
      expect(rec.subarray(0, SPOOL_RECORD_MAGIC.length).equals(SPOOL_RECORD_MAGIC)).to.equal(true);
      let off = head;
      for (const ch of chunks) {
        expect(rec.readUInt32BE(off)).to.equal(ch.length);
        expect(rec.subarray(off + 4, off + 4 + ch.length).equals(Buffer.from(ch))).to.equal(true);
        off += 4 + ch.length;
      }
    }));

  it('a refused, an idle and a cancelled upload leave no file behind', () =>
    withTwoSites({ transport: { uploadIdleTimeoutMs: 500 } }, async (h, c, [a, b], [taskA, taskB]) => {
      // Refused at chunk 3 (tampered): DATA_LOSS, the run directory exactly as before.
      const frames = uploadFrames({ who: a, task: taskA, chunkBytes: 8 }, smallAdapter(0.25));
      const bad = frames.map((f, i) => (i === 3 ? { chunk: Buffer.from(f.chunk as Uint8Array).map((x, j) => (j === 0 ? x ^ 1 : x)) } : f));
      await expectRefused(h.runDir, () => upload(c, bad), status.DATA_LOSS, 'sealed chunk 2 fails authentication');
      // Idle: header and two chunks, then silence; refused after the idle timeout, the temporary deleted.
      const idle = openUpload(c, frames.slice(0, 3));
      await waitFor(
        () => spoolFiles(h),
        (f) => Object.keys(f).length === 1,
        'the idle upload on disk',
      );
      const err = await idle.answer;
      expect(err?.code).to.equal(status.DEADLINE_EXCEEDED);
      expect(await spoolFiles(h)).to.deep.equal({});
      idle.call.end();
      // Cancelled by the site mid-stream.
      const fb = uploadFrames({ who: b, task: taskB, chunkBytes: 8 }, smallAdapter(0.75));
      const gone = openUpload(c, fb.slice(0, 3));
      await waitFor(
        () => spoolFiles(h),
        (f) => Object.keys(f).length === 1,
        'the cancelled upload on disk',
      );
      gone.call.cancel();
      await waitFor(
        () => spoolFiles(h),
        (f) => Object.keys(f).length === 0,
        'the cancelled upload deleted',
      );
      // Both sites' retries are accepted: the tasks were freed.
      await upload(c, frames);
      await upload(c, fb);
      expect(Object.keys(await spoolFiles(h)).sort()).to.deep.equal([`${a.client_id}.sealed`, `${b.client_id}.sealed`].sort());
    }));

  it('admission.maxUploadBytesInFlight bounds the declared bytes in flight; a lone larger upload still passes', () =>
    withTwoSites({ admission: { maxUploadBytesInFlight: 40, retryAfterMs: 150 } }, async (h, c, [a, b], [taskA, taskB]) => {
      // site-a's 56 bytes exceed the 40-byte budget, but nothing else is in flight: admitted.
      const fa = uploadFrames({ who: a, task: taskA, chunkBytes: 8 }, smallAdapter(0.25));
      const held = openUpload(c, fa.slice(0, 2));
      await waitFor(
        () => spoolFiles(h),
        (f) => Object.keys(f).length === 1,
        "site-a's upload in flight",
      );
      const busy = await sendUpload(c, uploadFrames({ who: b, task: taskB }, smallAdapter(0.75)));
      expect(status[busy.err!.code]).to.equal('RESOURCE_EXHAUSTED');
      expect(busy.err!.details).to.contain('56 bytes of uploads are being received (admission.maxUploadBytesInFlight 40)');
      expect(retryAfterOf(busy.err)).to.equal(150);
      for (const f of fa.slice(2)) held.call.write(f);
      held.call.end();
      expect(await held.answer).to.equal(null);
      await upload(c, uploadFrames({ who: b, task: taskB }, smallAdapter(0.75))); // its retry passes
    }));
});
