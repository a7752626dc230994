// A parallel download's range call broken in transit (client-sdk/download-retry.ts, download-range-worker.ts):
// the range is asked for again from its first unchecked piece, a bounded number of times, and the download lands
// byte for byte; a connection that breaks every time fails the download after those attempts with the transport's
// status, no path in it. Real coordinator, real gRPC, real threads; the break is a TCP relay between the range
// workers and the coordinator that cuts a connection mid-stream.
import * as grpc from '@grpc/grpc-js';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { parallelDownloads, rangeStats } from '../client-sdk/download-ranges';
import { RANGE_ATTEMPTS, retryable, retryDelayMs, RETRY_HINT_MAX_MS } from '../client-sdk/download-retry';
import { benchAdapter, startDownloadCoordinator } from '../bench/download-site';
import { benchJoin } from '../bench/bench-join';
import { ProtocolError, status } from '../proto/errors';
import { loadFedtuneProto } from '../proto/load';
import type { NamedTensor } from '../proto/tensors';
import { tcpRelay } from './tcp-relay';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const bytesOf = (ts: NamedTensor[]): Buffer => Buffer.concat(ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));

describe('parallel downloads: a range broken in transit is retried', function () {
  // 16 tensors of 40,960 values (2.5 MiB): 10 pieces of 256 KiB over 3 range calls.
  const adapter = benchAdapter(16 * 40_960);
  let coordinator: Awaited<ReturnType<typeof startDownloadCoordinator>>;
  before(async () => {
    coordinator = await startDownloadCoordinator(adapter, 64 << 10, undefined, { pieceBytes: 256 << 10 });
  });
  after(async () => {
    await coordinator?.stop();
  });

  /** Joins directly; the range calls go through `via` (each range worker opens its own connection there). */
  async function downloadVia(via: string, name: string, rangeTransport?: 'http2' | 'grpc-js'): Promise<NamedTensor[]> {
    const rpc = new (loadFedtuneProto().fedtune.v1.Federation)(coordinator.address, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS });
    try {
      const { sessionToken } = await benchJoin(rpc, name);
      return await downloadAdapter(
        rpc,
        sessionToken,
        0,
        undefined,
        false,
        parallelDownloads({ address: via, downloadStreams: 3, rangeTransport }, { ...SITE_CHANNEL_OPTIONS }),
      );
    } finally {
      rpc.close();
    }
  }

  it('asks again for the rest of a range cut mid-stream and lands the same bytes, over either range client', async () => {
    for (const rangeTransport of ['http2', 'grpc-js'] as const) {
      const r = await tcpRelay(coordinator.address, (n) => (n === 1 ? 600_000 : undefined));
      try {
        const before = rangeStats.retries;
        const got = await downloadVia(r.address, `cut-once-${rangeTransport}`, rangeTransport);
        expect(r.cuts()).to.equal(1);
        expect(rangeStats.retries - before).to.be.at.least(1);
        expect(bytesOf(got).equals(bytesOf(adapter))).to.equal(true);
      } finally {
        r.close();
      }
    }
  });

  it(`gives up after ${RANGE_ATTEMPTS} calls of a range when every connection breaks, with the transport's status and no path`, async () => {
    const r = await tcpRelay(coordinator.address, () => 100_000); // less than a piece: no attempt gets further than the last;
    try {
      const e = (await downloadVia(r.address, 'cut-always').then(
        () => expect.fail('a download over connections that always break succeeded'),
        (x: unknown) => x,
      )) as { code: number; message: string };
      expect([status.UNAVAILABLE, status.INTERNAL], e.message).to.include(e.code);
      expect(e.message).to.not.match(/\/(tmp|home|work)\//);
      // Each of the three ranges was tried at most RANGE_ATTEMPTS times (the first cut range fails the download).
      expect(r.cuts()).to.be.within(RANGE_ATTEMPTS, 3 * RANGE_ATTEMPTS);
    } finally {
      r.close();
    }
  });

  it('retries only what broke in transit, after a bounded wait', () => {
    expect(retryable(Object.assign(new Error('x'), { code: status.UNAVAILABLE }))).to.equal(true);
    expect(retryable(Object.assign(new Error('x'), { code: status.INTERNAL }))).to.equal(true);
    // The peer's refusals of the request, and the worker's own refusals of what the peer sent, are final.
    for (const code of [status.INVALID_ARGUMENT, status.OUT_OF_RANGE, status.UNAUTHENTICATED, status.NOT_FOUND, status.DATA_LOSS]) {
      expect(retryable(Object.assign(new Error('x'), { code }))).to.equal(false);
    }
    expect(retryable(new ProtocolError(status.INTERNAL, 'piece 3 does not match its SHA-256'))).to.equal(false);
    expect([retryDelayMs(1, null, () => 0), retryDelayMs(3, null, () => 1), retryDelayMs(9, null, () => 1)]).to.deep.equal([50, 400, 2000]);
    const md = new grpc.Metadata();
    md.set('retry-after-ms', String(3_600_000));
    expect(retryDelayMs(1, { code: status.RESOURCE_EXHAUSTED, metadata: md }, () => 0)).to.equal(RETRY_HINT_MAX_MS);
  });
});
