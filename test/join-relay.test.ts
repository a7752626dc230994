// Issue 13 #3 over real gRPC: a coordinator M that a site joins relays the site's join to another coordinator A
// (A's run id and challenge passed through, M's own keys shown to the site, which pins them). The site signs the
// coordinator keys it was shown, so A refuses the relayed join, whichever key id M claims; the site is never
// admitted at A. The same site joins A directly.
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { promises as fs } from 'node:fs';
import nacl from 'tweetnacl';
import { FederationClient } from '../client-sdk/client';
import { keyId } from '../proto/crypto/key-file';
import type { HelloResponse__Output } from '../proto/generated/fedtune/v1/HelloResponse';
import type { JoinRequest__Output } from '../proto/generated/fedtune/v1/JoinRequest';
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

describe('join signatures are bound to the coordinator (issue 13 #3)', function () {
  this.timeout(30_000);
  let a: Harness;
  let relay: grpc.Server;
  let relayAddress = '';
  const relayKeys = { sign: nacl.sign.keyPair(), box: nacl.box.keyPair() };
  const relayKeyId = keyId(relayKeys.sign.publicKey);
  let claim: 'relay' | 'a' = 'relay';
  const forwarded: JoinRequest__Output[] = [];

  before(async () => {
    a = await startCoordinator(await tempDir('join-relay'), { total: 1, minClients: 5 });
    const toA = rawClient(a.address);
    let aKeyId = '';
    // M: Hello passes A's run id and challenge through with M's keys; Join goes to A as the site sent it, with
    // the key id M chooses to claim.
    const handlers: Partial<FederationHandlers> = {
      Hello(call, cb) {
        toA.Hello(call.request, (e: grpc.ServiceError | null, r?: HelloResponse__Output) => {
          if (e || !r) return cb(e);
          aKeyId = r.coordinator!.key_id;
          cb(null, { ...r, coordinator: { key_id: relayKeyId, sign_public_key: relayKeys.sign.publicKey, box_public_key: relayKeys.box.publicKey } });
        });
      },
      Join(call, cb) {
        forwarded.push(call.request);
        const req = { ...call.request, coordinator_key_id: claim === 'a' ? aKeyId : call.request.coordinator_key_id };
        toA.Join(req, (e: grpc.ServiceError | null, r?: JoinResponse__Output) => cb(e, r));
      },
    };
    ({ server: relay, address: relayAddress } = await serveFederation(handlers));
  });

  after(async () => {
    relay.forceShutdown();
    await a.coordinator.stop(500);
    await fs.rm(a.runDir, { recursive: true, force: true });
  });

  async function joinThroughRelay(): Promise<grpc.ServiceError> {
    const c = new FederationClient({ address: relayAddress, name: 'victim', identity: testIdentity('victim'), trainer: idle, coordinatorKeyId: relayKeyId });
    try {
      await c.run();
    } catch (e) {
      return e as grpc.ServiceError;
    } finally {
      await c.stop();
    }
    throw new Error('the relayed join was admitted');
  }

  it('A refuses a join signed for M (M forwards it as is)', async () => {
    claim = 'relay';
    const e = await joinThroughRelay();
    expect(e.code).to.equal(status.UNAUTHENTICATED);
    expect(e.details).to.match(new RegExp(`join of site victim was signed for coordinator key ${relayKeyId}; this coordinator is [0-9a-f]{16}`));
    expect(forwarded).to.have.length(1);
    expect(a.coordinator.registry.connected().map((s) => s.name)).to.not.include('victim');
  });

  it("A refuses it too when M claims A's key id: the signature covers the keys the site saw", async () => {
    claim = 'a';
    const e = await joinThroughRelay();
    expect(e.code).to.equal(status.UNAUTHENTICATED);
    expect(e.details).to.match(/join signature of site victim does not verify/);
  });

  it('the same site joins A directly', async () => {
    const c = new FederationClient({ address: a.address, name: 'victim', identity: testIdentity('victim'), trainer: idle });
    const joined = new Promise<{ clientId: string }>((res) => c.once('joined', res));
    const run = c.run().catch(() => undefined);
    expect((await joined).clientId).to.match(/./);
    await c.stop();
    await run;
  });
});
