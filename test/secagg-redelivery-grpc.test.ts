// The coordinator's side of a SecAgg round whose sites lose their task streams, over real gRPC with five sites played
// by hand (SecAggClient + the raw stub; the masked upload sealed and sent by the SDK's sealed-sender): at every stage
// one site drops its stream and opens a new one under the same session before it answers. The coordinator waits for
// it (rounds.reconnectGraceMs) and delivers the current stage's message again on the new stream, the very same
// message; a repeat of a stage call that landed is refused (ALREADY_EXISTS), a masked upload sent again with the same
// sealed bytes is acknowledged and counted once, and a second, different masked input is refused (ALREADY_EXISTS), the
// sum untouched. The round commits bit-identically to fixed-point FedAvg of the five encoded updates.
import type * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import pino from 'pino';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import { SecAggClient, decodeSum, encodeUpdate, sumVectors, type SecAggRoundConfig } from '../proto/secagg';
import * as wire from '../proto/secagg/wire';
import { sealMasked, sendSealed, type SealedFrames } from '../client-sdk/sealed-sender';
import { join, rawClient, siteDelta, smallAdapter, startCoordinator, tempDir, type Harness, type JoinedRaw } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

type Kind = 'train' | 'secagg_roster' | 'secagg_shares' | 'secagg_consistency' | 'secagg_unmask';
type Method = 'SecAggAdvertise' | 'SecAggShareKeys' | 'SecAggConsistency' | 'SecAggUnmask';

interface Site {
  who: JoinedRaw;
  events: TaskEvent__Output[];
  stream: grpc.ClientReadableStream<TaskEvent__Output>;
  task: TrainTask__Output;
  cfg: SecAggRoundConfig;
  sc: SecAggClient;
  x: Uint32Array;
}

const call = <Req>(c: RawClient, m: Method, req: Req): Promise<grpc.ServiceError | null> =>
  new Promise((resolve) => (c[m] as unknown as (r: Req, cb: (e: grpc.ServiceError | null) => void) => void).call(c, req, (e) => resolve(e)));

async function next(site: Pick<Site, 'events' | 'who'>, kind: Kind): Promise<TaskEvent__Output> {
  for (let i = 0; i < 400; i++) {
    const k = site.events.findIndex((e) => e[kind] != null);
    if (k >= 0) return site.events.splice(k, 1)[0];
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${site.who.name}: no ${kind} event`);
}

describe('secagg: a site’s task stream reopened at every stage (coordinator side, sites played by hand over gRPC)', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: RawClient;
  const sites: Site[] = [];
  /** The coordinator's 'secagg stage message sent again' lines. */
  const resent: { clientId: string; round: number; message: string }[] = [];
  const req = (s: Site): { session_token: string; task_id: string; round: number } => ({
    session_token: s.who.session_token,
    task_id: s.task.task_id,
    round: 1,
  });
  const open = (s: Pick<Site, 'who' | 'events'>): grpc.ClientReadableStream<TaskEvent__Output> => {
    const stream = c.StreamTasks({ session_token: s.who.session_token });
    stream.on('data', (e: TaskEvent__Output) => s.events.push(e));
    stream.on('error', () => undefined);
    return stream;
  };

  /**
   * Site `s` drops its task stream and opens a new one once the coordinator saw it go; the new stream must bring the
   * `kind` message `first` brought (the coordinator's re-delivery), equal field for field.
   */
  async function reopen(s: Site, kind: Kind, first: Partial<TaskEvent__Output>): Promise<void> {
    const registry = h.coordinator.registry;
    s.stream.cancel();
    for (let i = 0; i < 200 && registry.isLive(s.who.client_id); i++) await new Promise((r) => setTimeout(r, 10));
    expect(registry.isLive(s.who.client_id), 'the coordinator saw the stream go').to.equal(false);
    s.events.length = 0;
    const logged = resent.length;
    s.stream = open(s);
    expect((await next(s, kind))[kind], `${kind} delivered again, the same message`).to.deep.equal(first[kind]);
    // A stage message sent again is logged, naming the site and the message (a re-sent train task is not one).
    if (kind !== 'train') expect(resent.slice(logged)).to.deep.equal([{ clientId: s.who.client_id, round: 1, message: kind }]);
  }

  before(async () => {
    const logger = pino(
      { level: 'info' },
      {
        write: (line: string): void => {
          const l = JSON.parse(line) as { msg: string; clientId: string; round: number; message: string };
          if (l.msg === 'secagg stage message sent again') resent.push({ clientId: l.clientId, round: l.round, message: l.message });
        },
      },
    );
    h = await startCoordinator(
      await tempDir('secagg-redeliver'),
      { total: 1, minClients: 5, minUpdates: 5, clientsPerRound: 5, deadlineMs: 30_000, reconnectGraceMs: 20_000 },
      { secagg: { enabled: true, threshold: 3, stageTimeoutMs: 20_000 } },
      { logger },
    );
    c = rawClient(h.address);
    const joined = [];
    for (let i = 0; i < 5; i++) {
      const partial = { who: await join(c, `rd-${i}`), events: [] as TaskEvent__Output[] };
      joined.push({ ...partial, stream: open(partial) });
    }
    for (const { who, events, stream } of joined) {
      const partial = { who, events };
      const task = (await next(partial, 'train')).train!;
      const cfg = wire.settingsFromWire(task.secagg!, task.base_manifest_sha256);
      const sc = new SecAggClient({ config: cfg, clientId: who.client_id, identitySecretKey: who.identity.secretKey });
      const x = encodeUpdate(siteDelta(who.name, smallAdapter(0)), 10, cfg, new Uint8Array(randomBytes(32)));
      sites.push({ ...partial, stream, task, cfg, sc, x });
    }
  });

  after(async () => {
    for (const s of sites) s.stream.cancel();
    c.close();
    await h.coordinator.stop(500);
    await fs.rm(h.runDir, { recursive: true, force: true });
  });

  it('before it advertises: the task is sent again on the new stream; every site advertises', async () => {
    await reopen(sites[0], 'train', { train: sites[0].task });
    for (const s of sites) expect(await call(c, 'SecAggAdvertise', { ...req(s), advertisement: wire.adToWire(s.sc.advertise()) })).to.equal(null);
  });

  it('after the roster: the same roster again on the new stream; a share-keys call repeated after it landed is refused', async () => {
    const rosters = await Promise.all(sites.map((s) => next(s, 'secagg_roster')));
    await reopen(sites[1], 'secagg_roster', rosters[1]);
    for (const [i, s] of sites.entries()) {
      const m = { ...req(s), share_keys: wire.shareKeysToWire(await s.sc.shareKeys(wire.rosterFromWire(rosters[i].secagg_roster!))) };
      expect(await call(c, 'SecAggShareKeys', m)).to.equal(null);
      if (i === 0) expect((await call(c, 'SecAggShareKeys', m))?.code).to.equal(status.ALREADY_EXISTS);
    }
  });

  it('after the routed shares: the same shares again; a masked upload sent again counts once, a different one is refused', async () => {
    const routed = await Promise.all(sites.map((s) => next(s, 'secagg_shares')));
    await reopen(sites[2], 'secagg_shares', routed[2]);
    const ctx = (s: Site): Parameters<typeof sealMasked>[0] => ({
      token: s.who.session_token,
      runId: s.who.run_id,
      clientId: s.who.client_id,
      coordinator: s.who.coordinator,
      identitySecretKey: s.who.identity.secretKey,
      chunkBytes: 1 << 20,
    });
    let first: SealedFrames | undefined;
    for (const [i, s] of sites.entries()) {
      s.sc.receiveShares(wire.routedFromWire(routed[i].secagg_shares!));
      const y = s.sc.maskedInput(s.x);
      const sealed = sealMasked(ctx(s), s.task, y);
      await sendSealed(c, sealed);
      first ??= sealed;
    }
    // The first site's upload again, the same sealed bytes (its answer lost): acknowledged; the sum takes it once.
    await sendSealed(c, first!);
    // Another masked vector for the same task: refused, however it is sealed.
    const other = sealMasked(
      ctx(sites[0]),
      sites[0].task,
      sites[0].x.map((v) => v + 1),
    );
    const refusal = await sendSealed(c, other).then(
      () => null,
      (e: grpc.ServiceError) => e,
    );
    expect([refusal?.code, refusal?.details]).to.deep.equal([
      status.ALREADY_EXISTS,
      `task ${sites[0].task.task_id} already has an accepted update; a second upload for client rd-0 in round 1 is refused`,
    ]);
  });

  it('after the consistency check: the same check again on the new stream; every survivor signs', async () => {
    const checks = await Promise.all(sites.map((s) => next(s, 'secagg_consistency')));
    await reopen(sites[3], 'secagg_consistency', checks[3]);
    for (const [i, s] of sites.entries()) {
      const sig = s.sc.consistency(wire.consistencyCheckFromWire(checks[i].secagg_consistency!));
      expect(await call(c, 'SecAggConsistency', { ...req(s), signature: wire.signatureToWire(sig) })).to.equal(null);
    }
  });

  it('during unmasking: the same unmask request again; the round commits fixed-point FedAvg of the five updates, bit for bit', async () => {
    const requests = await Promise.all(sites.map((s) => next(s, 'secagg_unmask')));
    await reopen(sites[4], 'secagg_unmask', requests[4]);
    // The reopened site answers first: with t = 3, the first three answers rebuild every secret.
    for (const i of [4, 0, 1]) {
      const r = sites[i].sc.unmask(wire.unmaskRequestFromWire(requests[i].secagg_unmask!));
      expect(await call(c, 'SecAggUnmask', { ...req(sites[i]), response: wire.unmaskResponseToWire(r) })).to.equal(null);
    }
    const ck = await h.coordinator.done;
    const want = decodeSum(sumVectors(sites.map((s) => s.x)), sites[0].cfg, smallAdapter(0)).adapter;
    for (let k = 0; k < want.length; k++) expect(Buffer.from(ck.adapter[k].data.buffer).equals(Buffer.from(want[k].data.buffer))).to.equal(true);
    expect(ck.manifest.secureAggregation).to.deep.include({ survivors: sites.map((s) => s.who.client_id).sort(), dropped: [] });
  });
});
