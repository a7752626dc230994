// The site's download path (client-sdk/download.ts over download-receiver.ts and its worker thread): bit-exact
// against the real coordinator, and every damaged stream refused with its status, from a real gRPC server that
// sends exactly the frames a test gives it. A refused download leaves the worker ready for the next one.
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { DownloadReceiver } from '../client-sdk/download-receiver';
import { loadFedtuneProto } from '../proto/load';
import { tensorFrames, type Frame } from '../proto/tensor-stream';
import type { NamedTensor } from '../proto/tensors';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import { join, nextTask, serveFederation, startCoordinator, tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Tensors whose sizes make chunks straddle their boundaries, one of them empty; about 2.4 MiB in all. */
function adapter(seed: number): NamedTensor[] {
  return [300_001, 7, 0, 299_993, 1].map((n, i) => ({
    name: `m.t${i}.lora_${i % 2 ? 'B' : 'A'}.weight`,
    dtype: 'float32' as const,
    shape: [n],
    data: Float32Array.from({ length: n }, (_, j) => Math.sin(seed + i * 31 + j * 1e-3)),
  }));
}
const bytesOf = (ts: readonly NamedTensor[]): Buffer => Buffer.concat(ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));

/** A gRPC server whose DownloadAdapter sends `frames()` as they are, then ends. */
async function frameServer(frames: () => Frame[]): Promise<{ rpc: RawClient; close: () => void }> {
  const svc = loadFedtuneProto().fedtune.v1.Federation;
  const { server, address } = await serveFederation({
    DownloadAdapter(call: grpc.ServerWritableStream<unknown, unknown>) {
      for (const f of frames()) call.write(f);
      call.end();
    },
  });
  const rpc = new svc(address, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS });
  return {
    rpc,
    close: () => {
      rpc.close();
      server.forceShutdown();
    },
  };
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as { code: number; message: string };
    return { code: grpc.status[err.code], message: err.message };
  }
  throw new Error('the download was not refused');
}

describe('site downloads (receiver and worker thread)', function () {
  this.timeout(60_000);

  it('downloads the latest version bit-exactly through the real coordinator, twice at once', async () => {
    const runDir = await tempDir('download-receiver');
    const initial = adapter(1);
    const h = await startCoordinator(
      runDir,
      { total: 1, minClients: 1, minUpdates: 1 },
      { transport: { chunkBytes: 100_003 } },
      { initialAdapter: () => initial },
    );
    const c = new (loadFedtuneProto().fedtune.v1.Federation)(h.address, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS });
    try {
      const s = await join(c, 'reader');
      const { task, stream } = nextTask(c, s.session_token);
      await task;
      const [a, b] = await Promise.all([downloadAdapter(c, s.session_token, 0), downloadAdapter(c, s.session_token, 0)]);
      for (const got of [a, b]) {
        expect(got.map((t) => [t.name, t.shape])).to.deep.equal(initial.map((t) => [t.name, t.shape]));
        expect(bytesOf(got).equals(bytesOf(initial))).to.equal(true);
        for (const t of got) expect(t.data.byteOffset % 4).to.equal(0);
      }
      stream.cancel();
    } finally {
      c.close();
      await h.coordinator.stop(500);
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });

  it('refuses each damaged stream with its status, and the next download still succeeds', async () => {
    const good = adapter(2);
    const frames = [...tensorFrames(good, 65_536)];
    const last = frames.length - 1;
    const cases: [string, () => Frame[], string, string][] = [
      [
        'a flipped byte',
        () => frames.map((f, i) => (i === 3 ? { chunk: Buffer.from(f.chunk!).fill(7, 100, 101) } : f)),
        'DATA_LOSS',
        'stream SHA-256 does not match its trailer',
      ],
      ['a missing chunk', () => frames.filter((_, i) => i !== 2), 'DATA_LOSS', 'stream truncated: received'],
      [
        'a miscounted trailer',
        () => frames.map((f, i) => (i === last ? { trailer: { ...f.trailer!, chunk_count: Number(f.trailer!.chunk_count) + 1 } } : f)),
        'DATA_LOSS',
        'trailer counts',
      ],
      ['no trailer', () => frames.slice(0, last), 'DATA_LOSS', 'download ended without its trailer'],
      ['an extra chunk', () => [...frames.slice(0, last), { chunk: Buffer.alloc(4) }, frames[last]], 'OUT_OF_RANGE', 'more than the'],
      [
        'a chunk over the header',
        () => frames.map((f, i) => (i === 1 ? { chunk: Buffer.concat([f.chunk!, Buffer.alloc(4)]) } : f)),
        'INVALID_ARGUMENT',
        'the header allows',
      ],
      [
        'a header over 4 GiB',
        () => [{ header: { ...frames[0].header!, tensors: [{ name: 'x', dtype: 'FLOAT32', shape: [2 ** 31] }], total_bytes: 2 ** 33 } }],
        'RESOURCE_EXHAUSTED',
        'exceeds the limit',
      ],
    ];
    let which = cases[0][1];
    const srv = await frameServer(() => which());
    try {
      for (const [what, make, code, message] of cases) {
        which = make;
        const r = await refusal(downloadAdapter(srv.rpc, 't', 1));
        expect(r.code, what).to.equal(code);
        expect(r.message, what).to.include(message);
      }
      which = () => frames;
      const candidate = { evaluationTaskId: 'e1', sha256: 'ab'.repeat(32) };
      const r = await refusal(downloadAdapter(srv.rpc, 't', 1, candidate));
      expect(r.code).to.equal('DATA_LOSS');
      expect(r.message).to.include('evaluation candidate hashes to');
      const sha = createHash('sha256').update(bytesOf(good)).digest('hex');
      const ok = await downloadAdapter(srv.rpc, 't', 1, { evaluationTaskId: 'e1', sha256: sha });
      expect(bytesOf(ok).equals(bytesOf(good))).to.equal(true);
    } finally {
      srv.close();
    }
  });

  it('moves a chunk that owns its buffer to the worker and copies one that shares it', async () => {
    const ts = adapter(3).slice(0, 2);
    const frames = [...tensorFrames(ts, 1 << 20)];
    const header = JSON.parse(JSON.stringify(frames[0].header)) as TensorHeader__Output;
    const all = Buffer.concat(frames.slice(1, -1).map((f) => f.chunk!));
    // As grpc-js hands it over: 9 bytes of framing, then the chunk, alone in its ArrayBuffer.
    const framed = Buffer.alloc(9 + (1 << 20));
    all.copy(framed, 9, 0, 1 << 20);
    const owned = framed.subarray(9);
    // A chunk that shares its ArrayBuffer with bytes after it.
    const sharedBacking = Buffer.alloc(all.length - (1 << 20) + 64);
    all.copy(sharedBacking, 0, 1 << 20);
    const shared = sharedBacking.subarray(0, all.length - (1 << 20));
    const rx = new DownloadReceiver(header, 1 << 30);
    rx.push(owned);
    rx.push(shared);
    const { tensors } = await rx.finish(frames[frames.length - 1].trailer as never);
    expect(bytesOf(tensors).equals(bytesOf(ts))).to.equal(true);
    expect(owned.buffer.byteLength).to.equal(0); // moved (detached)
    expect(shared.buffer.byteLength).to.equal(sharedBacking.length); // copied, the backing left intact
    expect(sharedBacking.subarray(0, 16).equals(all.subarray(1 << 20, (1 << 20) + 16))).to.equal(true);
  });
});
