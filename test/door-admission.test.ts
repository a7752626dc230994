// Admission at the door, over real gRPC: a flood of Hellos cannot evict a legitimate site's pending challenge;
// beyond the configured bounds (challenges, sessions, uploads in flight) the coordinator answers
// RESOURCE_EXHAUSTED with a retry hint, which the SDK honours; a stalled upload is freed by the idle timeout;
// an unwritable run directory never sends a path to a site; a bad address fails at once in the SDK.
import { promises as fs, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { FederationClient } from '../client-sdk/client';
import { hintedDelay } from '../client-sdk/backoff';
import { RETRY_AFTER_KEY, retryAfterOf } from '../proto/limits';
import { peerHost } from '../coordinator/auth/challenges';
import { PROTOCOL_VERSION } from '../proto/load';
import { DOMAINS, joinSignedFields, sign, type JoinedCoordinator } from '../proto/crypto/signing';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import {
  ConstantTrainer,
  hello,
  join,
  nextTask,
  rawClient,
  refusal,
  reportMetrics,
  sendUpload,
  smallAdapter,
  startCoordinator,
  tempDir,
  testIdentity,
  upload,
  uploadFrames,
  type Harness,
} from './harness';
import { capturingLogger } from './door-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Join with a challenge obtained earlier. */
function joinWithChallenge(c: RawClient, name: string, runId: string, challenge: Buffer, coordinator: JoinedCoordinator): Promise<unknown> {
  const id = testIdentity(name);
  const signature = sign(DOMAINS.join, joinSignedFields(PROTOCOL_VERSION, runId, challenge, name, id.publicKey, 'test', coordinator), id.secretKey);
  return new Promise((res, rej) =>
    c.Join(
      {
        protocol_version: PROTOCOL_VERSION,
        client_name: name,
        backend: 'test',
        labels: {},
        public_key: id.publicKey,
        challenge,
        signature,
        join_token: '',
        coordinator_key_id: coordinator.key_id,
      },
      (e, r) => (e ? rej(e) : res(r)),
    ),
  );
}

async function withCoordinator(
  name: string,
  rounds: Record<string, unknown>,
  extra: Record<string, unknown>,
  body: (h: Harness, c: RawClient) => Promise<void>,
  logger?: ReturnType<typeof capturingLogger>['logger'],
): Promise<void> {
  const h = await startCoordinator(await tempDir(name), rounds, extra, { logger });
  const c = rawClient(h.address);
  try {
    await body(h, c);
  } finally {
    c.close();
    await h.coordinator.stop(300);
    await fs.rm(h.runDir, { recursive: true, force: true });
  }
}

describe('the door: admission control and fail-fast (over gRPC)', function () {
  this.timeout(90_000);

  it('10,000 Hellos from one peer do not evict a legitimate pending challenge', () =>
    withCoordinator('door-hello-flood', {}, {}, async (h, c) => {
      const legit = await hello(c);
      const attacker = rawClient(h.address);
      const refused: grpc.ServiceError[] = [];
      try {
        for (let wave = 0; wave < 10; wave++) {
          for (const r of await Promise.allSettled(Array.from({ length: 1000 }, () => hello(attacker))))
            if (r.status === 'rejected') refused.push(r.reason as grpc.ServiceError);
        }
      } finally {
        attacker.close();
      }
      // The peer's quota (admission.maxChallengesPerHost, 10,000) held the legitimate challenge and 9,999 of the flood.
      expect(refused.length).to.equal(1);
      expect(refused[0].code).to.equal(status.RESOURCE_EXHAUSTED);
      await joinWithChallenge(c, 'site-legit', legit.run_id, legit.challenge, legit.coordinator!);
    }));

  it('beyond admission.maxChallengesPerHost answers RESOURCE_EXHAUSTED with a retry hint, and evicts nobody', () =>
    withCoordinator('door-hello-cap', {}, { admission: { maxChallengesPerHost: 50, retryAfterMs: 250 } }, async (h, c) => {
      const legit = await hello(c);
      const results = await Promise.allSettled(Array.from({ length: 100 }, () => hello(c)));
      const refused = results.filter((r) => r.status === 'rejected').map((r) => (r as PromiseRejectedResult).reason as grpc.ServiceError);
      expect(results.length - refused.length).to.equal(49);
      expect(refused.length).to.equal(51);
      for (const e of refused) {
        expect(e.code).to.equal(status.RESOURCE_EXHAUSTED);
        expect(e.details).to.contain('join challenges are already outstanding for this peer (at most 50)');
        expect(e.metadata.get(RETRY_AFTER_KEY)).to.deep.equal(['250']);
        expect(retryAfterOf(e)).to.equal(250);
      }
      await joinWithChallenge(c, 'site-legit', legit.run_id, legit.challenge, legit.coordinator!);
      await hello(c); // the used challenge freed a place
      expect(peerHost('ipv4:127.0.0.1:43210')).to.equal('127.0.0.1');
      expect(peerHost('ipv6:[::1]:43210')).to.equal('[::1]');
    }));

  it('beyond admission.maxSessions a new site is told to retry later; the SDK waits as told (with jitter) and joins once a place is free', () =>
    withCoordinator('door-sessions', { minClients: 5, minUpdates: 2 }, { admission: { maxSessions: 2, retryAfterMs: 300 } }, async (h, c) => {
      const a = await join(c, 'site-a');
      await join(c, 'site-b');
      const err = await refusal(join(c, 'site-c'));
      expect(err.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(err.details).to.contain('admission.maxSessions');
      expect(retryAfterOf(err)).to.equal(300);
      await join(c, 'site-a'); // a rejoin passes
      const delays: number[] = [];
      const sdk = new FederationClient({ address: h.address, name: 'site-c', identity: testIdentity('site-c'), trainer: new ConstantTrainer(0.1) });
      sdk.on('reconnecting', (r) => delays.push(r.delayMs));
      const joined = new Promise<void>((r) => sdk.once('joined', () => r()));
      void sdk.run().catch(() => undefined);
      while (delays.length < 2) await sleep(50);
      const again = await join(c, 'site-a'); // still refused for c: a is in, b is in
      await new Promise<void>((res, rej) => c.Leave({ session_token: again.session_token, reason: 'make room' }, (e) => (e ? rej(e) : res())));
      await joined;
      for (const d of delays) expect(d).to.be.within(300, 600);
      void a;
      await sdk.stop();
    }));

  it('beyond admission.maxUploadsInFlight an upload is told to retry later; the stalled one is refused after transport.uploadIdleTimeoutMs and its retry accepted', () =>
    withCoordinator('door-uploads', {}, { admission: { maxUploadsInFlight: 1, retryAfterMs: 200 }, transport: { uploadIdleTimeoutMs: 600 } }, async (h, c) => {
      const a = await join(c, 'site-a');
      const b = await join(c, 'site-b');
      const ta = nextTask(c, a.session_token);
      const tb = nextTask(c, b.session_token);
      const [taskA, taskB] = await Promise.all([ta.task, tb.task]);
      try {
        // A stalls: header and one chunk, then silence (the stream stays open).
        const fa = uploadFrames({ who: a, task: taskA }, smallAdapter(0.25));
        const t0 = Date.now();
        const stalled = new Promise<grpc.ServiceError | null>((resolve) => {
          const call = c.UploadUpdate((e) => resolve(e));
          call.write(fa[0]);
          call.write(fa[1]);
        });
        await sleep(100);
        const busy = await sendUpload(c, uploadFrames({ who: b, task: taskB }, smallAdapter(0.75)));
        expect(busy.err?.code).to.equal(status.RESOURCE_EXHAUSTED);
        expect(busy.err?.details).to.contain('admission.maxUploadsInFlight');
        expect(retryAfterOf(busy.err)).to.equal(200);
        const idle = await stalled;
        expect(idle?.code).to.equal(status.DEADLINE_EXCEEDED);
        expect(idle?.details).to.contain('upload idle for 600 ms');
        expect(Date.now() - t0).to.be.within(550, 5000);
        // The task is free again: the site's retry is accepted (not ALREADY_EXISTS "already in progress").
        await upload(c, fa);
        await upload(c, uploadFrames({ who: b, task: taskB }, smallAdapter(0.75)));
        await reportMetrics(c, a.session_token, taskA.task_id, taskA.round);
        await reportMetrics(c, b.session_token, taskB.task_id, taskB.round).catch(() => undefined);
        const latest = async (): Promise<string> => (await fs.readFile(`${h.runDir}/latest`, 'utf8')).trim();
        for (let i = 0; i < 100 && (await latest()) !== 'v000001'; i++) await sleep(50);
        expect(await latest()).to.equal('v000001');
      } finally {
        ta.stream.cancel();
        tb.stream.cancel();
      }
    }));

  it('with the run directory not writable, a Join gets UNAVAILABLE without any path; the log keeps the cause', async function () {
    const cap = capturingLogger();
    await withCoordinator(
      'door-rodir',
      {},
      {},
      async (h, c) => {
        const unlock = lockDir(h.runDir);
        if (!unlock) return this.skip(); // neither chattr nor permissions stop writes here
        try {
          const err = await refusal(join(c, 'site-new'));
          expect(status[err.code]).to.equal('UNAVAILABLE');
          expect(err.details).to.match(/^the coordinator cannot write its state right now \(incident [0-9a-f]{8}, in its log\); try again later$/);
          expect(err.details).to.not.contain('/');
          const line = cap.lines.find((l) => l.includes('join rejected'));
          expect(line).to.contain('incident');
        } finally {
          unlock();
        }
        await join(c, 'site-new'); // writable again: the binding was undone and is made afresh
      },
      cap.logger,
    );
  });

  it('the SDK refuses an address without a port or with a scheme at once, and an unresolvable host before any retry', async () => {
    const mk = (address: string): FederationClient => new FederationClient({ address, name: 'site-x', trainer: new ConstantTrainer(0.1) });
    expect(() => mk('localhost')).to.throw('has no port');
    expect(() => mk('http://127.0.0.1:50051')).to.throw('is a URL: give host:port without a scheme (e.g. 127.0.0.1:50051)');
    expect(() => mk('127.0.0.1:70000')).to.throw('outside 1..65535');
    expect(() => mk('[::1]:50051')).to.not.throw();
    const sdk = mk('no-such-host.invalid:50051');
    let reconnects = 0;
    sdk.on('reconnecting', () => reconnects++);
    const t0 = Date.now();
    const err = await sdk.run().then(
      () => null,
      (e: Error) => e,
    );
    expect(err?.message).to.contain('does not resolve');
    expect(reconnects).to.equal(0);
    expect(Date.now() - t0).to.be.below(5000);
  });

  it('jitters a hinted retry between the hint and twice the hint', () => {
    expect(hintedDelay(1000, () => 0)).to.equal(1000);
    expect(hintedDelay(1000, () => 0.999)).to.equal(1999);
  });
});

/** Makes `dir` refuse new files (chattr +i as root, else mode 0500); returns the undo, or null if writes still pass. */
function lockDir(dir: string): (() => void) | null {
  let undo: () => void;
  try {
    execFileSync('chattr', ['+i', dir], { stdio: 'ignore' });
    undo = () => execFileSync('chattr', ['-i', dir], { stdio: 'ignore' });
  } catch {
    execFileSync('chmod', ['0500', dir]);
    undo = () => execFileSync('chmod', ['0700', dir]);
  }
  try {
    mkdirSync(path.join(dir, 'probe'));
  } catch {
    return undo;
  }
  execFileSync('rmdir', [path.join(dir, 'probe')]);
  undo();
  return null;
}
