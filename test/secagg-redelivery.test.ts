// A site's SecAgg flow (client-sdk/secagg-flow.ts with its inbox, secagg-inbox.ts) when the coordinator delivers a
// stage message again, as it does on a task stream that reopened: site s00 is the SDK's own flow; s01…s04 are played
// by hand (test/secagg-hand.ts), and this file is the coordinator, which sends what it likes. The same message again,
// at any stage and after the stage moved on, changes nothing: every stage answered once, the answer byte for byte the
// honest one. A different message of a kind already sent (a re-delivery with other contents, or a replayed stage
// message with other contents after the stage moved on) stops the task at once with one exact refusal, and nothing
// is answered after it: in particular no second unmask answer, so the coordinator never holds both a seed share and a
// mask-key share of the same peer from s00.
import { status } from '@grpc/grpc-js';
import { ProtocolError } from '../proto/errors';
import { SecAggLedger } from '../proto/secagg/ledger';
import type { ConsistencyCheck, Roster, RoutedShares, ShareKeysMessage, UnmaskRequest, UnmaskResponse } from '../proto/secagg/messages';
import { computeSessionId } from '../proto/secagg/session';
import { shareCommitment } from '../proto/secagg/shares';
import { runSecAgg, type SecAggStage } from '../client-sdk/secagg-flow';
import { SecAggInbox, SecAggInboxes, type InboxItem } from '../client-sdk/secagg-inbox';
import { sendStageCall } from '../client-sdk/secagg-task';
import type { ReportCall } from '../client-sdk/report-retry';
import type { ServiceError } from '@grpc/grpc-js';
import { M, Site, configOf, idsOf, neighboursOf, refused } from './secagg-hand';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const ME = 's00';
const T = 3;

/** What the hand-played coordinator has sent s00 so far, by kind, and can send again (or change). */
interface Sent {
  roster?: Roster;
  shares?: RoutedShares;
  consistency?: ConsistencyCheck;
  unmask?: UnmaskRequest;
}

/** After s00's call at `stage` was answered by the coordinator's honest next message: the test's extra messages. */
type Extra = (after: SecAggStage | 'answered', sent: Sent, put: (item: InboxItem) => void) => void;

interface Played {
  /** s00's stage calls, in order. */
  calls: SecAggStage[];
  /** Its unmask answers. */
  answers: UnmaskResponse[];
  /** Why the flow stopped, if it did. */
  error?: ProtocolError;
  /** Whether `r` is, share for share, what an honest s00 answers to the honest request (all five survive). */
  honest: (r: UnmaskResponse) => boolean;
  /** s00's inbox, after the flow ended. */
  inbox: SecAggInbox;
  /** Why s00's task was stopped (the inbox's violation), if it was. */
  reason: () => unknown;
}

/** One round of five (full graph, t = 3): the honest coordinator's messages, and `extra` after each of s00's calls. */
async function play(extra: Extra): Promise<Played> {
  const ids = idsOf(5);
  const cfg = configOf(ids, { kind: 'full' }, T);
  const sites = ids.map((id) => new Site(id));
  const others = sites.filter((s) => s.id !== ME);
  const ac = new AbortController();
  const inbox = new SecAggInbox((e) => ac.abort(e));
  const put = (item: InboxItem): void => inbox.put(item);
  const sent: Sent = {};
  const calls: SecAggStage[] = [];
  const answers: UnmaskResponse[] = [];
  let sid: Uint8Array = new Uint8Array();
  let mine: ShareKeysMessage | undefined;
  const msgs = new Map<string, ShareKeysMessage>();
  const survivors = [...ids];
  const step = (stage: SecAggStage | 'answered', item?: InboxItem): void => {
    if (item) {
      Object.assign(sent, item);
      put(item);
    }
    extra(stage, sent, put);
  };
  const delta = [{ name: 'x', dtype: 'float32' as const, shape: [M - 1], data: Float32Array.from({ length: M - 1 }, (_, i) => 0.01 * (i + 1)) }];
  let error: ProtocolError | undefined;
  await runSecAgg({
    config: cfg,
    clientId: ME,
    identitySecretKey: sites[0].idKeys.secretKey,
    delta,
    numExamples: 10,
    runId: 'run-r',
    ledger: new SecAggLedger(),
    inbox,
    signal: ac.signal,
    transport: {
      advertise: async (ad) => {
        calls.push('advertise');
        const ads = [ad, ...others.map((s) => s.ad(cfg))];
        sid = computeSessionId(cfg, ads);
        const identityKeys = Object.fromEntries(sites.map((s) => [s.id, s.idKeys.publicKey]));
        step('advertise', { roster: { advertisements: ads, identityKeys } });
      },
      shareKeys: async (m) => {
        calls.push('shareKeys');
        mine = m;
        const encKeys = new Map(sent.roster!.advertisements.map((a) => [a.clientId, a.encPublicKey]));
        const nbrs = neighboursOf(ids, cfg.graph, sid);
        for (const s of others) msgs.set(s.id, await s.shareKeys(sid, [...nbrs.get(s.id)!, s.id].sort(), T, encKeys));
        msgs.set(ME, m);
        const shares = ids.map((d) => {
          const x = msgs.get(d)!.shares.find((s) => s.to === ME)!;
          return { from: d, ciphertext: x.ciphertext, bCommitment: x.bCommitment, skCommitment: x.skCommitment };
        });
        step('shareKeys', { shares: { u2: ids, shares } });
      },
      uploadMasked: async () => {
        calls.push('maskedInput');
        step('maskedInput', { consistency: { survivors, dropped: [] } });
      },
      consistency: async (sig) => {
        calls.push('consistency');
        const signatures = [sig, ...others.map((s) => s.sign(sid, survivors, []))].sort((a, b) => (a.from < b.from ? -1 : 1));
        step('consistency', { unmask: { survivors, dropped: [], signatures } });
      },
      unmask: async (r) => {
        calls.push('unmask');
        answers.push(r);
        step('answered');
      },
    },
  }).catch((e: unknown) => {
    if (!(e instanceof ProtocolError)) throw e;
    error = e;
  });
  // Honest: a b-share of every survivor and no mask-key share; each the share its dealer dealt to s00 (s00's own, the
  // one its ShareKeys message committed to).
  const honest = (r: UnmaskResponse): boolean =>
    r.from === ME &&
    r.skShares.length === 0 &&
    r.bShares.length === ids.length &&
    r.bShares.every((x, i) => {
      if (x.of !== ids[i]) return false;
      if (x.of !== ME) return Buffer.from(x.share).equals(Buffer.from(sites[i].dealt.get(ME)![0]));
      const own = mine!.shares.find((s) => s.to === ME)!;
      return Buffer.from(shareCommitment(sid, ME, ME, 'b', x.share)).equals(Buffer.from(own.bCommitment));
    });
  return { calls, answers, error, honest, inbox, reason: () => (ac.signal.aborted ? (ac.signal.reason as unknown) : undefined) };
}

const ALL: SecAggStage[] = ['advertise', 'shareKeys', 'maskedInput', 'consistency', 'unmask'];
const refusal = (what: string): string => `secagg client: the coordinator sent a second, different ${what} for this task; refusing it and stopping the task`;

/** Expects the flow to have stopped with exactly this refusal after exactly these calls. */
function stopped(p: Played, what: string, calls: SecAggStage[]): void {
  expect(p.error, 'the flow stopped').to.be.instanceOf(ProtocolError);
  expect(p.reason(), 'the task was stopped with the same refusal').to.equal(p.error);
  expect([p.error!.code, p.error!.message]).to.deep.equal([status.FAILED_PRECONDITION, refusal(what)]);
  expect(p.calls).to.deep.equal(calls);
}

describe('secagg: a stage message delivered again (a reopened task stream), played by hand', function () {
  this.timeout(30_000);

  it('the same message again, at its stage and after every later one, is dropped: each stage answered once', async () => {
    const p = await play((after, sent, put) => {
      // Everything sent so far, again after every stage (the roster five times more), the unmask request twice after the answer.
      if (sent.roster) put({ roster: sent.roster });
      if (sent.shares) put({ shares: sent.shares });
      if (sent.consistency) put({ consistency: sent.consistency });
      if (sent.unmask) put({ unmask: sent.unmask });
      if (after === 'answered') put({ unmask: sent.unmask! });
    });
    expect(p.error).to.equal(undefined);
    expect(p.calls).to.deep.equal(ALL);
    expect(p.answers).to.have.length(1);
    expect(p.honest(p.answers[0]), 'the honest answer').to.equal(true);
    expect(p.reason()).to.equal(undefined);
  });

  it('an unmask request delivered again with other lists (a survivor listed as dropped) after the answer: refused, never answered', async () => {
    const p = await play((after, sent, put) => {
      if (after !== 'answered') return;
      const u = sent.unmask!;
      put({ unmask: { ...u, survivors: u.survivors.filter((s) => s !== 's02'), dropped: ['s02'] } });
    });
    // The first request was answered, once and honestly; the second, which would ask for s02's mask-key share on top
    // of its seed share, is refused by the inbox rather than handed on (the flow had ended: nothing asks for it).
    expect(p.error).to.equal(undefined);
    expect(p.answers).to.have.length(1);
    expect(p.honest(p.answers[0]), 'the honest answer').to.equal(true);
    expect((p.reason() as Error).message).to.equal(refusal('unmask request'));
    await refused(() => p.inbox.next('unmask', new AbortController().signal), status.FAILED_PRECONDITION, refusal('unmask request'));
  });

  it('a second, different unmask request before s00 answers: the task stops, no share is revealed', async () => {
    const p = await play((after, sent, put) => {
      if (after !== 'consistency') return;
      const u = sent.unmask!;
      put({ unmask: { ...u, survivors: u.survivors.filter((s) => s !== 's02'), dropped: ['s02'] } });
    });
    stopped(p, 'unmask request', ['advertise', 'shareKeys', 'maskedInput', 'consistency']);
    expect(p.answers).to.deep.equal([]);
  });

  it('the unmask request again with one signature fewer: a different message, the task stops before revealing', async () => {
    const p = await play((after, sent, put) => {
      if (after === 'consistency') put({ unmask: { ...sent.unmask!, signatures: sent.unmask!.signatures.slice(1) } });
    });
    stopped(p, 'unmask request', ['advertise', 'shareKeys', 'maskedInput', 'consistency']);
    expect(p.answers).to.deep.equal([]);
  });

  it('a replayed roster with another advertisement after the stage moved on (at the consistency check): stops before signing', async () => {
    const p = await play((after, sent, put) => {
      if (after !== 'maskedInput') return;
      const r = sent.roster!;
      const ads = r.advertisements.map((a) => (a.clientId === 's03' ? { ...a, encPublicKey: new Site('s09').enc.publicKey } : a));
      put({ roster: { ...r, advertisements: ads } });
    });
    stopped(p, 'roster', ['advertise', 'shareKeys', 'maskedInput']);
  });

  it('routed shares replayed with another U2 after the masked upload: stops before signing', async () => {
    const p = await play((after, sent, put) => {
      if (after === 'maskedInput') put({ shares: { ...sent.shares!, u2: sent.shares!.u2.slice(0, 4) } });
    });
    stopped(p, 'routed shares', ['advertise', 'shareKeys', 'maskedInput']);
  });

  it('a consistency check delivered again with other lists after s00 signed: stops, the unmask request goes unanswered', async () => {
    const p = await play((after, sent, put) => {
      if (after === 'consistency') put({ consistency: { survivors: sent.consistency!.survivors.filter((s) => s !== 's04'), dropped: ['s04'] } });
    });
    stopped(p, 'consistency check', ['advertise', 'shareKeys', 'maskedInput', 'consistency']);
    expect(p.answers).to.deep.equal([]);
  });

  it('the inboxes route a stage message to its running task only: one for a task not running here is dropped', () => {
    const boxes = new SecAggInboxes();
    const b = boxes.openFor('t-1', () => undefined);
    const check = { task_id: 't-2', survivors: ['s00'], dropped: [] };
    expect(boxes.deliver({ secagg_consistency: check })).to.equal(true);
    expect(boxes.deliver({ cancel: { task_id: 't-1', reason: 'x' } })).to.equal(false);
    boxes.deliver({ secagg_consistency: { ...check, task_id: 't-1' } });
    const ac = new AbortController();
    return b.next('consistency', ac.signal).then((c) => expect(c).to.deep.equal({ survivors: ['s00'], dropped: [] }));
  });
});

describe('secagg: a stage call whose connection broke is sent again (SDK, calls scripted)', () => {
  const fast = { initialMs: 1, maxMs: 5, factor: 2 };
  const err = (code: status, details = ''): ServiceError => Object.assign(new Error(details), { code, details, metadata: null }) as unknown as ServiceError;
  /** A call answered with `answers` in turn (null: taken); counts its calls. */
  const scripted = (answers: (ServiceError | null)[]): { call: ReportCall; calls: () => number } => {
    let n = 0;
    return { call: (_deadline, done) => setImmediate(() => done(answers[n++] ?? null)), calls: () => n };
  };
  const send = (call: ReportCall): Promise<unknown> =>
    sendStageCall(call, { backoff: fast, deadlineMs: 30_000 }, new AbortController().signal, () => false).then(() => 'taken');
  const twice = err(status.ALREADY_EXISTS, 'secagg share keys: secagg: c-1 already sent its shares in this round');
  const movedOn = err(status.FAILED_PRECONDITION, "secagg advertise: secagg: an advertisement is not accepted at stage 'shareKeys'");

  it('after a break, ALREADY_EXISTS or a stage that moved on says the first call landed: taken, not sent a third time', async () => {
    for (const answer of [twice, movedOn]) {
      const s = scripted([err(status.UNAVAILABLE), answer]);
      expect(await send(s.call)).to.equal('taken');
      expect(s.calls()).to.equal(2);
    }
  });

  it('without a break, or with any other refusal, the refusal stands', async () => {
    for (const answers of [[twice], [movedOn], [err(status.UNAVAILABLE), err(status.PERMISSION_DENIED, 'x')]]) {
      const s = scripted(answers);
      const e = (await send(s.call).catch((x: ServiceError) => x)) as ServiceError;
      expect(e.code).to.equal(answers[answers.length - 1].code);
      expect(s.calls()).to.equal(answers.length);
    }
  });
});
