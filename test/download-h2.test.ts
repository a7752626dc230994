// The range workers' own HTTP/2 client (client-sdk/download-range-h2.ts, download-grpc-frames.ts): it lands a real
// coordinator's version byte for byte over plain and mutual-TLS channels (tls.test.ts) and through broken
// connections (download-retry.test.ts); here, against a coordinator written by hand on node:http2, it decodes every
// layout protobuf allows, refuses what breaks gRPC's rules with grpc-js's statuses (oversize and compressed
// messages before anything is made for them, a non-gRPC answer, a cut inside a message, a missing trailer), maps a
// refusal, an HTTP status and a retry hint as grpc-js does; and a channel it cannot make as grpc-js would keeps
// its ranges on grpc-js. Real threads, real sockets.
import * as grpc from '@grpc/grpc-js';
import { downloadAdapter, SITE_CHANNEL_OPTIONS } from '../client-sdk/download';
import { parallelDownloads, rangeStats } from '../client-sdk/download-ranges';
import { CallStatusError, h2Eligible } from '../client-sdk/download-range-h2';
import { RANGE_ATTEMPTS, retryDelayMs } from '../client-sdk/download-retry';
import { benchAdapter } from '../bench/download-site';
import { status } from '../proto/errors';
import { loadFedtuneProto } from '../proto/load';
import type { NamedTensor } from '../proto/tensors';
import { startH2Hostile, type H2Fault } from './download-h2-hostile';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const bytesOf = (ts: NamedTensor[]): Buffer => Buffer.concat(ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
const CHUNK = 16 << 10;
const PIECE = 64 << 10;

describe('parallel downloads over the range workers’ own HTTP/2 client', function () {
  // 16 tensors of 5,003 values (320,192 bytes): 5 pieces of 64 KiB over 3 range calls, the last chunk short.
  const adapter = benchAdapter(16 * 5003);

  /** Downloads from a hand-written coordinator showing `fault`; resolves with the tensors or the refusal, and the range calls it saw. */
  async function against(
    fault: H2Fault,
    rangeTransport: 'http2' | 'grpc-js' = 'http2',
  ): Promise<{ got?: NamedTensor[]; err?: { code: number; message: string }; calls: number }> {
    const h = await startH2Hostile(adapter, CHUNK, PIECE, fault);
    const rpc = new (loadFedtuneProto().fedtune.v1.Federation)(h.address, grpc.credentials.createInsecure(), { ...SITE_CHANNEL_OPTIONS });
    try {
      const parallel = parallelDownloads({ address: h.address, downloadStreams: 3, rangeTransport }, { ...SITE_CHANNEL_OPTIONS })!;
      expect(parallel.channel.transport).to.equal(rangeTransport);
      const before = rangeStats.ranges;
      const out = await downloadAdapter(rpc, 'token', 0, undefined, false, parallel).then(
        (got) => ({ got }),
        (err: { code: number; message: string }) => ({ err }),
      );
      expect(rangeStats.ranges - before).to.equal(3);
      return { ...out, calls: h.rangeCalls() };
    } finally {
      rpc.close();
      await h.stop();
    }
  }

  it('lands a version sent plainly, and one whose chunks use layouts the coordinator never writes, byte for byte', async () => {
    for (const fault of ['none', 'layouts'] as const) {
      const r = await against(fault);
      expect(r.err, fault).to.equal(undefined);
      expect(bytesOf(r.got!).equals(bytesOf(adapter)), fault).to.equal(true);
      expect(r.calls).to.equal(3);
    }
  });

  it("refuses what breaks gRPC's framing with grpc-js's statuses, and maps refusals and HTTP statuses as grpc-js does", async () => {
    // [fault, status and message over this client, retried, the status over grpc-js against the same peer]. UNKNOWN
    // may be a proxy's passing fault and a reset a broken transfer, so they are tried again (download-retry.ts).
    // Where the two clients differ it is said why.
    const cases: [H2Fault, number, RegExp, boolean, number][] = [
      // Bounded before anything is made for it: 2 GiB announced, grpc-js's default limit of 4 MiB. Final here: the
      // peer's fault (grpc-js reports the same status and message, and its range is retried).
      ['oversize', status.RESOURCE_EXHAUSTED, /^Received message larger than max \(2147483647 vs 4194304\)$/, false, status.RESOURCE_EXHAUSTED],
      // grpc-js fails this one INTERNAL too, with "undefined undefined: undefined" for a message.
      ['compressed', status.INTERNAL, /compressed message \(flag 1\)/, false, status.INTERNAL],
      ['refused', status.PERMISSION_DENIED, /^no access for this site$/, false, status.PERMISSION_DENIED],
      ['http404', status.UNIMPLEMENTED, /^Received HTTP status code 404$/, false, status.UNIMPLEMENTED],
      // grpc-js reads the page as gRPC messages and refuses its first "length" (RESOURCE_EXHAUSTED); both retry.
      ['html', status.UNKNOWN, /content-type "text\/html"/, true, status.RESOURCE_EXHAUSTED],
      // grpc-js drops the partial message and then misses the trailer: DATA_LOSS either way.
      ['cutInside', status.DATA_LOSS, /^download ended inside a message$/, false, status.DATA_LOSS],
      ['noTrailer', status.DATA_LOSS, /^download ended without its trailer$/, false, status.DATA_LOSS],
      ['reset', status.INTERNAL, /^Received RST_STREAM with code 2 \(Internal server error\)$/, true, status.INTERNAL],
    ];
    for (const [fault, code, message, retried, grpcCode] of cases) {
      const r = await against(fault);
      expect(r.got, fault).to.equal(undefined);
      expect([fault, r.err!.code]).to.deep.equal([fault, code]);
      expect(r.err!.message, fault).to.match(message);
      // The peer's faults and its refusals are final. The first range refused cancels the others, some maybe
      // before their call went out.
      expect(r.calls, fault).to.be.within(retried ? RANGE_ATTEMPTS : 1, retried ? 3 * RANGE_ATTEMPTS : 3);
      const viaGrpc = await against(fault, 'grpc-js');
      expect([fault, viaGrpc.err?.code]).to.deep.equal([fault, grpcCode]);
    }
  });

  it('retries a range refused RESOURCE_EXHAUSTED with a retry hint, then lands it exactly', async () => {
    const before = rangeStats.retries;
    const r = await against('busyOnce');
    expect(r.err).to.equal(undefined);
    expect(bytesOf(r.got!).equals(bytesOf(adapter))).to.equal(true);
    expect([r.calls, rangeStats.retries - before]).to.deep.equal([6, 3]);
    expect(RANGE_ATTEMPTS).to.be.at.least(2);
  });

  it('takes only channels it makes as grpc-js would; the rest, or a site that asks, stay on grpc-js', () => {
    const spec = (address: string, options: Record<string, string | number> = {}) => ({ address, options });
    for (const a of ['127.0.0.1:50051', 'coordinator.example:443', '[::1]:50051']) expect(h2Eligible(spec(a)), a).to.equal(true);
    for (const a of ['dns:coordinator.example:443', 'unix:/run/fedtune.sock', 'coordinator.example', 'ipv4:127.0.0.1:1'])
      expect(h2Eligible(spec(a)), a).to.equal(false);
    expect(h2Eligible(spec('127.0.0.1:1', { 'grpc.http_proxy': 'http://proxy:3128' }))).to.equal(false);
    expect(h2Eligible(spec('127.0.0.1:1', { ...SITE_CHANNEL_OPTIONS, 'grpc.keepalive_time_ms': 30_000, 'grpc.max_receive_message_length': 8 << 20 }))).to.equal(
      true,
    );
    const transport = (o: Parameters<typeof parallelDownloads>[0], options: Record<string, unknown> = {}) => parallelDownloads(o, options)?.channel.transport;
    expect(transport({ address: '127.0.0.1:1', downloadStreams: 2 }, { ...SITE_CHANNEL_OPTIONS })).to.equal('http2');
    expect(transport({ address: '127.0.0.1:1', downloadStreams: 2, rangeTransport: 'grpc-js' })).to.equal('grpc-js');
    expect(transport({ address: 'dns:127.0.0.1:1', downloadStreams: 2, rangeTransport: 'http2' })).to.equal('grpc-js');
    // An option that cannot cross to a thread (an object) stays with the main channel; the ranges then go over grpc-js.
    expect(transport({ address: '127.0.0.1:1', downloadStreams: 2 }, { 'grpc.some_object': {} })).to.equal('grpc-js');
    // Its failures carry the trailers' metadata as grpc-js's do: a coordinator's retry hint is read from them.
    expect(retryDelayMs(1, new CallStatusError(status.RESOURCE_EXHAUSTED, 'busy', { 'retry-after-ms': '5000' }), () => 0)).to.equal(5000);
  });
});
