// rounds.reconnectGraceMs over real gRPC: a selected site whose task stream ends mid-round (as one does when a
// loaded box starves a keepalive) is still waited for while it has been away less than the grace. Back in time
// (a new Join and task stream: the coordinator re-sends its open task) its update and report count, and the
// version is the same bytes as a round without the blip. A site that stays away is waited for until its grace
// ends and no longer; 0 keeps the old rule (left out at once).
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Manifest } from '../coordinator/checkpoints/types';
import { ClientRegistry, type TaskSink } from '../coordinator/registry';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import {
  join,
  nextTask,
  rawClient,
  reportMetrics,
  siteDelta,
  smallAdapter,
  startCoordinator,
  tempDir,
  upload,
  uploadFrames,
  type Harness,
  type JoinedRaw,
} from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

interface Site {
  who: JoinedRaw;
  task: TrainTask__Output;
  cancel(): void;
}

async function open(c: RawClient, name: string): Promise<Site> {
  const who = await join(c, name);
  const { task, stream } = nextTask(c, who.session_token);
  return { who, task: await task, cancel: () => stream.cancel() };
}

async function finish(c: RawClient, s: Site): Promise<void> {
  await upload(c, uploadFrames({ who: s.who, task: s.task }, siteDelta(s.who.name, smallAdapter(0))));
  await reportMetrics(c, s.who.session_token, s.task.task_id, s.task.round, { train_loss: s.who.name === 'site-a' ? 1 : 2 });
}

interface Round {
  manifest: Manifest;
  adapterSha256: string;
  /** ms from site-b's stream ending to the commit (blips only). */
  afterDropMs: number;
}

/**
 * One round with site-a and site-b. With `blip`, site-b's task stream ends before site-a finishes; `returnAfterMs`
 * later it joins again (a new session), takes its re-sent task and finishes; undefined: it never comes back.
 */
async function oneRound(graceMs: number, blip: boolean, returnAfterMs?: number): Promise<Round> {
  const dir = await tempDir('fedtune-grace-');
  let h: Harness | undefined;
  const c: RawClient[] = [];
  try {
    h = await startCoordinator(dir, { total: 1, minUpdates: blip && returnAfterMs === undefined ? 1 : 2, reconnectGraceMs: graceMs });
    const committed = new Promise<number>((r) => h!.coordinator.on('roundCommitted', (e: { version: number }) => e.version === 1 && r(Date.now())));
    c.push(rawClient(h.address), rawClient(h.address));
    const [a, b] = await Promise.all([open(c[0], 'site-a'), open(c[1], 'site-b')]);
    let droppedAt = NaN;
    if (blip) {
      b.cancel();
      droppedAt = Date.now();
      // The coordinator has seen the stream end once site-b is no longer connected.
      while (h.coordinator.registry.isLive(b.who.client_id)) await new Promise((r) => setTimeout(r, 5));
    }
    await finish(c[0], a);
    if (!blip) await finish(c[1], b);
    else if (returnAfterMs !== undefined) {
      await new Promise((r) => setTimeout(r, returnAfterMs));
      const back = await open(c[1], 'site-b');
      expect(back.task.task_id, 'the open task is re-sent').to.equal(b.task.task_id);
      await finish(c[1], back);
    }
    const at = await committed;
    const vdir = path.join(dir, 'versions', 'v000001');
    const manifest = JSON.parse(await fs.readFile(path.join(vdir, 'manifest.json'), 'utf8')) as Manifest;
    const adapterSha256 = createHash('sha256')
      .update(await fs.readFile(path.join(vdir, 'adapter_model.safetensors')))
      .digest('hex');
    return { manifest, adapterSha256, afterDropMs: at - droppedAt };
  } finally {
    for (const x of c) x.close();
    await h?.coordinator.stop(500);
    await fs.rm(dir, { recursive: true, force: true });
  }
}

const names = (m: Manifest): string[] => m.participants.map((p) => p.clientName).sort();

describe('reconnect grace (rounds.reconnectGraceMs, real coordinator over gRPC)', function () {
  this.timeout(60_000);

  it('counts a site whose task stream dropped and came back within the grace: the same bytes as without the blip', async () => {
    const plain = await oneRound(5_000, false);
    const blipped = await oneRound(5_000, true, 300);
    expect(names(blipped.manifest)).to.deep.equal(['site-a', 'site-b']);
    expect(blipped.manifest.participants.map((p) => p.metrics.train_loss).sort()).to.deep.equal([1, 2]);
    expect(blipped.adapterSha256).to.equal(plain.adapterSha256);
    expect(names(plain.manifest)).to.deep.equal(['site-a', 'site-b']);
  });

  it('waits for a site that stays away until its grace ends, and no longer (deadline 20 s)', async () => {
    const r = await oneRound(1_500, true);
    expect(names(r.manifest)).to.deep.equal(['site-a']);
    expect(r.afterDropMs).to.be.at.least(1_500);
    expect(r.afterDropMs).to.be.below(10_000);
  });

  it('with a grace of 0 leaves a disconnected site out at once, as before', async () => {
    const r = await oneRound(0, true);
    expect(names(r.manifest)).to.deep.equal(['site-a']);
    expect(r.afterDropMs).to.be.below(1_500);
  });

  it("the registry's clock: a rejoin keeps the time away, a new stream ends it, a Leave or a revocation makes it endless", () => {
    const r = new ClientRegistry();
    let revoked = false;
    r.setAdmission(() => !revoked);
    const sink = (): TaskSink => ({ write: () => undefined, end: () => undefined });
    const key = new Uint8Array(32);
    const first = r.join('site-a', 'test', {}, key);
    const id = first.clientId;
    expect(r.awayMs(id), 'joined, never streamed').to.equal(Infinity);
    const s1 = sink();
    r.attach(first, s1);
    expect(r.awayMs(id)).to.equal(0);
    const t0 = Date.now();
    r.detach(first, s1);
    expect(r.awayMs(id, t0 + 700)).to.be.within(700 - (Date.now() - t0), 700);
    const again = r.join('site-a', 'test', {}, key);
    expect(r.awayMs(id, t0 + 900), 'a new session does not restart the clock').to.be.within(900 - (Date.now() - t0), 900);
    r.attach(again, sink());
    expect([r.awayMs(id), r.isLive(id)]).to.deep.equal([0, true]);
    const s3 = sink();
    const tj = Date.now();
    const third = r.join('site-a', 'test', {}, key);
    const at = Date.now() + 50;
    expect(r.awayMs(id, at), 'a rejoin over a live stream starts the clock').to.be.within(50, at - tj);
    r.attach(third, s3);
    revoked = true;
    expect(r.awayMs(id)).to.equal(Infinity);
    revoked = false;
    r.leave(third.token);
    expect(r.awayMs(id)).to.equal(Infinity);
  });
});
