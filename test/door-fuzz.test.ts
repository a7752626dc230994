// Property-based fuzzing of every RPC at the door (fast-check, fixed seed, bounded runs), over real gRPC against
// one coordinator with three joined sites holding tasks. Every message — random bytes, structurally valid
// messages with hostile field values, upload streams of random frames, valid uploads with flipped bytes — must
// get a specific status that is never INTERNAL or UNKNOWN, in time (no hang), with a short reply carrying no
// path. Afterwards: the run directory is byte-for-byte unchanged, no log line is long or carries a path, a
// session token or key material, and a legitimate round still commits.
import { promises as fs } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import fc from 'fast-check';
import { loadFedtuneProto } from '../proto/load';
import { MAX_REQUEST_BYTES } from '../proto/limits';
import { PROTOCOL_VERSION } from '../proto/constants';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import {
  join,
  nextTask,
  rawClient,
  reportMetrics,
  smallAdapter,
  snapshotBytes,
  startCoordinator,
  tempDir,
  upload,
  uploadFrames,
  type Harness,
  type JoinedRaw,
} from './harness';
import { METHODS, MAX_LOG_LINE, capturingLogger, genericClient, rawCall, type Method } from './door-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SEED = 20261129;
const service = loadFedtuneProto().fedtune.v1.Federation.service as unknown as Record<Method, { requestSerialize: (v: unknown) => Buffer }>;
const ser = (m: Method, v: unknown): Buffer => service[m].requestSerialize(v);

/** Strings as a hostile client sends them: short unicode, control characters, or long runs. */
const hostileString = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 40, unit: 'binary' }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 300, unit: 'grapheme-ascii' }) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('a', '/', '\n', 'é'), fc.integer({ min: 100, max: 40_000 })).map(([c, n]) => c.repeat(n)) },
);
const hostileBytes = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 80 }) },
  { weight: 1, arbitrary: fc.integer({ min: 33, max: 20_000 }).map((n) => new Uint8Array(n).fill(7)) },
);
const u32 = fc.oneof(fc.constantFrom(0, 1, 2, 3, 0xffffffff), fc.nat());
const labels = fc.dictionary(hostileString, hostileString, { maxKeys: 40 });

interface Outcome {
  method: Method;
  code: grpc.status;
  details: string;
}

describe('the door under fuzzing: every RPC, seeded and bounded (fast-check)', function () {
  this.timeout(120_000);
  let h: Harness;
  let c: RawClient;
  let raw: grpc.Client;
  const sites: JoinedRaw[] = [];
  const tasks: TrainTask__Output[] = [];
  const streams: grpc.ClientReadableStream<unknown>[] = [];
  const cap = capturingLogger();
  let initial: Map<string, Buffer>;
  let startLines = 0;
  const seen = new Map<string, number>();

  before(async () => {
    h = await startCoordinator(await tempDir('door-fuzz'), { minClients: 3, minUpdates: 2, deadlineMs: 120_000 }, {}, { logger: cap.logger });
    c = rawClient(h.address);
    raw = genericClient(h.address);
    for (const n of ['site-a', 'site-b', 'site-c']) sites.push(await join(c, n));
    const t = sites.map((s) => nextTask(c, s.session_token));
    streams.push(...t.map((x) => x.stream));
    tasks.push(...(await Promise.all(t.map((x) => x.task))));
    await new Promise((r) => setTimeout(r, 100)); // let v0's files settle before the snapshot
    initial = await snapshotBytes(h.runDir);
    startLines = cap.lines.length; // start-up lines name the run directory and key file, for the operator
  });

  after(async () => {
    for (const s of streams) s.cancel();
    c.close();
    raw.close();
    await h.coordinator.stop(500);
    await fs.rm(h.runDir, { recursive: true, force: true });
  });

  /** The door's promise for one answer. */
  function check(o: Outcome): void {
    const label = `${o.method}: ${status[o.code]} ${o.details.slice(0, 160)}`;
    expect(o.code, label).to.not.equal(status.INTERNAL);
    expect(o.code, label).to.not.equal(status.UNKNOWN);
    expect(o.details, `${label} (a hang: the client's deadline fired)`).to.not.match(/^Deadline exceeded/);
    expect(o.details.length, label).to.be.below(1024);
    expect(o.details, label).to.not.match(/\/(tmp|work|home|root|var|etc|usr)\//);
    const k = `${o.method} ${status[o.code]}`;
    seen.set(k, (seen.get(k) ?? 0) + 1);
  }

  const send = async (method: Method, msgs: Buffer[]): Promise<void> => check({ method, ...(await rawCall(raw, method, msgs, 15_000)) });
  const run = (name: string, arb: fc.Arbitrary<() => Promise<void>>, numRuns: number): Promise<void> =>
    fc
      .assert(
        fc.asyncProperty(arb, (act) => act()),
        { seed: SEED, numRuns, endOnFailure: true },
      )
      .catch((e: Error) => {
        throw new Error(`${name}: ${e.message.slice(0, 2000)}`);
      });

  it('random bytes to every RPC', () =>
    run(
      'random bytes',
      fc.tuple(fc.constantFrom(...METHODS), fc.uint8Array({ maxLength: 600 })).map(
        ([m, b]) =>
          () =>
            send(m, [Buffer.from(b)]),
      ),
      1200,
    ));

  it('messages just under and over each small RPC bound', () =>
    run(
      'sizes',
      fc
        .tuple(
          fc.constantFrom<Method>('Hello', 'Join', 'StreamTasks', 'DownloadAdapter', 'ReportMetrics', 'Leave', 'SecAggAdvertise'),
          fc.integer({ min: -64, max: 64 }),
          fc.nat(255),
        )
        .map(
          ([m, d, fill]) =>
            () =>
              send(m, [Buffer.alloc(Math.max(0, MAX_REQUEST_BYTES[m] + d), fill)]),
        ),
      60,
    ));

  it('well-formed messages with hostile field values to every unary and server-streaming RPC', () => {
    // Valid tokens only where a call cannot change state (no Leave, no StreamTasks: it would replace a site's stream).
    const token = fc.oneof(fc.constantFrom(...sites.map((s) => s.session_token)), hostileString);
    const badToken = hostileString;
    const taskId = fc.oneof(fc.constantFrom(...tasks.map((t) => t.task_id)), hostileString);
    const msg: fc.Arbitrary<[Method, unknown]> = fc.oneof(
      fc.record({ protocol_version: u32 }).map((r): [Method, unknown] => ['Hello', r]),
      fc
        .record({
          protocol_version: fc.constantFrom(PROTOCOL_VERSION, 0, 99),
          client_name: hostileString,
          backend: hostileString,
          labels,
          public_key: hostileBytes,
          challenge: hostileBytes,
          signature: hostileBytes,
          join_token: hostileString,
          coordinator_key_id: hostileString,
        })
        .map((r): [Method, unknown] => ['Join', r]),
      fc.record({ session_token: badToken }).map((r): [Method, unknown] => ['StreamTasks', r]),
      fc.record({ session_token: token, version: u32 }).map((r): [Method, unknown] => ['DownloadAdapter', r]),
      fc
        .record({
          session_token: token,
          task_id: taskId,
          round: u32,
          num_examples: u32,
          backend: hostileString,
          metrics: fc.dictionary(hostileString, fc.double(), { maxKeys: 80 }),
        })
        .map((r): [Method, unknown] => ['ReportMetrics', r]),
      fc.record({ session_token: badToken, reason: hostileString }).map((r): [Method, unknown] => ['Leave', r]),
      fc
        .record({
          session_token: token,
          task_id: taskId,
          round: u32,
          advertisement: fc.record({ client_id: hostileString, enc_public_key: hostileBytes, mask_public_key: hostileBytes, signature: hostileBytes }),
        })
        .map((r): [Method, unknown] => ['SecAggAdvertise', r]),
      fc
        .record({
          session_token: token,
          task_id: taskId,
          round: u32,
          share_keys: fc.record({
            from: hostileString,
            seed_hash: hostileBytes,
            signature: hostileBytes,
            shares: fc.array(fc.record({ to: hostileString, ciphertext: hostileBytes, b_commitment: hostileBytes, sk_commitment: hostileBytes }), {
              maxLength: 5,
            }),
          }),
        })
        .map((r): [Method, unknown] => ['SecAggShareKeys', r]),
      fc
        .record({ session_token: token, task_id: taskId, round: u32, signature: fc.record({ from: hostileString, signature: hostileBytes }) })
        .map((r): [Method, unknown] => ['SecAggConsistency', r]),
      fc
        .record({
          session_token: token,
          task_id: taskId,
          round: u32,
          response: fc.record({
            from: hostileString,
            b_shares: fc.array(fc.record({ of: hostileString, share: hostileBytes }), { maxLength: 5 }),
            sk_shares: fc.array(fc.record({ of: hostileString, share: hostileBytes }), { maxLength: 5 }),
          }),
        })
        .map((r): [Method, unknown] => ['SecAggUnmask', r]),
    );
    return run(
      'structured',
      msg.map(
        ([m, v]) =>
          () =>
            send(m, [ser(m, v)]),
      ),
      1200,
    );
  });

  it('upload streams: random frames, hostile headers, and valid uploads with flipped bytes', () => {
    const who = sites[2];
    const task = tasks[2];
    const valid = uploadFrames({ who, task }, smallAdapter(0.01)).map((f) => ser('UploadUpdate', f));
    const header = fc.record({
      protocol_version: fc.constantFrom(PROTOCOL_VERSION, 0, 7),
      session_token: fc.oneof(fc.constant(who.session_token), hostileString),
      task_id: fc.oneof(fc.constant(task.task_id), hostileString),
      round: u32,
      base_version: u32,
      num_examples: u32,
      tensors: fc.option(
        fc.record({
          protocol_version: fc.constantFrom(PROTOCOL_VERSION, PROTOCOL_VERSION + 1),
          total_bytes: u32,
          chunk_bytes: u32,
          tensors: fc.array(
            fc.record({ name: hostileString, dtype: fc.constantFrom('FLOAT32', 'UINT32', 'DTYPE_UNSPECIFIED'), shape: fc.array(u32, { maxLength: 10 }) }),
            { maxLength: 6 },
          ),
        }),
      ),
      sealed: fc.option(
        fc.record({
          run_id: hostileString,
          client_id: hostileString,
          attempt: u32,
          base_manifest_sha256: hostileString,
          coordinator_key_id: hostileString,
          ephemeral_public_key: hostileBytes,
          nonce_prefix: hostileBytes,
          chunk_count: u32,
          ciphertext_sha256: hostileBytes,
          signature: hostileBytes,
        }),
      ),
    });
    const frame = fc.oneof(
      header.map((hd) => ser('UploadUpdate', { header: hd })),
      hostileBytes.map((b) => ser('UploadUpdate', { chunk: Buffer.from(b) })),
      fc.record({ chunk_count: u32, sha256: hostileBytes }).map((t) => ser('UploadUpdate', { trailer: t })),
      fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b)),
    );
    const flipped = fc
      .tuple(fc.nat(valid.length - 1), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 3 }))
      .map(([i, flips]) => {
        const frames = valid.map((b) => Buffer.from(b));
        for (const [pos, x] of flips) frames[i][pos % frames[i].length] ^= x;
        return frames;
      });
    const streamArb = fc.oneof(fc.array(frame, { maxLength: 5 }), flipped);
    // A flip that only touches a tag's wire type decodes to the same signed bytes (protobufjs reads known fields
    // by number), so an upload may be accepted once; later ones are then answered as resumed uploads (OK, duplicate).
    return run(
      'uploads',
      streamArb.map((frames) => () => send('UploadUpdate', frames)),
      800,
    );
  });

  it('left the run directory byte-for-byte unchanged and the log short and free of paths, tokens and keys', async () => {
    const after = await snapshotBytes(h.runDir);
    // The one write an upload may cause: an accepted update spooled, sealed, for the round (see the comment on
    // flipped frames above); at most one per site, and nothing else new.
    const spooled = [...after.keys()].filter((k) => !initial.has(k) && /^spool\/round-1\/c-[0-9a-f]{12}\.sealed$/.test(k));
    expect(spooled.length).to.be.at.most(sites.length);
    for (const k of spooled) after.delete(k);
    expect([...after.keys()].sort()).to.deep.equal([...initial.keys()].sort());
    for (const [k, v] of initial) expect(after.get(k)!.equals(v), k).to.equal(true);
    const secrets = [
      ...sites.map((s) => s.session_token),
      Buffer.from(h.coordinator.keys.box.secretKey).toString('hex'),
      Buffer.from(h.coordinator.keys.box.secretKey).toString('base64'),
      Buffer.from(h.coordinator.keys.sign.secretKey).toString('base64'),
    ];
    expect(cap.lines.length - startLines, 'the refusals were logged').to.be.above(100);
    for (const l of cap.lines.slice(startLines)) {
      expect(l.length, l.slice(0, 200)).to.be.below(MAX_LOG_LINE);
      expect(l, l.slice(0, 200)).to.not.match(/\/(tmp|work|home|root)\/[^"]*fedtune-door-fuzz/);
      for (const s of secrets) expect(l.includes(s), 'a log line carries a token or key').to.equal(false);
    }
    if (process.env.FEDTUNE_FUZZ_STATS)
      console.log(
        [...seen]
          .sort()
          .map(([k, n]) => `${k} ${n}`)
          .join('\n'),
      );
    // Every RPC was exercised.
    for (const m of METHODS)
      expect(
        [...seen.keys()].some((k) => k.startsWith(`${m} `)),
        m,
      ).to.equal(true);
  });

  it('kept serving: two sites complete the round (the third leaves)', async () => {
    const [a, b] = sites;
    await upload(c, uploadFrames({ who: a, task: tasks[0] }, smallAdapter(0.25)));
    await upload(c, uploadFrames({ who: b, task: tasks[1] }, smallAdapter(0.75)));
    streams[2].cancel(); // site-c's stream ends: the round does not wait for it
    await reportMetrics(c, a.session_token, tasks[0].task_id, tasks[0].round);
    await reportMetrics(c, b.session_token, tasks[1].task_id, tasks[1].round).catch(() => undefined);
    const latest = async (): Promise<string> => (await fs.readFile(`${h.runDir}/latest`, 'utf8')).trim();
    for (let i = 0; i < 200 && (await latest()) !== 'v000001'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await latest()).to.equal('v000001');
  });
});
