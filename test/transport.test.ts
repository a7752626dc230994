// A 100 MB adapter through the real coordinator over gRPC loopback, both directions, with default gRPC
// message limits: the chunked stream is what makes it fit.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import pino from 'pino';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import { TensorStreamDecoder } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';
import { Coordinator } from '../coordinator/coordinator';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { join, nextTask, rawClient, sendUpload, tempDir, uploadFrames } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const N = 25;
const SIZE = 1 << 20; // 25 tensors × 1M float32 = 100 MiB

function bigAdapter(offset: number): NamedTensor[] {
  return Array.from({ length: N }, (_, i) => {
    const data = new Float32Array(SIZE);
    for (let j = 0; j < SIZE; j += 4099) data[j] = (i * 7 + j + offset) % 97;
    return { name: `base_model.model.t${String(i).padStart(2, '0')}.lora_A.weight`, dtype: 'float32' as const, shape: [1024, 1024], data };
  });
}

describe('100 MB adapters over gRPC with default limits', function () {
  this.timeout(120_000);

  it('downloads and uploads bit-exactly in 1 MiB chunks', async () => {
    const runDir = await tempDir('transport');
    const initial = bigAdapter(0);
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir: runDir },
        rounds: { total: 1, minClients: 1, minUpdates: 1, deadlineMs: 100_000 },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
      },
    });
    const coordinator = new Coordinator({
      config,
      initialAdapter: () => initial,
      adapterConfig: {},
      baseModel: { name: 't', sha256: '0'.repeat(64) },
      logger: pino({ level: 'silent' }),
    });
    const { address } = await coordinator.start();
    const c = rawClient(address);
    try {
      const s = await join(c, 'big');
      const { task, stream } = nextTask(c, s.session_token);
      const t = await task;
      let chunks = 0;
      const got = await new Promise<NamedTensor[]>((resolve, reject) => {
        const call = c.DownloadAdapter({ session_token: s.session_token, version: 0 });
        let dec: TensorStreamDecoder | undefined;
        call.on('data', (f: TensorFrame__Output) => {
          if (f.header) dec = new TensorStreamDecoder(f.header, { maxBytes: 1 << 30, requireFinite: true });
          else if (f.frame === 'chunk' && f.chunk) {
            chunks++;
            dec!.push(f.chunk);
          } else if (f.trailer) resolve(dec!.finish(f.trailer));
        });
        call.on('error', reject);
      });
      expect(chunks).to.equal(100);
      for (let i = 0; i < N; i++)
        expect(Buffer.compare(Buffer.from(got[i].data.buffer, got[i].data.byteOffset, got[i].data.byteLength), Buffer.from(initial[i].data.buffer))).to.equal(
          0,
        );

      const delta = bigAdapter(1);
      const frames = uploadFrames({ who: s, task: t }, delta);
      expect(frames).to.have.length(102);
      const { ok, err } = await sendUpload(c, frames);
      expect(err).to.equal(undefined);
      expect(ok!.task_id).to.equal(t.task_id);
      await new Promise<void>((res, rej) =>
        c.ReportMetrics({ session_token: s.session_token, task_id: t.task_id, round: 1, num_examples: 1, backend: 't', metrics: {} }, (e) =>
          e ? rej(e) : res(),
        ),
      );
      const final = await coordinator.done;
      // One update with weight 1: the new adapter is initial + delta (on the 2^-24 grid, exact for these values).
      for (const i of [0, 13, 24]) for (const j of [0, 4099, 8198]) expect(final.adapter[i].data[j]).to.equal(initial[i].data[j] + delta[i].data[j]);
      stream.cancel();
    } finally {
      c.close();
      await coordinator.stop(500);
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });
});

describe('adapter downloads through the coordinator, chunked', function () {
  this.timeout(30_000);

  it('round-trips every version bit-exactly with chunks that straddle tensor boundaries', async () => {
    const runDir = await tempDir('transport-chunks');
    // Sizes chosen so that 1000-byte chunks cut through tensors, and one tensor fits inside a chunk.
    const initial: NamedTensor[] = [
      { name: 'a.lora_A.weight', dtype: 'float32', shape: [7, 13], data: Float32Array.from({ length: 91 }, (_, i) => Math.sin(i) * 1e-3) },
      { name: 'a.lora_B.weight', dtype: 'float32', shape: [301], data: Float32Array.from({ length: 301 }, (_, i) => i / 7) },
      { name: 'b.lora_A.weight', dtype: 'float32', shape: [3], data: Float32Array.from([1.5, -2.25, 3e-8]) },
    ];
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir: runDir },
        rounds: { total: 1, minClients: 1, minUpdates: 1, deadlineMs: 20_000 },
        transport: { chunkBytes: 1000 },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
      },
    });
    const coordinator = new Coordinator({
      config,
      initialAdapter: () => initial,
      adapterConfig: {},
      baseModel: { name: 't', sha256: '0'.repeat(64) },
      logger: pino({ level: 'silent' }),
    });
    const { address } = await coordinator.start();
    const c = rawClient(address);
    const download = (token: string, version: number): Promise<{ tensors: NamedTensor[]; chunkSizes: number[]; sha: string }> =>
      new Promise((resolve, reject) => {
        const call = c.DownloadAdapter({ session_token: token, version });
        let dec: TensorStreamDecoder | undefined;
        const chunkSizes: number[] = [];
        const hash = createHash('sha256');
        call.on('data', (f: TensorFrame__Output) => {
          try {
            if (f.header) dec = new TensorStreamDecoder(f.header, { maxBytes: 1 << 20, requireFinite: true });
            else if (f.frame === 'chunk' && f.chunk) {
              chunkSizes.push(f.chunk.length);
              hash.update(f.chunk);
              dec!.push(f.chunk);
            } else if (f.trailer) resolve({ tensors: dec!.finish(f.trailer), chunkSizes, sha: hash.digest('hex') });
          } catch (e) {
            reject(e);
          }
        });
        call.on('error', reject);
      });
    const bytesOf = (ts: readonly NamedTensor[]): Buffer => Buffer.concat(ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
    try {
      const s = await join(c, 'reader');
      const { task, stream } = nextTask(c, s.session_token);
      const t = await task;
      const v0 = await download(s.session_token, 0);
      const total = (91 + 301 + 3) * 4;
      expect(v0.chunkSizes).to.deep.equal([1000, 580]);
      expect(v0.chunkSizes.reduce((a, b) => a + b)).to.equal(total);
      expect(v0.tensors.map((x) => [x.name, x.shape])).to.deep.equal(initial.map((x) => [x.name, [...x.shape]]));
      expect(bytesOf(v0.tensors).equals(bytesOf(initial))).to.equal(true);
      expect(v0.sha).to.equal(createHash('sha256').update(bytesOf(initial)).digest('hex'));

      // Commit v1 from a 1000-byte-chunked upload, then read both versions back (v0 now from the store).
      const delta = initial.map((x) => ({ ...x, data: x.data.map((v) => v / 2) }));
      const { err } = await sendUpload(c, uploadFrames({ who: s, task: t, numExamples: 3, chunkBytes: 1000 }, delta));
      expect(err).to.equal(undefined);
      await new Promise<void>((res, rej) =>
        c.ReportMetrics({ session_token: s.session_token, task_id: t.task_id, round: 1, num_examples: 3, backend: 't', metrics: {} }, (e) =>
          e ? rej(e) : res(),
        ),
      );
      const final = await coordinator.done;
      const [again, v1] = await Promise.all([download(s.session_token, 0), download(s.session_token, 1)]);
      expect(bytesOf(again.tensors).equals(bytesOf(initial))).to.equal(true);
      expect(bytesOf(v1.tensors).equals(bytesOf(final.adapter))).to.equal(true);
      stream.cancel();
    } finally {
      c.close();
      await coordinator.stop(500);
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });
});
