// FederationClient.run() owns its gRPC channel: once the run is over (finished, or failed for good) the channel
// is shut down, so a site process that ran a federation has nothing left open; stop() after it is harmless.
// Real coordinator, real gRPC.
import { promises as fs } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { FederationClient } from '../client-sdk/client';
import { ConstantTrainer, startCoordinator, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const channelState = (c: FederationClient): grpc.connectivityState => (c as unknown as { rpc: grpc.Client }).rpc.getChannel().getConnectivityState(false);

describe('client SDK: the gRPC channel ends with the run', function () {
  this.timeout(30_000);

  it('is shut down when run() resolves or rejects; stop() afterwards resolves', async () => {
    const h = await startCoordinator(await tempDir('client-channel'), { total: 1 });
    try {
      const sites = ['a', 'b'].map(
        (name) =>
          new FederationClient({
            address: h.address,
            name,
            identity: testIdentity(name),
            trainer: new ConstantTrainer(0.5),
            backoff: { initialMs: 50, maxMs: 200, factor: 2 },
          }),
      );
      for (const s of sites) expect(channelState(s)).to.not.equal(grpc.connectivityState.SHUTDOWN);
      const summaries = await Promise.all(sites.map((s) => s.run()));
      expect(summaries.map((s) => s.finalVersion)).to.deep.equal([1, 1]);
      for (const s of sites) expect(channelState(s)).to.equal(grpc.connectivityState.SHUTDOWN);
      for (const s of sites) await s.stop();

      // A run refused for good (a site name with another key): rejected, and its channel shut down too.
      const impostor = new FederationClient({ address: h.address, name: 'a', identity: testIdentity('not-a'), trainer: new ConstantTrainer(0.5) });
      const err = await impostor.run().catch((e: unknown) => e as grpc.ServiceError);
      expect(grpc.status[(err as grpc.ServiceError).code]).to.equal('PERMISSION_DENIED');
      expect(channelState(impostor)).to.equal(grpc.connectivityState.SHUTDOWN);
      await impostor.stop();
    } finally {
      await h.coordinator.stop(200);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });
});
