// Parallel downloads (proto/pieces.ts, coordinator/download-ranges.ts, client-sdk/download-ranges.ts): a version
// committed with piece hashes comes over several range calls, each on its own worker thread and connection, and
// lands byte for byte as the one-stream download; a version without them (as committed before they existed) still
// comes whole; the coordinator refuses ranges outside the version and more concurrent range calls than its bound;
// a peer that tampers with a piece, or forges a range's frames, is refused with the one-stream download's errors
// (DATA_LOSS naming the piece). Real coordinator, real gRPC, real threads.
import { createHash } from 'node:crypto';
import * as http2 from 'node:http2';
import * as grpc from '@grpc/grpc-js';
import fc from 'fast-check';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { parallelDownloads, rangeStats } from '../client-sdk/download-ranges';
import { benchAdapter, joinDownloadSite, startDownloadCoordinator } from '../bench/download-site';
import { benchJoin } from '../bench/bench-join';
import { loadFedtuneProto } from '../proto/load';
import { pieceHashes, planRanges } from '../proto/pieces';
import type { NamedTensor } from '../proto/tensors';
import type { TensorFrame__Output } from '../proto/generated/fedtune/v1/TensorFrame';
import type { DownloadRequest__Output } from '../proto/generated/fedtune/v1/DownloadRequest';
import type { TensorFrame } from '../proto/generated/fedtune/v1/TensorFrame';
import { announce, answerFrames, askOf } from '../coordinator/download-ranges';
import { startHostileDownloads, type Tamper } from './download-hostile';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const bytesOf = (ts: NamedTensor[]): Buffer => Buffer.concat(ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
const PIECE = 256 << 10;
const CHUNK = 64 << 10;

/** A raw range call; resolves with its chunk bytes, or rejects with the coordinator's status. */
function rangeCall(rpc: ReturnType<typeof rawClient>, token: string, r: Partial<DownloadRequest__Output>): Promise<number> {
  return new Promise((resolve, reject) => {
    const call = rpc.DownloadAdapter({ session_token: token, version: 0, ...r });
    let n = 0;
    call.on('data', (f: TensorFrame__Output) => (n += f.chunk?.length ?? 0));
    call.on('error', reject);
    call.on('end', () => resolve(n));
  });
}
/** A DownloadAdapter range call sent over node:http2 and never read: a site holding a stream open. */
function heldRangeCall(session: http2.ClientHttp2Session, token: string, length: number): http2.ClientHttp2Stream {
  const method = loadFedtuneProto().fedtune.v1.Federation.service.DownloadAdapter;
  const msg = method.requestSerialize({ session_token: token, version: 0, range_offset: 0, range_length: length });
  const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), msg]);
  framed.writeUInt32BE(msg.length, 1);
  const s = session.request({ ':method': 'POST', ':path': method.path, 'content-type': 'application/grpc', te: 'trailers' });
  s.on('error', () => undefined);
  s.end(framed);
  s.pause();
  return s;
}
const rawClient = (address: string, window = false) =>
  new (loadFedtuneProto().fedtune.v1.Federation)(address, grpc.credentials.createInsecure(), window ? { ...SITE_CHANNEL_OPTIONS } : {});

describe('parallel downloads (piece hashes, range calls, worker threads)', function () {
  // 16 tensors of 40,960 values (2.5 MiB): 10 pieces of 256 KiB, the last chunk of the stream whole.
  const adapter = benchAdapter(16 * 40_960 + 16 * 3);
  let coordinator: Awaited<ReturnType<typeof startDownloadCoordinator>>;
  let old: Awaited<ReturnType<typeof startDownloadCoordinator>>;
  before(async () => {
    coordinator = await startDownloadCoordinator(adapter, CHUNK, undefined, { pieceBytes: PIECE, maxRangeCallsPerSite: 3 });
    // As a version committed before piece hashes existed: its manifest lists none.
    old = await startDownloadCoordinator(adapter, CHUNK, undefined, { pieceBytes: 0 });
  });
  after(async () => {
    await coordinator?.stop();
    await old?.stop();
  });

  it('lands the same bytes over 3 range calls (the bound the coordinator states) as over one stream; one-piece and old-style versions come whole', async () => {
    const one = await joinDownloadSite(coordinator.address, 1, 'one');
    // Asks for 8 streams; the coordinator states its bound (3 per site) in the header, so 3 range calls.
    const three = await joinDownloadSite(coordinator.address, 8, 'three');
    const oldSite = await joinDownloadSite(old.address, 3, 'old');
    try {
      const before = { ...rangeStats };
      const seq = await one.download(0);
      expect(rangeStats.downloads).to.equal(before.downloads);
      const par = await three.download(0);
      expect([rangeStats.downloads - before.downloads, rangeStats.ranges - before.ranges]).to.deep.equal([1, 3]);
      expect(par.map((t) => [t.name, t.shape])).to.deep.equal(adapter.map((t) => [t.name, t.shape]));
      expect(bytesOf(par).equals(bytesOf(seq))).to.equal(true);
      expect(bytesOf(par).equals(bytesOf(adapter))).to.equal(true);
      // Each tensor in its own ordinary memory, as the one-stream download hands it over.
      for (const t of par) expect(t.data.buffer).to.be.instanceOf(ArrayBuffer);
      // One stream when asked for, and with credentials a worker thread cannot remake (not tlsCredentials()).
      expect(parallelDownloads({ address: coordinator.address, downloadStreams: 1 }, {})).to.equal(undefined);
      expect(parallelDownloads({ address: coordinator.address, downloadStreams: 4, credentials: grpc.credentials.createInsecure() }, {})).to.equal(undefined);
      // A version of one piece comes whole in the header-only call itself.
      const small = await startDownloadCoordinator(benchAdapter(16 * 1000), CHUNK, undefined, { pieceBytes: PIECE });
      const smallSite = await joinDownloadSite(small.address, 3, 'small');
      try {
        expect(bytesOf(await smallSite.download(0)).equals(bytesOf(benchAdapter(16 * 1000)))).to.equal(true);
        expect(rangeStats.downloads - before.downloads).to.equal(1);
      } finally {
        smallSite.close();
        await small.stop();
      }
      const fromOld = await oldSite.download(0);
      expect(rangeStats.downloads - before.downloads).to.equal(1);
      expect(bytesOf(fromOld).equals(bytesOf(adapter))).to.equal(true);
    } finally {
      for (const s of [one, three, oldSite]) s.close();
    }
  });

  it('refuses ranges outside the version, off piece boundaries, of a version without pieces, and past the bound per site', async () => {
    const total = bytesOf(adapter).length;
    const rpc = rawClient(coordinator.address);
    const rpcOld = rawClient(old.address);
    try {
      const { sessionToken: token } = await benchJoin(rpc, 'raw');
      const { sessionToken: oldToken } = await benchJoin(rpcOld, 'raw');
      const refused = (p: Promise<number>): Promise<grpc.ServiceError> =>
        p.then(
          () => expect.fail('accepted'),
          (e: grpc.ServiceError) => e,
        );
      const outside = await refused(rangeCall(rpc, token, { range_offset: 8 * PIECE, range_length: 3 * PIECE }));
      expect([outside.code, outside.details]).to.deep.equal([
        grpc.status.OUT_OF_RANGE,
        `range ${8 * PIECE}+${3 * PIECE} ends past the version's ${total} bytes`,
      ]);
      const off = await refused(rangeCall(rpc, token, { range_offset: CHUNK, range_length: PIECE }));
      expect(off.code).to.equal(grpc.status.INVALID_ARGUMENT);
      expect(off.details).to.match(/piece boundaries/);
      const none = await refused(rangeCall(rpcOld, oldToken, { range_offset: 0, range_length: PIECE }));
      expect([none.code, none.details]).to.deep.equal([grpc.status.FAILED_PRECONDITION, 'version 0 has no piece hashes: download it whole']);
      const both = await refused(rangeCall(rpc, token, { header_only: true, range_length: PIECE }));
      expect(both.code).to.equal(grpc.status.INVALID_ARGUMENT);
      // A whole-piece range is served exactly.
      expect(await rangeCall(rpc, token, { range_offset: 9 * PIECE, range_length: total - 9 * PIECE })).to.equal(total - 9 * PIECE);
      // Three range calls in flight (the bound here), held open by a site that never reads them (HTTP/2 flow
      // control stops the coordinator after 64 KiB of each): the fourth is refused.
      const session = http2.connect(`http://${coordinator.address}`);
      const held = [0, 1, 2].map(() => heldRangeCall(session, token, total));
      await new Promise((r) => setTimeout(r, 300));
      const fourth = await refused(rangeCall(rpc, token, { range_offset: 0, range_length: PIECE }));
      expect([fourth.code, fourth.details]).to.deep.equal([grpc.status.RESOURCE_EXHAUSTED, '3 range downloads of this site are in flight; at most 3 at once']);
      for (const c of held) c.close(http2.constants.NGHTTP2_CANCEL);
      session.close();
      await new Promise((r) => setTimeout(r, 300));
      // Released when they end: the next one is served.
      expect(await rangeCall(rpc, token, { range_offset: 0, range_length: PIECE })).to.equal(PIECE);
    } finally {
      rpc.close();
      rpcOld.close();
    }
  });

  it('refuses a tampered piece naming it, and forged range frames with the one-stream errors; nothing is returned', async () => {
    const cases: [Tamper, number, RegExp][] = [
      ['flip', grpc.status.DATA_LOSS, /^piece 5 of version 0 does not match its SHA-256 in the header$/],
      ['short', grpc.status.INVALID_ARGUMENT, /bytes inside the range; chunks are/],
      ['extra', grpc.status.OUT_OF_RANGE, /range carries more than the \d+ bytes asked for/],
      ['count', grpc.status.DATA_LOSS, /^trailer counts \d+ chunks; \d+ arrived$/],
      ['noTrailer', grpc.status.DATA_LOSS, /^download ended without its trailer$/],
      ['header', grpc.status.DATA_LOSS, /its header differs from the download's/],
      ['twoHeaders', grpc.status.INVALID_ARGUMENT, /^a second header in one download$/],
    ];
    // Over both range clients: the workers' own HTTP/2 client (the default) and grpc-js (the fallback).
    for (const [tamper, code, message] of cases) {
      for (const rangeTransport of ['http2', 'grpc-js'] as const) {
        const h = await startHostileDownloads(adapter, CHUNK, PIECE, tamper);
        const rpc = rawClient(h.address, true);
        try {
          const parallel = parallelDownloads({ address: h.address, downloadStreams: 4, rangeTransport }, { ...SITE_CHANNEL_OPTIONS })!;
          expect(parallel.channel.transport).to.equal(rangeTransport);
          const e = await downloadAdapter(rpc, 'token', 0, undefined, false, parallel).then(
            () => expect.fail(`${tamper} accepted`),
            (err: { code: number; message: string }) => err,
          );
          expect([tamper, e.code]).to.deep.equal([tamper, code]);
          expect(e.message).to.match(message);
          expect(e.message).not.to.match(/\/tmp|\/work|\\/);
        } finally {
          rpc.close();
          await h.stop();
        }
      }
    }
  });

  it('property: over real range calls and worker threads, either range client, any tensor sizes, chunk and piece sizes and stream count land exactly', async () => {
    let ranged = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 60_000 }), { minLength: 1, maxLength: 6 }),
        fc.constantFrom(16 << 10, 64 << 10),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 2, max: 6 }),
        fc.constantFrom('http2' as const, 'grpc-js' as const),
        async (sizes, chunk, perPiece, streams, rangeTransport) => {
          const piece = Math.max(64 << 10, chunk * perPiece);
          const ts: NamedTensor[] = sizes.map((n, i) => ({
            name: `t${i}`,
            dtype: 'float32',
            shape: [n],
            data: Float32Array.from({ length: n }, (_, j) => i + j / 7),
          }));
          const h = await startHostileDownloads(ts, chunk, piece, 'none');
          const rpc = rawClient(h.address, true);
          try {
            const before = { ...rangeStats };
            const parallel = parallelDownloads({ address: h.address, downloadStreams: streams, rangeTransport }, { ...SITE_CHANNEL_OPTIONS })!;
            const got = await downloadAdapter(rpc, 'token', 0, undefined, false, parallel);
            expect(got.map((t) => [t.name, t.shape])).to.deep.equal(ts.map((t) => [t.name, t.shape]));
            expect(bytesOf(got).equals(bytesOf(ts))).to.equal(true);
            const pieces = Math.ceil(bytesOf(ts).length / piece);
            expect(rangeStats.ranges - before.ranges).to.equal(pieces >= 2 ? Math.min(streams, pieces) : 0);
            if (pieces >= 2) ranged++;
          } finally {
            rpc.close();
            await h.stop();
          }
        },
      ),
      { seed: 8, numRuns: 10 },
    );
    expect(ranged).to.be.at.least(4); // most runs went over range calls, not the one-piece whole stream
  });

  it('a range reads its stream only up to its last chunk, and its header announces the pieces', () => {
    const pieces = { bytes: 2 * 64, sha256: ['aa'.repeat(32), 'bb'.repeat(32), 'cc'.repeat(32)], maxRangeCalls: 4 };
    let pulled = 0;
    function* stream(): Generator<TensorFrame> {
      pulled++;
      yield { header: { tensors: [], total_bytes: 6 * 64, chunk_bytes: 64 } as unknown as TensorFrame['header'] };
      for (let i = 0; i < 6; i++) {
        pulled++;
        yield { chunk: Buffer.alloc(64, i) };
      }
      pulled++;
      yield { trailer: { chunk_count: 6, sha256: Buffer.alloc(32) } };
    }
    const ask = askOf({ range_offset: 128, range_length: 128, header_only: false } as DownloadRequest__Output, 0, 6 * 64, pieces);
    const out = [...answerFrames(announce(stream(), pieces), ask, 64, (n): TensorFrame => ({ trailer: { chunk_count: n, sha256: Buffer.alloc(0) } }))];
    expect(out.map((f) => (f.header ? 'h' : f.chunk ? (f.chunk as Buffer)[0] : `t${f.trailer!.chunk_count}`))).to.deep.equal(['h', 2, 3, 't2']);
    expect(out[0].header!.piece_sha256).to.have.length(3);
    expect(out[0].header!.max_range_calls).to.equal(4);
    expect(pulled).to.equal(5); // the header, chunks 0-3; not chunks 4-5 nor the trailer
  });

  it('property: ranges tile the stream in whole pieces, and piece hashes are the SHA-256 of each piece', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3000 }),
        fc.integer({ min: 1, max: 700 }),
        fc.integer({ min: 1, max: 20 }),
        fc.integer({ min: 1, max: 5 }),
        (values, piece, k, tensors) => {
          const sizes = Array.from({ length: tensors }, (_, i) => Math.floor((values * (i + 1)) / tensors) - Math.floor((values * i) / tensors));
          const ts: NamedTensor[] = sizes.map((n, i) => ({
            name: `t${i}`,
            dtype: 'float32',
            shape: [n],
            data: Float32Array.from({ length: n }, (_, j) => i * 1000 + j),
          }));
          const all = bytesOf(ts);
          const p = pieceHashes(ts, piece);
          expect(p.sha256).to.have.length(Math.ceil(all.length / piece));
          p.sha256.forEach((h, i) =>
            expect(h).to.equal(
              createHash('sha256')
                .update(all.subarray(i * piece, (i + 1) * piece))
                .digest('hex'),
            ),
          );
          const ranges = planRanges(all.length, piece, k);
          let at = 0;
          let nextPiece = 0;
          for (const r of ranges) {
            expect([r.offset, r.first, r.offset % piece]).to.deep.equal([at, nextPiece, 0]);
            expect(r.length).to.equal(Math.min(all.length, (r.first + r.count) * piece) - r.offset);
            at += r.length;
            nextPiece += r.count;
          }
          expect([at, ranges.length <= k]).to.deep.equal([all.length, true]);
        },
      ),
      { seed: 8, numRuns: 200 },
    );
  });
});
