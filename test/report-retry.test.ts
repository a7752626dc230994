// The SDK's report retry (client-sdk/report-retry.ts) on its own: which failures it sends a report again after (a
// transport failure, the call's own deadline passing), and when it stops; the bounds of the report deadline and
// keepalive options. No network: the calls are scripted; the retry over a real cut connection is in
// test/reconnect-grace-sdk.test.ts, over a blackholed one in test/report-deadline-sdk.test.ts.
import { status, type ServiceError } from '@grpc/grpc-js';
import { checkReportDeadline, reportRetryable, sendReport, type ReportCall } from '../client-sdk/report-retry';
import { keepaliveChannelOptions } from '../client-sdk/keepalive';
import { FederationClient } from '../client-sdk/client';
import { ConstantTrainer } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const fast = { backoff: { initialMs: 1, maxMs: 5, factor: 2 }, deadlineMs: 60_000 };
const err = (code: status): ServiceError =>
  Object.assign(new Error(`${code} ${status[code]}`), { code, details: '', metadata: null }) as unknown as ServiceError;
/** A call that fails with `codes` in turn, then succeeds; counts its calls. */
function scripted(codes: status[]): { call: ReportCall; calls: () => number } {
  let n = 0;
  return { call: (_deadline, done) => setImmediate(() => done(n < codes.length ? err(codes[n++]) : (n++, null))), calls: () => n };
}

describe('report retry (SDK): a report whose call broke in transit is sent again while its task is current', () => {
  it('sends again after UNAVAILABLE and CANCELLED, until the coordinator takes it', async () => {
    const s = scripted([status.UNAVAILABLE, status.CANCELLED, status.UNAVAILABLE]);
    const notes: number[] = [];
    await sendReport(
      s.call,
      fast,
      new AbortController().signal,
      () => false,
      (attempt) => notes.push(attempt),
    );
    expect(s.calls()).to.equal(4);
    expect(notes).to.deep.equal([1, 2, 3]);
  });

  it("never sends again after the coordinator's answer (a refusal is final; DEADLINE_EXCEEDED before the call's deadline is its 'too late')", async () => {
    for (const code of [
      status.ALREADY_EXISTS,
      status.FAILED_PRECONDITION,
      status.DEADLINE_EXCEEDED,
      status.PERMISSION_DENIED,
      status.UNAUTHENTICATED,
      status.INVALID_ARGUMENT,
      status.INTERNAL,
    ]) {
      const s = scripted([code]);
      const e = await sendReport(s.call, fast, new AbortController().signal, () => false).then(
        () => null,
        (x: ServiceError) => x,
      );
      expect(e?.code, status[code]).to.equal(code);
      expect(s.calls(), status[code]).to.equal(1);
    }
  });

  it('once the task is no longer current (its signal aborted during the wait): one last call, at once, then the last failure', async () => {
    const abort = new AbortController();
    const s = scripted(new Array<status>(1000).fill(status.UNAVAILABLE));
    const slow = { backoff: { initialMs: 60_000, maxMs: 60_000, factor: 1 }, deadlineMs: 60_000 };
    const started = Date.now();
    const outcome = (p: Promise<void>): Promise<ServiceError | null> =>
      p.then(
        () => null,
        (x: ServiceError) => x,
      );
    const e = await outcome(
      sendReport(
        s.call,
        slow,
        abort.signal,
        () => false,
        () => setImmediate(() => abort.abort(new Error('superseded'))),
      ),
    );
    expect(e?.code).to.equal(status.UNAVAILABLE);
    expect(s.calls(), 'the first, and one to learn whether it landed').to.equal(2);
    expect(Date.now() - started, 'the wait ended with the signal').to.be.below(5_000);
    // That last call is how a site learns that the report which moved the coordinator on had landed.
    const landed = scripted([status.UNAVAILABLE]);
    const gone = new AbortController();
    expect(
      await outcome(
        sendReport(
          landed.call,
          slow,
          gone.signal,
          () => false,
          () => gone.abort(),
        ),
      ),
    ).to.equal(null);
    expect(landed.calls()).to.equal(2);
  });

  it('a stopped client makes no further call', async () => {
    const s = scripted([status.UNAVAILABLE, status.UNAVAILABLE]);
    let stopped = false;
    const e = await sendReport(
      s.call,
      fast,
      new AbortController().signal,
      () => stopped,
      () => (stopped = true),
    ).then(
      () => null,
      (x: ServiceError) => x,
    );
    expect(e?.code).to.equal(status.UNAVAILABLE);
    expect(s.calls()).to.equal(1);
  });

  it("sends again after the call's own deadline passed (DEADLINE_EXCEEDED then), with that deadline on each call", async () => {
    const deadlines: number[] = [];
    let n = 0;
    const call: ReportCall = (deadline, done) => {
      deadlines.push(deadline.getTime());
      setImmediate(() => done(n++ < 2 ? err(status.DEADLINE_EXCEEDED) : null));
    };
    const before = Date.now();
    // deadlineMs 0: each call's deadline has passed when it fails, as when grpc-js's own timer ended it.
    await sendReport(call, { backoff: fast.backoff, deadlineMs: 0 }, new AbortController().signal, () => false);
    expect(n).to.equal(3);
    expect(deadlines).to.have.length(3);
    for (const d of deadlines) expect(d).to.be.within(before, Date.now());
  });

  it("takes DEADLINE_EXCEEDED as the call's own from 1 s before its deadline on, and as the coordinator's before that", () => {
    const e = err(status.DEADLINE_EXCEEDED);
    expect(reportRetryable(e, 10_000, 9_000)).to.equal(true);
    expect(reportRetryable(e, 10_000, 8_999)).to.equal(false);
    expect(reportRetryable(e)).to.equal(false); // no deadline: only the coordinator's
    expect(reportRetryable(err(status.UNAVAILABLE))).to.equal(true);
    expect(reportRetryable(err(status.FAILED_PRECONDITION), 0, 1)).to.equal(false);
    expect(reportRetryable(new Error('no code'), 0, 1)).to.equal(false);
  });

  it('report deadline and keepalive: defaults, and a value out of range refused before anything is sent', () => {
    expect(checkReportDeadline(1_000)).to.equal(1_000);
    expect(checkReportDeadline(600_000)).to.equal(600_000);
    for (const bad of [999, 600_001, 1500.5, NaN])
      expect(() => checkReportDeadline(bad)).to.throw(RangeError, `reportDeadlineMs must be a whole number of ms in [1000, 600000]; got ${bad}`);
    expect(keepaliveChannelOptions()).to.deep.equal({ 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 25_000 });
    expect(keepaliveChannelOptions({ timeoutMs: 5_000 })).to.deep.equal({ 'grpc.keepalive_time_ms': 10_000, 'grpc.keepalive_timeout_ms': 5_000 });
    expect(() => keepaliveChannelOptions({ timeMs: 999 })).to.throw(RangeError, 'keepalive.timeMs must be a whole number of ms in [1000, 3600000]; got 999');
    expect(() => keepaliveChannelOptions({ timeoutMs: 600_001 })).to.throw(
      RangeError,
      'keepalive.timeoutMs must be a whole number of ms in [1000, 600000]; got 600001',
    );
    const site = { address: '127.0.0.1:1', name: 'site-a', trainer: new ConstantTrainer(1) };
    expect(() => new FederationClient({ ...site, reportDeadlineMs: 500 })).to.throw(RangeError, 'reportDeadlineMs must be');
    expect(() => new FederationClient({ ...site, keepalive: { timeMs: 0 } })).to.throw(RangeError, 'keepalive.timeMs must be');
  });
});
