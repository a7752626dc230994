// The download bench (bench/download-bench.ts) keeps measuring what it says: every arm, with the sending side in a
// child process (bench/fixtures/download-sender.ts) and in this one, moves exactly the bytes it is timed for, the
// SDK arm's download matches the adapter byte for byte, the report carries every arm and the goal, and the child
// is gone afterwards. A tiny adapter and one repetition: no figure is asserted here (figures belong in
// `npm run bench`).
import { benchDownloads, downloadRows } from '../bench/download-bench';
import { spawnSenders } from '../bench/download-site';
import { rawHttp2, rawTcpSeconds } from '../bench/loopback-arms';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('download bench', () => {
  it('runs every arm over real loopback, two-process and same-process, and reports each against raw TCP', async () => {
    // 8 MiB and 16 KiB: three 4 MiB pieces, so the SDK arm goes over two range calls (the parallel path is what
    // the goal's figure measures); a version of one piece would come whole.
    const d = await benchDownloads((1 << 21) + (1 << 12), 1, 1 << 20, 2);
    expect(d.bytes).to.equal((1 << 23) + (1 << 14));
    // Two modes, two range arms (the workers' own HTTP/2 client and grpc-js): four range downloads of two calls.
    expect([d.download_streams, d.range_transport, d.parallel_downloads, d.ranges_per_parallel_download]).to.deep.equal([2, 'http2', 4, 2]);
    for (const arms of [d.arms_two_process, d.arms_same_process]) {
      expect(Object.keys(arms).sort()).to.deep.equal([
        'download',
        'download_grpc_js',
        'download_one_stream',
        'grpc_bare',
        'http2',
        'tcp',
        'tcp_hash',
        'tcp_hash_copy',
      ]);
      for (const a of Object.values(arms)) expect(a.seconds).to.have.length(1);
      expect(arms.tcp.over_tcp).to.equal(1);
    }
    expect(d.download_over_tcp_two_process).to.equal(d.arms_two_process.download.over_tcp);
    expect(d.download_over_tcp_same_process).to.equal(d.arms_same_process.download.over_tcp);
    expect(d.download_goal_met).to.equal(d.download_over_tcp_two_process >= 0.5 ? 1 : 0);
    expect(downloadRows(d)).to.have.length(9);
  });

  it('stops the sender process on close', async () => {
    const s = await spawnSenders(1 << 10, 1 << 20);
    const pid = s.pid!;
    expect(() => process.kill(pid, 0)).not.to.throw();
    await s.close();
    expect(() => process.kill(pid, 0)).to.throw();
  });

  it('its TCP and HTTP/2 arms wait for the last byte, whatever the tensor split', async () => {
    // An uneven split: the copying reader's last tensor is shorter than the others.
    for (const reader of ['count', 'hash', 'hash+copy'] as const) expect(await rawTcpSeconds(3 << 20, reader, 5 << 18)).to.be.greaterThan(0);
    const h = await rawHttp2(3 << 20);
    // Node's HTTP/2 frames the bytes in DATA frames of at most 16 KiB though the reader offers 2^24 - 1.
    expect(h.largestEvent).to.be.at.most(16384);
    expect(h.dataEvents).to.be.at.least((3 << 20) / 16384);
  });
});
