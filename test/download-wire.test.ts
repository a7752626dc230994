// The download's serve and landing path without per-call copies (coordinator/download-wire.ts,
// client-sdk/download-ranges.ts): every frame of the latest version's image goes to grpc-js already framed and is
// sent as it is, and a site's second parallel download of the same size lands in the buffer of its first; both
// downloads arrive byte for byte. Real coordinator, real gRPC, real threads.
import type { NamedTensor } from '../proto/tensors';
import { rangeStats } from '../client-sdk/download-ranges';
import { wireStats } from '../coordinator/download-wire';
import { benchAdapter, joinDownloadSite, startDownloadCoordinator } from '../bench/download-site';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const bytesOf = (ts: NamedTensor[]): Buffer => Buffer.concat(ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));

describe('download wire (frames sent as encoded, landing buffer reused)', function () {
  it('sends every frame of a parallel download as framed once, and reuses the landing buffer, bit-exact', async () => {
    // 16 tensors of 40,960 values (2.5 MiB): 10 pieces of 256 KiB, 40 chunks of 64 KiB.
    const adapter = benchAdapter(16 * 40_960);
    const coordinator = await startDownloadCoordinator(adapter, 64 << 10, undefined, { pieceBytes: 256 << 10 });
    const site = await joinDownloadSite(coordinator.address, 3, 'wire');
    try {
      const sent = wireStats.framesSentAsIs;
      const reused = rangeStats.landingsReused;
      const first = await site.download(0);
      // The header-only call's header; then per range call its header and trailer, and every chunk once.
      expect(wireStats.framesSentAsIs - sent).to.equal(1 + 3 * 2 + 40);
      const second = await site.download(0);
      expect(rangeStats.landingsReused - reused).to.be.at.least(1);
      expect(bytesOf(first).equals(bytesOf(adapter))).to.equal(true);
      expect(bytesOf(second).equals(bytesOf(adapter))).to.equal(true);
      // The tensors are copies: the reused buffer is never the caller's.
      for (const t of [...first, ...second]) expect(t.data.buffer).to.be.instanceOf(ArrayBuffer);
    } finally {
      site.close();
      await coordinator.stop();
    }
  });
});
