// sendSealed (client-sdk/sealed-sender.ts) against the real coordinator over loopback gRPC, watching what the
// sender does with its call: the client is the real one, wrapped only to record each write, each end() and the
// moment the coordinator's answer arrives. Mutation testing (bench/MUTATION.md, group sealed-sender) showed the
// acceptance/refusal test alone could not tell a sender that keeps writing after a refusal, or that never
// half-closes its call, from the real one.
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import type { FederationClient } from '../proto/generated/fedtune/v1/Federation';
import type { UploadResponse__Output } from '../proto/generated/fedtune/v1/UploadResponse';
import { sealDelta, sendSealed, type SealContext, type UploadMessage } from '../client-sdk/sealed-sender';
import { PREFIX, refusal, smallAdapter, startCoordinator, tempDir } from './harness';
import { twoSitesInRound } from './sites-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

interface CallLog {
  /** 'write' or 'end' in call order, and 'answer' where the coordinator's answer arrived. */
  readonly events: string[];
}

/**
 * The real client; the client-streaming calls it opens (sendSealed opens UploadUpdate with its own serializer,
 * through makeClientStreamRequest) log their writes, their end() and the answer's arrival.
 */
function recording(c: FederationClient, log: CallLog): FederationClient {
  type Callback = (err: grpc.ServiceError | null, res?: UploadResponse__Output) => void;
  const open = (
    method: string,
    serialize: (m: UploadMessage) => Buffer,
    deserialize: (b: Buffer) => UploadResponse__Output,
    cb: Callback,
  ): grpc.ClientWritableStream<UploadMessage> => {
    const call = c.makeClientStreamRequest(method, serialize, deserialize, (err: grpc.ServiceError | null, res?: UploadResponse__Output) => {
      log.events.push('answer');
      cb(err, res);
    });
    const write = call.write.bind(call) as (m: UploadMessage) => boolean;
    const end = call.end.bind(call) as () => grpc.ClientWritableStream<UploadMessage>;
    call.write = ((m: UploadMessage) => {
      log.events.push('write');
      return write(m);
    }) as typeof call.write;
    call.end = (() => {
      log.events.push('end');
      return end();
    }) as typeof call.end;
    return call;
  };
  return new Proxy(c, { get: (t, k) => (k === 'makeClientStreamRequest' ? open : (Reflect.get(t, k) as unknown)) });
}

describe('sendSealed: what it writes to its call', function () {
  this.timeout(60_000);

  it('writes every frame then ends the call before the answer; after an early refusal it writes nothing more', async () => {
    const h = await startCoordinator(await tempDir('sealed-sender-mutants'));
    const round = await twoSitesInRound(h);
    try {
      const { c, a, b, taskA } = round;
      const ctx: SealContext = {
        token: a.session_token,
        runId: a.run_id,
        clientId: a.client_id,
        coordinator: a.coordinator,
        identitySecretKey: a.identity.secretKey,
        chunkBytes: 8,
      };
      // Accepted, 9 frames (header, 7 chunks, trailer): fewer than the call buffers, so no write waits and the
      // call is half-closed right after the trailer, before the coordinator answers.
      const ok: CallLog = { events: [] };
      await sendSealed(recording(c, ok), sealDelta(ctx, taskA, smallAdapter(0.5), 10));
      expect(ok.events).to.deep.equal([...Array<string>(9).fill('write'), 'end', 'answer']);

      // Refused at the header (b's token on a's task), with 4 MiB in 64 KiB chunks: the sender is still waiting
      // for 'drain' when the refusal arrives, and must then stop: no write and no end() after the answer.
      const big = [{ name: `${PREFIX}.lora_A.weight`, dtype: 'float32' as const, shape: [1 << 20], data: new Float32Array(1 << 20).fill(0.25) }];
      const refused: CallLog = { events: [] };
      const f = sealDelta({ ...ctx, token: b.session_token, chunkBytes: 1 << 16 }, taskA, big, 10);
      expect(f.sealed.chunks.length).to.equal(64);
      const err = await refusal(sendSealed(recording(c, refused), f));
      expect(status[err.code]).to.equal('PERMISSION_DENIED');
      // Let a sender that would go on writing do so before the log is read.
      await new Promise((r) => setTimeout(r, 200));
      const answerAt = refused.events.indexOf('answer');
      expect(answerAt, 'the refusal arrives before all 66 frames were written').to.be.within(1, 66);
      expect(refused.events.slice(answerAt)).to.deep.equal(['answer']);
      expect(refused.events.slice(0, answerAt).every((e) => e === 'write')).to.equal(true);
    } finally {
      await round.close();
    }
  });
});
