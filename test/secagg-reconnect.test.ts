// A SecAgg round survives a site's task stream dropping (rounds.reconnectGraceMs): six real SDK sites, the real
// coordinator, real SecAgg over real gRPC; sr-1 talks to the coordinator through a TCP relay that cuts its connection
// at one SecAgg stage and keeps the network down for AWAY_MS (well inside the grace). The SDK keeps the task and
// reopens its stream under the same session; the coordinator waits for the site at that stage and delivers the
// stage's message again on the new stream. With threshold t = 6 of 6 every stage needs sr-1: a round that lost it
// would abort. The round commits with sr-1 among the survivors, the site trained once, and the committed adapter is
// the same bits as the run without the cut. The sites' updates lie on the SecAgg grid (S chosen so that the grid
// step is 2^-16 and every weight is 1), where stochastic rounding is exact: the fresh rounding randomness cannot make
// two runs differ, so the two runs are compared bit for bit. And a site that stays away past the grace is dropped at
// that stage as one that left, the round committing over the other five (t = 5).
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FederationClient } from '../client-sdk/client';
import type { SecAggStage } from '../client-sdk/secagg-flow';
import type { Trainer, TrainOutcome } from '../client-sdk/trainer';
import type { Manifest } from '../coordinator/checkpoints/types';
import { clientIdFor } from '../coordinator/registry';
import { SecAggAttempt } from '../coordinator/secagg-attempt';
import type { TensorList } from '../proto/tensors';
import { expectedAdapter } from './secagg-expected';
import { smallAdapter, startCoordinator, tempDir, testIdentity } from './harness';
import { tcpRelay, type TcpRelay } from './tcp-relay';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const GRACE_MS = 4_000;
/** How long the network stays down after a cut: far above a reconnect (25-230 ms), well inside the grace. */
const AWAY_MS = 800;
const STAGE_TIMEOUT_MS = 30_000;
const NAMES = ['sr-0', 'sr-1', 'sr-2', 'sr-3', 'sr-4', 'sr-5'];
const CUT = 'sr-1';
/** maxClients 8: 29-bit grid, maxAbs = 2^28 − 1; S = maxAbs / 2^16 makes the value scale exactly 2^16. */
const MAX_ABS = 2 ** 28 - 1;
const CLIP_NORM = MAX_ABS / 2 ** 16;

/** An update on the grid (multiples of 2^-16, far inside S), the same for a site every time; counts its trainings. */
class GridTrainer implements Trainer {
  readonly backend = 'test';
  trains = 0;
  constructor(private readonly name: string) {}
  async train(global: TensorList): Promise<TrainOutcome> {
    this.trains++;
    const h = createHash('sha256').update(this.name).digest();
    const adapter = global.map((t, k) => ({ ...t, data: t.data.map((x, i) => x + ((h[(k * 7 + i) % 32] % 201) - 100) / 2 ** 16) }));
    return { adapter, numExamples: 10, metrics: { train_loss: 1 } };
  }
}

/** Where sr-1's connection is cut: at a stage of its own flow, or once the coordinator accepted its masked input. */
type Cut = { at: SecAggStage } | { at: 'maskedAccepted' };

interface RunResult {
  manifest: Manifest;
  adapterSha256: string;
  adapterMatchesEncoded: boolean;
  cut: { trains: number; joined: number; reconnects: number; failed: string[]; done: number };
  cuts: number;
  /** Whether the coordinator saw sr-1 without its task stream during the round. */
  seenAway: boolean;
  /** Stage messages the coordinator delivered again to sr-1 on a stream that attached (SecAggAttempt.redeliver). */
  redelivered: number;
  committedAt: number;
  cutAt: number;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function federate(name: string, cut: Cut | undefined, o: { threshold: number; awayMs: number; graceMs: number }): Promise<RunResult> {
  const dir = await tempDir(`secagg-reconnect-${name}`);
  const rounds = { total: 1, minClients: 6, minUpdates: 5, clientsPerRound: 6, deadlineMs: 60_000, maxAttempts: 1, reconnectGraceMs: o.graceMs };
  const secagg = { enabled: true, threshold: o.threshold, stageTimeoutMs: STAGE_TIMEOUT_MS, clipNorm: CLIP_NORM, weightCap: 1, maxClients: 8 };
  const h = await startCoordinator(dir, rounds, { secagg });
  let relay: TcpRelay | undefined;
  try {
    relay = await tcpRelay(h.address);
    const r = relay;
    let cutAt = 0;
    let seenAway = false;
    h.coordinator.registry.on('change', () => (seenAway ||= cutAt > 0 && !h.coordinator.registry.isLive(clientIdFor(CUT))));
    const cutNow = (): void => {
      cutAt = Date.now();
      r.cutAll(o.awayMs);
    };
    const accepted = new Set<string>();
    let othersAccepted = (): void => undefined;
    const othersIn = new Promise<void>((res) => (othersAccepted = res));
    let committedAt = 0;
    h.coordinator.on('roundCommitted', () => (committedAt = Date.now()));
    h.coordinator.on('updateAccepted', (e: { clientId: string }) => {
      accepted.add(e.clientId);
      if (NAMES.filter((n) => n !== CUT).every((n) => accepted.has(clientIdFor(n)))) othersAccepted();
      if (cut?.at === 'maskedAccepted' && e.clientId === clientIdFor(CUT)) cutNow();
    });
    const encoded = new Map<string, Uint32Array>();
    const trainers = new Map(NAMES.map((n) => [n, new GridTrainer(n)]));
    const seen = { joined: 0, reconnects: 0, failed: [] as string[], done: 0 };
    const fast = { initialMs: 20, maxMs: 200, factor: 2 };
    const sites = NAMES.map((n) => {
      const c = new FederationClient({
        address: n === CUT ? r.address : h.address,
        name: n,
        identity: testIdentity(n),
        trainer: trainers.get(n)!,
        backoff: fast,
        observeSecAggInput: (_, x) => encoded.set(clientIdFor(n), x.slice()),
        beforeSecAggStage: async (stage) => {
          if (n !== CUT || !cut) return;
          // The consistency check must go out while sr-1 is away: its masked input is the last one in.
          if (cut.at === 'maskedAccepted' && stage === 'maskedInput') await othersIn;
          if (cut.at === stage) cutNow();
        },
      });
      if (n === CUT) {
        c.on('joined', () => seen.joined++);
        c.on('reconnecting', () => seen.reconnects++);
        c.on('taskFailed', (e) => seen.failed.push(e.error));
        c.on('taskDone', () => seen.done++);
      }
      return c;
    });
    let redelivered = 0;
    const redeliver = SecAggAttempt.prototype.redeliver;
    // Counted on the real path: the original runs, and each message it sends again to sr-1 is counted.
    SecAggAttempt.prototype.redeliver = function (this: SecAggAttempt, id, send) {
      redeliver.call(this, id, (ev) => {
        if (id === clientIdFor(CUT)) redelivered++;
        send(ev);
      });
    };
    const summaries = await Promise.all(sites.map((c) => c.run())).finally(() => (SecAggAttempt.prototype.redeliver = redeliver));
    expect(summaries.map((s) => s.finalVersion)).to.deep.equal(NAMES.map(() => 1));
    const manifest = (await h.coordinator.store.list()).find((m) => m.version === 1) as Manifest;
    const ck = await h.coordinator.store.read(1);
    const sa = manifest.secureAggregation!;
    const want = expectedAdapter(
      sa,
      smallAdapter(0),
      sa.survivors.map((id) => encoded.get(id)!),
    );
    const bytes = (ts: TensorList): Buffer => Buffer.concat(ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)));
    const file = await fs.readFile(path.join(h.runDir, 'versions', 'v000001', 'adapter_model.safetensors'));
    return {
      manifest,
      adapterSha256: sha(file),
      adapterMatchesEncoded: bytes(ck.adapter).equals(bytes(want)),
      cut: { trains: trainers.get(CUT)!.trains, ...seen },
      cuts: r.cuts(),
      seenAway,
      redelivered,
      committedAt,
      cutAt,
    };
  } finally {
    relay?.close();
    await h.coordinator.stop(500);
    await fs.rm(dir, { recursive: true, force: true });
  }
}

describe('a SecAgg round survives a site’s task stream dropping (real coordinator, SDK sites, SecAgg and gRPC)', function () {
  this.timeout(120_000);
  const ids = NAMES.map(clientIdFor).sort();
  const all = { threshold: 6, awayMs: AWAY_MS, graceMs: GRACE_MS };
  let uncut: RunResult;

  before(async () => {
    uncut = await federate('uncut', undefined, all);
    expect(uncut.manifest.secureAggregation!.survivors).to.deep.equal(ids);
    expect(uncut.adapterMatchesEncoded, 'the uncut run commits fixed-point FedAvg of what the sites encoded').to.equal(true);
  });

  /** Cut at `cut`: committed with sr-1 among the survivors, the same bits as without the cut; sr-1 trained once. */
  async function expectCounted(cut: Cut): Promise<void> {
    const r = await federate(cut.at, cut, all);
    expect(r.cuts, 'the relay cut sr-1').to.be.at.least(1);
    expect(r.cut.reconnects, 'sr-1 lost its task stream').to.be.at.least(1);
    expect(r.seenAway, 'the coordinator saw sr-1 away').to.equal(true);
    // A stage message is out for sr-1 whenever its new stream attaches, except when cut before it advertises (none is
    // out yet, unless the roster went out meanwhile) or while unmasking (its answer may land first and end the round).
    if (cut.at !== 'advertise' && cut.at !== 'unmask') expect(r.redelivered, "the stage's message went out again on sr-1's new stream").to.be.at.least(1);
    expect(r.manifest.secureAggregation).to.deep.include({ survivors: ids, dropped: [], selected: ids });
    expect(r.cut).to.deep.include({ trains: 1, joined: 1, failed: [], done: 1 });
    expect(r.adapterMatchesEncoded, 'fixed-point FedAvg of what the sites encoded').to.equal(true);
    expect(r.adapterSha256, 'the same bits as the run without the cut').to.equal(uncut.adapterSha256);
    expect(r.committedAt - r.cutAt, 'no stage waited for its timeout').to.be.below(STAGE_TIMEOUT_MS);
  }

  it('cut after its training, before it advertises (the last to): the roster waits for it; counted, the same adapter', () =>
    expectCounted({ at: 'advertise' }));

  it('cut after the roster (before its shares go out): counted, the same adapter', () => expectCounted({ at: 'shareKeys' }));

  it('cut after its shares are routed (before its masked upload): counted, the same adapter', () => expectCounted({ at: 'maskedInput' }));

  it('cut as its masked upload is accepted, the consistency check sent while it is away: counted, the same adapter', () =>
    expectCounted({ at: 'maskedAccepted' }));

  it('cut after the consistency check (before it signs): counted, the same adapter', () => expectCounted({ at: 'consistency' }));

  it('cut during unmasking (before its shares are revealed): counted, the same adapter', () => expectCounted({ at: 'unmask' }));

  it('a site away past the grace is dropped at that stage as one that left; the round commits over the other five', async () => {
    const grace = 1_000;
    const r = await federate('past-grace', { at: 'shareKeys' }, { threshold: 5, awayMs: 6_000, graceMs: grace });
    const others = NAMES.filter((n) => n !== CUT)
      .map(clientIdFor)
      .sort();
    // Left out before its shares: not in U2, so neither a survivor nor dropped (its masks never entered the sum).
    expect(r.manifest.secureAggregation).to.deep.include({ survivors: others, dropped: [], selected: ids });
    expect(r.adapterMatchesEncoded, 'fixed-point FedAvg over the five survivors').to.equal(true);
    expect(r.cut.trains).to.equal(1);
    expect(r.cut.done).to.equal(0);
    expect(r.committedAt - r.cutAt, 'waited out the grace, not the stage timeout').to.be.within(grace, STAGE_TIMEOUT_MS);
  });
});
