// One round attempt under secure aggregation: the coordinator's side of the SecAgg stages over gRPC (advertise,
// share keys, masked input, consistency signatures, unmask).
// The service hands in what clients send (advertise, share keys, masked input, unmask); drive() closes each
// stage once every client of it has spoken or is gone (or the stage times out), pushes the next stage's message
// to each client's task stream, and returns the sum of the survivors' encoded updates. A client whose task stream
// dropped is not gone yet: it is waited for within rounds.reconnectGraceMs at every stage (reconnect-grace.ts), and
// when its stream attaches again it gets the current stage's message again (redeliver), the very same message.
// The coordinator never holds an individual update: a masked input goes into SecAggServer's running sum chunk by chunk as it is opened
// (not even the masked vector is held whole); its sealed chunks wait in a scratch file only so that an upload that
// is not accepted after all can be taken back out of the sum, exactly, and the file is deleted either way.
import { ProtocolError, status } from '../proto/errors';
import type { TaskEvent } from '../proto/generated/fedtune/v1/TaskEvent';
import type { NamedTensor, TensorList } from '../proto/tensors';
import { SecAggServer, chooseGraph, validateConfig, vectorLayout, type SecAggRoundConfig } from '../proto/secagg';
import type { Advertisement, ConsistencySignature, ShareKeysMessage, UnmaskResponse } from '../proto/secagg/messages';
import { consistencyCheckToWire, rosterToWire, routedToWire, settingsToWire, unmaskRequestToWire } from '../proto/secagg/wire';
import type { SecAggSettings } from '../proto/generated/fedtune/v1/SecAggSettings';
import type { CoordinatorConfig } from './config-types';
import { readRosterCertificates } from '../proto/secagg/roster-file';
import { stepsFor } from './checkpoints/atomic-fs';
import type { SealedUploadOpener } from '../proto/crypto/sealed-upload';
import type { MaskedFeed } from '../proto/secagg/masked-sum';
import type { SpoolUpload } from './spool-upload';
import { dpSettingsOf } from './privacy/wrap';
import { updateNoiseMultiplier } from './privacy/adaptive-clip';
import { roundClipNorm } from './strategy/dp';

/**
 * Test seam: FEDTUNE_TEST_KILL_AT=secagg:<stage>-sent kills the process once a stage's messages are out
 * (test/secagg-crash.test.ts). Nothing of a SecAgg attempt is spooled: a restarted coordinator starts the
 * round's next attempt (a new session over a new selection), and the sites train again.
 */
const crashPoint = stepsFor('secagg');

export interface SecAggOutcome {
  readonly sum: Uint32Array;
  readonly survivors: readonly string[];
  /** Sent shares but no masked input: their pair masks were removed from the sum. */
  readonly dropped: readonly string[];
  readonly sessionId: string;
}

/** What drive() needs from the round engine. */
export interface SecAggDriver {
  /**
   * Whether any of these clients is still waited for: it has its task stream, or lost it less than the reconnect
   * grace ago (reconnect-grace.ts). One that is not is dropped from the stage.
   */
  awaited(clientIds: readonly string[]): boolean;
  send(clientId: string, event: TaskEvent): void;
  taskIdOf(clientId: string): string;
  /** Resolves when cond() holds, the deadline passes or the engine stops. */
  waitFor(cond: () => boolean, deadline: number): Promise<void>;
  stopping(): boolean;
}

/** A masked upload past its header whose values are going into the sum (or being taken back out). */
interface LiveMasked {
  readonly feed: MaskedFeed;
  readonly spool: SpoolUpload;
  readonly opener: () => SealedUploadOpener;
  state: 'streaming' | 'aborted';
  undo?: Promise<void>;
}

export class SecAggAttempt {
  readonly config: SecAggRoundConfig;
  readonly settings: SecAggSettings;
  private readonly server: SecAggServer;
  private readonly advertised = new Set<string>();
  private readonly shared = new Set<string>();
  private readonly inputs = new Set<string>();
  private readonly signed = new Set<string>();
  private readonly responded = new Set<string>();
  private readonly live = new Map<string, LiveMasked>();
  private readonly undoing = new Set<Promise<void>>();
  /** The masked-input stage is closing: no new masked upload starts. */
  private maskedClosed = false;
  /**
   * The current stage's clients and how their message is built, to deliver it again on a stream that attaches: built
   * again from the stage's one roster, routing or list (the same message), not kept per client, which would hold
   * N copies of an N-sized roster or unmask request.
   */
  private current: { readonly ids: ReadonlySet<string>; readonly make: (id: string) => TaskEvent } | undefined;

  constructor(
    cfg: CoordinatorConfig,
    roundTag: string,
    baseManifestSha256: string,
    /** The tensors an update carries (round-outcome's sum covers only these; the rest keep their values). */
    layout: TensorList,
    selected: readonly string[],
    identityKeys: Readonly<Record<string, Uint8Array>>,
    private readonly stageTimeoutMs: number,
    /** Opens the scratch file of a masked upload's sealed chunks (the round spool's directory; never committed). */
    private readonly scratch?: (clientId: string, head: Buffer) => SpoolUpload,
    /** The base version's server state: where adaptive clipping keeps the round's C (strategy/dp.ts roundClipNorm). */
    baseState?: readonly NamedTensor[],
  ) {
    const sorted = [...selected].sort();
    const chosen = chooseGraph(sorted.length, cfg.secagg.fullGraphMax);
    const include = layout.map((t) => t.name).sort();
    // Under DP-FedAvg (privacy.enabled) every site weighs 1 (weightCap 1), clips to privacy.clipNorm and adds its
    // share of the noise before masking: the coordinator never sees an un-noised sum. Under adaptive clipping it
    // clips to the round's C_t, adds its share at z_Δ, and appends its bit with its share of the count's noise σ_b.
    const dp = cfg.privacy.enabled;
    const dps = dp ? dpSettingsOf(cfg) : undefined;
    this.config = {
      roundTag,
      baseManifestSha256,
      selected: sorted,
      threshold: cfg.secagg.threshold || chosen.threshold,
      graph: chosen.graph,
      clipNorm: dps ? roundClipNorm(dps, baseState) : cfg.secagg.clipNorm,
      weightCap: dp ? 1 : cfg.secagg.weightCap,
      maxClients: cfg.secagg.maxClients,
      include,
      vectorLength: vectorLayout(layout, include, dps?.adaptive !== undefined).length,
      ...(dps ? { noiseMultiplier: dps.adaptive ? updateNoiseMultiplier(dps.noiseMultiplier, dps.adaptive.countNoise) : dps.noiseMultiplier } : {}),
      ...(dps?.adaptive ? { clipCountNoise: dps.adaptive.countNoise } : {}),
    };
    validateConfig(this.config);
    this.settings = settingsToWire(this.config);
    // Re-read every attempt, like clients.json: a newly certified site takes part without a restart.
    const certificates = cfg.secagg.rosterFile ? readRosterCertificates(cfg.secagg.rosterFile, cfg.run.id) : undefined;
    this.server = new SecAggServer(this.config, identityKeys, certificates);
  }

  get sessionId(): string {
    return this.server.sessionId ? Buffer.from(this.server.sessionId).toString('hex') : '';
  }

  /** Whether the client's keys are in this session (stage 1 done for it): it can no longer decline its task. */
  hasAdvertised(clientId: string): boolean {
    return this.advertised.has(clientId);
  }

  advertise(clientId: string, ad: Advertisement): void {
    if (ad.clientId !== clientId) throw new ProtocolError(status.PERMISSION_DENIED, `advertisement names client ${ad.clientId}; the session is ${clientId}`);
    this.server.addAdvertisement(ad);
    this.advertised.add(clientId);
  }

  shareKeys(clientId: string, msg: ShareKeysMessage): void {
    if (msg.from !== clientId) throw new ProtocolError(status.PERMISSION_DENIED, `share keys message is from ${msg.from}; the session is ${clientId}`);
    this.server.addShareKeys(msg);
    this.shared.add(clientId);
  }

  /** Stage 3 must be open before the masked upload's bytes are read (checked at its header). */
  expectMaskedInput(clientId: string): void {
    if (this.server.stage !== 'maskedInput')
      throw new ProtocolError(
        status.FAILED_PRECONDITION,
        `secagg: masked input from ${clientId} outside the masked-input stage (stage is ${this.server.stage})`,
      );
    if (this.inputs.has(clientId)) throw new ProtocolError(status.ALREADY_EXISTS, `secagg: ${clientId} already sent its masked input`);
  }

  /** A whole masked input at once (tests, simulations); the upload path streams it (openMasked … acceptMasked). */
  maskedInput(clientId: string, y: Uint32Array): void {
    this.server.addMaskedInput(clientId, y);
    this.inputs.add(clientId);
  }

  /** The scratch file a masked upload's sealed chunks go to (undefined: none, so the upload is refused). */
  openScratch(clientId: string, head: Buffer): SpoolUpload | undefined {
    return this.scratch?.(clientId, head);
  }

  private outside(clientId: string): ProtocolError {
    return new ProtocolError(
      status.FAILED_PRECONDITION,
      `secagg: masked input from ${clientId} outside the masked-input stage (stage is ${this.maskedClosed && this.server.stage === 'maskedInput' ? 'closing' : this.server.stage})`,
    );
  }

  /** At a masked upload's header (after expectMaskedInput): from here its values go into the sum chunk by chunk. */
  openMasked(clientId: string, spool: SpoolUpload, opener: () => SealedUploadOpener): void {
    if (this.maskedClosed) throw this.outside(clientId);
    const feed = this.server.openMaskedInput(clientId);
    this.live.set(clientId, { feed, spool, opener, state: 'streaming' });
  }

  /** One opened chunk of a masked upload (already in its scratch file): into the running sum, then dropped. */
  maskedChunk(clientId: string, plain: Uint8Array): void {
    const l = this.live.get(clientId);
    if (!l || l.state !== 'streaming') throw this.outside(clientId);
    l.feed.push(plain);
  }

  /** Every chunk arrived and the trailer checked out: the input counts (FAILED_PRECONDITION once the stage closed). */
  acceptMasked(clientId: string): void {
    const l = this.live.get(clientId);
    if (!l || l.state !== 'streaming') throw this.outside(clientId);
    this.server.acceptMaskedInput(clientId, l.feed);
    this.live.delete(clientId);
    this.inputs.add(clientId);
  }

  /**
   * A masked upload that will not count: what it added is taken back out of the sum, from its scratch file read
   * and opened again (resolves when it is, before the caller deletes the file). If the file cannot be read, the
   * values stay in the sum and the server refuses to unmask it: the attempt aborts rather than commit a wrong sum.
   */
  abortMasked(clientId: string): Promise<void> {
    const l = this.live.get(clientId);
    if (!l) return Promise.resolve();
    if (l.undo) return l.undo;
    l.state = 'aborted';
    l.feed.abandon();
    const work = (async () => {
      try {
        if (!l.feed.settled) {
          const opener = l.opener();
          for await (const c of l.spool.chunks()) if (l.feed.undo(opener.open(c))) break;
        }
      } catch {
        // Left in the sum (SecAggServer.finish aborts the attempt on it).
      } finally {
        if (this.live.get(clientId) === l) this.live.delete(clientId);
      }
    })();
    l.undo = work;
    this.undoing.add(work);
    void work.finally(() => this.undoing.delete(work));
    return work;
  }

  /** Closing the masked-input stage: uploads still streaming are cut off and taken back out before the stage ends. */
  private async settleMasked(): Promise<void> {
    this.maskedClosed = true;
    for (const id of [...this.live.keys()]) void this.abortMasked(id);
    await Promise.all([...this.undoing]);
  }

  consistency(clientId: string, sig: ConsistencySignature): void {
    if (sig.from !== clientId) throw new ProtocolError(status.PERMISSION_DENIED, `consistency signature is from ${sig.from}; the session is ${clientId}`);
    this.server.addConsistency(sig);
    this.signed.add(clientId);
  }

  unmask(clientId: string, resp: UnmaskResponse): void {
    if (resp.from !== clientId) throw new ProtocolError(status.PERMISSION_DENIED, `unmask response is from ${resp.from}; the session is ${clientId}`);
    this.server.addUnmaskResponse(resp);
    this.responded.add(clientId);
  }

  /**
   * A client's task stream attached again: the current stage's message to it, if it has one, goes out again (the
   * same message: a site takes a repeat harmlessly and refuses a different one). None once the stage left it out.
   */
  redeliver(clientId: string, send: (event: TaskEvent) => void): void {
    if (this.current?.ids.has(clientId)) send(this.current.make(clientId));
  }

  /** A stage's messages: these and no others are now the current ones. */
  private deliver(d: SecAggDriver, ids: readonly string[], make: (id: string) => TaskEvent): void {
    this.current = { ids: new Set(ids), make };
    for (const id of ids) d.send(id, make(id));
  }

  /** Runs stages 1–4; throws ProtocolError(ABORTED) when fewer than t clients remain at any stage. */
  async drive(d: SecAggDriver, trainingDeadline: number): Promise<SecAggOutcome> {
    const all = (ids: readonly string[], done: Set<string>) => (): boolean => !d.awaited(ids.filter((id) => !done.has(id)));
    const stopped = (): void => {
      if (d.stopping()) throw new ProtocolError(status.CANCELLED, 'coordinator stopping');
    };
    // Stage 1 waits for training (clients advertise when their update is ready).
    await d.waitFor(all(this.config.selected, this.advertised), trainingDeadline);
    stopped();
    const roster = this.server.closeAdvertise();
    const u1 = roster.advertisements.map((a) => a.clientId);
    this.deliver(d, u1, (id) => ({ secagg_roster: rosterToWire(d.taskIdOf(id), roster) }));
    await crashPoint('roster-sent', this.config.roundTag);

    await d.waitFor(all(u1, this.shared), Date.now() + this.stageTimeoutMs);
    stopped();
    const { u2, routed } = this.server.closeShareKeys();
    this.deliver(d, u2, (id) => ({ secagg_shares: routedToWire(d.taskIdOf(id), routed(id)) }));
    await crashPoint('shares-sent', this.config.roundTag);

    await d.waitFor(all(u2, this.inputs), Date.now() + this.stageTimeoutMs);
    stopped();
    await this.settleMasked();
    const check = this.server.closeMaskedInput();
    this.deliver(d, check.survivors, (id) => ({ secagg_consistency: consistencyCheckToWire(d.taskIdOf(id), check) }));
    await crashPoint('consistency-sent', this.config.roundTag);

    await d.waitFor(all(check.survivors, this.signed), Date.now() + this.stageTimeoutMs);
    stopped();
    const req = this.server.closeConsistency();
    const signers = req.signatures.map((x) => x.from);
    this.deliver(d, signers, (id) => ({ secagg_unmask: unmaskRequestToWire(d.taskIdOf(id), req) }));
    await crashPoint('unmask-sent', this.config.roundTag);

    // Enough shares is enough: waiting for the slowest survivor would change nothing in the sum.
    await d.waitFor(() => this.server.ready() || all(signers, this.responded)(), Date.now() + this.stageTimeoutMs);
    stopped();
    const sum = await this.server.finish();
    this.current = undefined;
    return { sum, survivors: [...req.survivors], dropped: [...req.dropped], sessionId: this.sessionId };
  }
}
