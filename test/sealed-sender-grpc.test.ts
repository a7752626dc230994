// sendSealed (client-sdk/sealed-sender.ts) against the real coordinator over loopback gRPC: the header, the
// chunks and the trailer reach acceptance (with 'drain' backpressure over many frames), a resumed upload is
// answered, and a refusal rejects with the coordinator's status. The frames themselves:
// test/sealed-spool-sender.test.ts.
import { status } from '@grpc/grpc-js';
import { sealDelta, sendSealed, type SealContext } from '../client-sdk/sealed-sender';
import { refusal, smallAdapter, startCoordinator, tempDir } from './harness';
import { twoSitesInRound } from './sites-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('sendSealed, against the real coordinator over gRPC', function () {
  this.timeout(60_000);

  it('streams a header, the chunks and the trailer to acceptance (a resumed upload too; 58 frames wait for drain), and rejects with the coordinator’s refusal', async () => {
    const h = await startCoordinator(await tempDir('sealed-sender'));
    const round = await twoSitesInRound(h);
    try {
      const { c, a, taskA } = round;
      const ctx: SealContext = {
        token: a.session_token,
        runId: a.run_id,
        clientId: a.client_id,
        coordinator: a.coordinator,
        identitySecretKey: a.identity.secretKey,
        chunkBytes: 8,
      };
      // A refusal: another site's session token on a's task (the coordinator answers at the header).
      const err = await refusal(sendSealed(c, sealDelta({ ...ctx, token: round.b.session_token }, taskA, smallAdapter(0.5), 10)));
      expect(status[err.code]).to.equal('PERMISSION_DENIED');
      // Accepted: 56 bytes in 8-byte chunks (seven chunk frames).
      const f = sealDelta(ctx, taskA, smallAdapter(0.5), 10);
      expect(f.sealed.chunks.length).to.equal(7);
      await sendSealed(c, f);
      // Sent again: the same sealed frames are a resumed upload, answered without error.
      await sendSealed(c, f);
      // 1-byte chunks: 58 frames, more than the call's write buffer holds, so the sender waits for 'drain'.
      const b = round.b;
      const fb = sealDelta(
        { ...ctx, token: b.session_token, clientId: b.client_id, identitySecretKey: b.identity.secretKey, chunkBytes: 1 },
        round.taskB,
        smallAdapter(0.5),
        10,
      );
      expect(fb.sealed.chunks.length).to.equal(56);
      await sendSealed(c, fb);
    } finally {
      await round.close();
    }
  });
});
