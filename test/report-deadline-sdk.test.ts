// A site's connection that goes half-open (blackholed: nothing passes either way, nothing is closed, as when a host
// or middlebox on the way is gone without a FIN or RST) during its ReportMetrics call. Before the report deadline
// and the SDK's keepalive of seconds, the report waited on it until the connection was given up: 150 s (keepalive
// 30 s + 120 s). Now the call's deadline (reportDeadlineMs) ends each copy, which is sent again while its task is
// current (the coordinator counts an identical repeat once), and the keepalive drops the dead connection, so the
// report lands on a new one; or, when the blackhole lifts first, it lands on the same connection. Either way it
// counts once, and the run is the same bits as one without the blackhole. Real coordinator on a tiny Llama
// directory, real training, real gRPC (reconnect-sdk-kit.ts); site-b behind a TCP relay (tcp-relay.ts). And the
// coordinator's own keepalive (transport.keepaliveTimeMs) closes a site's half-open connection.
import * as path from 'node:path';
import { status } from '@grpc/grpc-js';
import { expectRanOnce, SdkRig } from './reconnect-sdk-kit';
import { tcpRelay } from './tcp-relay';
import { join, rawClient, startCoordinator } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('report deadline and keepalive with the SDK: a connection blackholed during a report (real coordinator, training and gRPC)', function () {
  this.timeout(180_000);
  const rig = new SdkRig();
  before(() => rig.setUp('report-deadline-sdk'));
  after(() => rig.tearDown());

  it('blackholed for good during its ReportMetrics call (default deadline and keepalive): the report lands on a new connection, counted once, far sooner than 150 s', async () => {
    let at = 0;
    const r = await rig.oneRound('blackhole', [], {
      arm: (_, relay) => void relay.onSiteBytes(/train_loss/, 'blackhole').then(() => (at = Date.now())),
    });
    expect(at, 'the relay saw the report call').to.be.above(0);
    expectRanOnce(r);
    // The blackhole never lifted, so the copy that counted came on another connection: the keepalive dropped the
    // dead one (the task stream reopened under the same session) and the report was sent again.
    expect(r.b.reconnects, 'the dead connection was dropped').to.be.at.least(1);
    expect(r.b.resent, 'the report was sent again').to.be.at.least(1);
    // Deadline 20 s, keepalive 10 s + 25 s: found within 35 s; the bound is generous for a loaded box.
    expect(r.committedAt - at, 'committed long before the 150 s a half-open connection took').to.be.below(75_000);
    await rig.expectSameBits(r);
  });

  it('blackholed during its ReportMetrics call until the call outlived its deadline and was sent again: both copies land when it lifts, counted once, on the same connection', async () => {
    let at = 0;
    const r = await rig.oneRound('blackhole-lifted', [], {
      siteB: { reportDeadlineMs: 1_000 },
      arm: (_, relay) => void relay.onSiteBytes(/train_loss/, 'blackhole').then(() => (at = Date.now())),
      onResent: (relay) => relay.lift(),
    });
    expect(at, 'the relay saw the report call').to.be.above(0);
    expectRanOnce(r);
    // The first copy ran out of its deadline (grpc-js's own timer) and was sent again; the blackhole lifted then,
    // within the keepalive's timeout, so the connection was never dropped.
    expect(r.b.resentAfter[0]).to.match(new RegExp(`^${status.DEADLINE_EXCEEDED} DEADLINE_EXCEEDED: Deadline exceeded`));
    expect(r.b.reconnects, 'the connection was kept').to.equal(0);
    await rig.expectSameBits(r);
  });

  it("the coordinator's keepalive closes a site's half-open connection: its task stream is gone in seconds, so the reconnect grace starts", async () => {
    const h = await startCoordinator(path.join(rig.tmp, 'server-keepalive'), {}, { transport: { keepaliveTimeMs: 1_000, keepaliveTimeoutMs: 1_000 } });
    const relay = await tcpRelay(h.address);
    const c = rawClient(relay.address);
    try {
      const registry = h.coordinator.registry;
      const site = await join(c, 'site-x');
      const attached = new Promise((r) => registry.on('attached', r));
      const stream = c.StreamTasks({ session_token: site.session_token });
      stream.on('error', () => undefined);
      await attached;
      expect(registry.isLive(site.client_id)).to.equal(true);
      const gone = new Promise<void>((r) => registry.on('change', () => !registry.isLive(site.client_id) && r()));
      const at = Date.now();
      relay.blackholeAll(); // the raw client has no keepalive: only the coordinator can find the connection dead
      await gone;
      expect(Date.now() - at, 'found by a ping of 1 s and its 1 s timeout, not by TCP (minutes)').to.be.below(15_000);
      expect(registry.awayMs(site.client_id), 'away, not gone: the grace counts from here').to.be.within(0, 15_000);
    } finally {
      c.close();
      relay.close();
      await h.coordinator.stop(500);
    }
  });
});
