// A stale join challenge is not a refused identity, over real gRPC: a site whose Join reaches the coordinator after
// its Hello challenge expired (its Hello answer waited in a starved process, say) is answered ABORTED, and the SDK
// starts again from Hello and joins, where it used to give up for good on UNAUTHENTICATED. A pass-through hop in
// front of a real coordinator holds the first Join past the challenge's lifetime (auth.challengeTtlMs).
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { promises as fs } from 'node:fs';
import { FederationClient } from '../client-sdk/client';
import type { HelloResponse__Output } from '../proto/generated/fedtune/v1/HelloResponse';
import type { JoinResponse__Output } from '../proto/generated/fedtune/v1/JoinResponse';
import type { FederationHandlers } from '../proto/generated/fedtune/v1/Federation';
import type { Trainer } from '../client-sdk/trainer';
import { rawClient, serveFederation, startCoordinator, tempDir, testIdentity, type Harness } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const idle: Trainer = {
  backend: 'test',
  train: async () => {
    throw new Error('no training in this test');
  },
};
const TTL_MS = 300;

describe('a stale join challenge: ABORTED, and the SDK joins with a fresh one', function () {
  this.timeout(30_000);
  let a: Harness;
  let hop: grpc.Server;
  let hopAddress = '';
  const answers: string[] = [];

  before(async () => {
    a = await startCoordinator(await tempDir('join-stale'), { total: 1, minClients: 5 }, { auth: { mode: 'tofu', challengeTtlMs: TTL_MS } });
    const toA = rawClient(a.address);
    let joins = 0;
    const handlers: Partial<FederationHandlers> = {
      Hello(call, cb) {
        toA.Hello(call.request, (e: grpc.ServiceError | null, r?: HelloResponse__Output) => cb(e, r));
      },
      Join(call, cb) {
        // The first Join arrives after its challenge expired; the others go straight through.
        const hold = ++joins === 1 ? TTL_MS + 400 : 0;
        setTimeout(
          () =>
            toA.Join(call.request, (e: grpc.ServiceError | null, r?: JoinResponse__Output) => {
              answers.push(e ? `${status[e.code]} ${e.details}` : 'OK');
              cb(e, r);
            }),
          hold,
        );
      },
    };
    ({ server: hop, address: hopAddress } = await serveFederation(handlers));
  });

  after(async () => {
    hop.forceShutdown();
    await a.coordinator.stop(500);
    await fs.rm(a.runDir, { recursive: true, force: true });
  });

  it('the late Join is answered ABORTED naming the expiry; the site starts again from Hello and is admitted', async () => {
    const c = new FederationClient({ address: hopAddress, name: 'slow-site', identity: testIdentity('slow-site'), trainer: idle });
    const joined = new Promise<{ clientId: string }>((res) => c.once('joined', res));
    const run = c.run().catch((e: Error) => e);
    const first = await Promise.race([joined, run.then((e) => Promise.reject(e instanceof Error ? e : new Error('run ended before joining')))]);
    expect(first.clientId).to.match(/./);
    expect(answers).to.have.length(2);
    expect(answers[0]).to.match(/^ABORTED join challenge expired at \S+: call Hello for a fresh one$/);
    expect(answers[1]).to.equal('OK');
    expect(a.coordinator.registry.byId(first.clientId)?.name).to.equal('slow-site'); // a session at the coordinator
    await c.stop();
    await run;
  });
});
