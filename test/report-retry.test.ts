// The SDK's report retry (client-sdk/report-retry.ts) on its own: which failures it sends a report again after, and
// when it stops. No network: the calls are scripted; the retry over a real cut connection is in
// test/reconnect-grace-sdk.test.ts.
import { status, type ServiceError } from '@grpc/grpc-js';
import { sendReport, type ReportCall } from '../client-sdk/report-retry';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const fast = { initialMs: 1, maxMs: 5, factor: 2 };
const err = (code: status): ServiceError =>
  Object.assign(new Error(`${code} ${status[code]}`), { code, details: '', metadata: null }) as unknown as ServiceError;
/** A call that fails with `codes` in turn, then succeeds; counts its calls. */
function scripted(codes: status[]): { call: ReportCall; calls: () => number } {
  let n = 0;
  return { call: (done) => setImmediate(() => done(n < codes.length ? err(codes[n++]) : (n++, null))), calls: () => n };
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

  it("never sends again after the coordinator's answer (a refusal is final; DEADLINE_EXCEEDED is its 'too late')", async () => {
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
    const slow = { initialMs: 60_000, maxMs: 60_000, factor: 1 };
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
});
