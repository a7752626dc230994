// SecAgg faults over real gRPC: six raw sites drive the protocol by hand (SecAggClient + the raw stub), so the
// test can send what an honest SDK never would. Each fault gets its status and message, the run directory is
// untouched, and the round then commits bit-identically to fixed-point FedAvg over the survivors.
import * as grpc from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { promises as fs } from 'node:fs';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { TaskEvent__Output } from '../proto/generated/fedtune/v1/TaskEvent';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import { PROTOCOL_VERSION } from '../proto/load';
import { sealUpload } from '../proto/crypto/sealed-upload';
import { SecAggClient, decodeSum, encodeUpdate, sumVectors, type SecAggRoundConfig } from '../proto/secagg';
import { advertisementDigest } from '../proto/secagg/session';
import { signDetached } from '../proto/crypto/ed25519';
import type { Advertisement, UnmaskResponse } from '../proto/secagg/messages';
import {
  adToWire,
  consistencyCheckFromWire,
  rosterFromWire,
  routedFromWire,
  settingsFromWire,
  shareKeysToWire,
  signatureToWire,
  unmaskRequestFromWire,
  unmaskResponseToWire,
} from '../proto/secagg/wire';
import { randomBytes } from 'node:crypto';
import { join, rawClient, siteDelta, sendUpload, smallAdapter, snapshot, startCoordinator, tempDir, type Harness, type JoinedRaw } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

interface Site {
  who: JoinedRaw;
  events: TaskEvent__Output[];
  stream: grpc.ClientReadableStream<TaskEvent__Output>;
  task?: TrainTask__Output;
  cfg?: SecAggRoundConfig;
  sc?: SecAggClient;
  x?: Uint32Array;
}

const call = <Req>(
  c: RawClient,
  m: 'SecAggAdvertise' | 'SecAggShareKeys' | 'SecAggConsistency' | 'SecAggUnmask',
  req: Req,
): Promise<grpc.ServiceError | null> =>
  new Promise((resolve) => (c[m] as unknown as (r: Req, cb: (e: grpc.ServiceError | null) => void) => void).call(c, req, (e) => resolve(e)));

async function next(site: Site, kind: 'train' | 'secagg_roster' | 'secagg_shares' | 'secagg_consistency' | 'secagg_unmask'): Promise<TaskEvent__Output> {
  for (let i = 0; i < 400; i++) {
    const k = site.events.findIndex((e) => e[kind] != null);
    if (k >= 0) return site.events.splice(k, 1)[0];
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`${site.who.name}: no ${kind} event`);
}

function maskedFrames(s: Site, y: Uint32Array): UploadFrame[] {
  const t = s.task!;
  const tensors = {
    protocol_version: PROTOCOL_VERSION,
    tensors: [{ name: 'secagg.masked', dtype: 'UINT32' as const, shape: [y.length] }],
    total_bytes: y.byteLength,
    chunk_bytes: 1 << 20,
  };
  const binding = {
    protocolVersion: PROTOCOL_VERSION,
    runId: s.who.run_id,
    clientId: s.who.client_id,
    taskId: t.task_id,
    round: t.round,
    attempt: t.attempt,
    baseVersion: t.base_version,
    baseManifestSha256: t.base_manifest_sha256,
    numExamples: 0,
  };
  const sealed = sealUpload({
    binding,
    tensors,
    plaintextChunks: [Buffer.from(y.buffer)],
    coordinator: s.who.coordinator,
    identitySecretKey: s.who.identity.secretKey,
  });
  return [
    {
      header: {
        protocol_version: PROTOCOL_VERSION,
        session_token: s.who.session_token,
        task_id: t.task_id,
        round: t.round,
        base_version: t.base_version,
        num_examples: 0,
        tensors,
        sealed: sealed.envelope,
      },
    },
    ...sealed.chunks.map((chunk) => ({ chunk })),
    { trailer: { chunk_count: sealed.chunks.length, sha256: sealed.envelope.ciphertext_sha256 } },
  ];
}

describe('secure aggregation: rejections over gRPC (nothing persisted, the round still commits)', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: RawClient;
  const sites: Site[] = [];
  type SiteRequest = { session_token: string; task_id: string; round: number };

  before(async () => {
    h = await startCoordinator(
      await tempDir('secagg-rej'),
      { total: 1, minClients: 6, minUpdates: 5, clientsPerRound: 6, deadlineMs: 30_000 },
      { secagg: { enabled: true, threshold: 4, stageTimeoutMs: 20_000 } },
    );
    c = rawClient(h.address);
    for (let i = 0; i < 6; i++) {
      const who = await join(c, `raw-${i}`);
      const events: TaskEvent__Output[] = [];
      const stream = c.StreamTasks({ session_token: who.session_token });
      stream.on('data', (e: TaskEvent__Output) => events.push(e));
      stream.on('error', () => undefined);
      sites.push({ who, events, stream });
    }
    for (const s of sites) {
      s.task = (await next(s, 'train')).train!;
      s.cfg = settingsFromWire(s.task.secagg!, s.task.base_manifest_sha256);
      s.sc = new SecAggClient({ config: s.cfg, clientId: s.who.client_id, identitySecretKey: s.who.identity.secretKey });
      s.x = encodeUpdate(siteDelta(s.who.name, smallAdapter(0)), 10, s.cfg, new Uint8Array(randomBytes(32)));
    }
  });

  after(async () => {
    for (const s of sites) s.stream.cancel();
    c.close();
    await h.coordinator.stop(500);
    await fs.rm(h.runDir, { recursive: true, force: true });
  });

  const req = (s: Site): SiteRequest => ({ session_token: s.who.session_token, task_id: s.task!.task_id, round: 1 });

  async function expectRefused(p: Promise<grpc.ServiceError | null>, code: status, message: string): Promise<void> {
    const before = await snapshot(h.runDir);
    const err = await p;
    expect(err, 'should have been refused').to.not.equal(null);
    expect(status[err!.code]).to.equal(status[code]);
    expect(err!.details).to.contain(message);
    expect(await snapshot(h.runDir)).to.deep.equal(before);
  }

  it('stage 1: refuses an all-zero DH share (low-order key), a forged signature, another site’s advertisement, then accepts honest ones', async () => {
    const s = sites[0];
    const zero = new Uint8Array(32);
    const lowOrder: Advertisement = {
      clientId: s.who.client_id,
      encPublicKey: zero,
      maskPublicKey: zero,
      signature: signDetached(advertisementDigest(s.cfg!, s.who.client_id, zero, zero), s.who.identity.secretKey),
    };
    await expectRefused(call(c, 'SecAggAdvertise', { ...req(s), advertisement: adToWire(lowOrder) }), status.INVALID_ARGUMENT, 'all-zero DH share');
    const honest = s.sc!.advertise();
    const forged = {
      ...honest,
      signature: signDetached(advertisementDigest(s.cfg!, s.who.client_id, honest.encPublicKey, honest.maskPublicKey), sites[1].who.identity.secretKey),
    };
    await expectRefused(call(c, 'SecAggAdvertise', { ...req(s), advertisement: adToWire(forged) }), status.UNAUTHENTICATED, 'signature does not verify');
    await expectRefused(call(c, 'SecAggAdvertise', { ...req(sites[1]), advertisement: adToWire(honest) }), status.PERMISSION_DENIED, 'the session is');
    await expectRefused(
      call(c, 'SecAggAdvertise', { ...req(s), round: 2, advertisement: adToWire(honest) }),
      status.FAILED_PRECONDITION,
      'the message says round 2',
    );
    expect(await call(c, 'SecAggAdvertise', { ...req(s), advertisement: adToWire(honest) })).to.equal(null);
    await expectRefused(call(c, 'SecAggAdvertise', { ...req(s), advertisement: adToWire(honest) }), status.ALREADY_EXISTS, 'already advertised');
    for (const x of sites.slice(1)) expect(await call(c, 'SecAggAdvertise', { ...req(x), advertisement: adToWire(x.sc!.advertise()) })).to.equal(null);
  });

  it('stage 2: refuses shares routed to the wrong holders, then routes honest ones', async () => {
    const msgs = [];
    for (const s of sites) msgs.push(await s.sc!.shareKeys(rosterFromWire((await next(s, 'secagg_roster')).secagg_roster!)));
    const bad = { ...msgs[0], shares: [...msgs[0].shares].reverse() };
    await expectRefused(call(c, 'SecAggShareKeys', { ...req(sites[0]), share_keys: shareKeysToWire(bad) }), status.INVALID_ARGUMENT, 'exactly its holders');
    for (let i = 0; i < 6; i++) expect(await call(c, 'SecAggShareKeys', { ...req(sites[i]), share_keys: shareKeysToWire(msgs[i]) })).to.equal(null);
  });

  it('stage 3: refuses a masked vector of the wrong length; site 5 drops before its input', async () => {
    for (const s of sites) s.sc!.receiveShares(routedFromWire((await next(s, 'secagg_shares')).secagg_shares!));
    const before = await snapshot(h.runDir);
    const { err } = await sendUpload(c, maskedFrames(sites[0], new Uint32Array(3)));
    expect(err?.code).to.equal(status.INVALID_ARGUMENT);
    expect(err?.details).to.contain('one UINT32 tensor secagg.masked');
    expect(await snapshot(h.runDir)).to.deep.equal(before);
    for (const s of sites.slice(0, 5)) expect((await sendUpload(c, maskedFrames(s, s.sc!.maskedInput(s.x!)))).err).to.equal(undefined);
    sites[5].stream.cancel(); // dropped: in U2, not in U3
  });

  it('stage 4a: refuses a consistency signature over other lists and one in another site’s name, then collects honest ones', async () => {
    const sigs = [];
    for (const s of sites.slice(0, 5)) {
      const check = consistencyCheckFromWire((await next(s, 'secagg_consistency')).secagg_consistency!);
      expect(check.dropped).to.deep.equal([sites[5].who.client_id]);
      sigs.push(s.sc!.consistency(check));
    }
    await expectRefused(
      call(c, 'SecAggConsistency', { ...req(sites[0]), signature: signatureToWire({ ...sigs[0], signature: sigs[1].signature }) }),
      status.UNAUTHENTICATED,
      'does not verify for this session',
    );
    await expectRefused(call(c, 'SecAggConsistency', { ...req(sites[0]), signature: signatureToWire(sigs[1]) }), status.PERMISSION_DENIED, 'the session is');
    for (let i = 0; i < 5; i++) expect(await call(c, 'SecAggConsistency', { ...req(sites[i]), signature: signatureToWire(sigs[i]) })).to.equal(null);
  });

  it('stage 4b: refuses an invalid Shamir share and a mask-key share of a site that sent its input; the sum is exact', async () => {
    const responses: UnmaskResponse[] = [];
    for (const s of sites.slice(0, 5)) {
      const r = unmaskRequestFromWire((await next(s, 'secagg_unmask')).secagg_unmask!);
      expect(r.dropped).to.deep.equal([sites[5].who.client_id]);
      expect(r.signatures).to.have.length(5);
      responses.push(s.sc!.unmask(r));
    }
    const r0 = responses[0];
    const flipped = {
      ...r0,
      bShares: r0.bShares.map((x, i) => (i === 0 ? { of: x.of, share: Uint8Array.from(x.share, (b, j) => (j === 0 ? b ^ 1 : b)) } : x)),
    };
    await expectRefused(
      call(c, 'SecAggUnmask', { ...req(sites[0]), response: unmaskResponseToWire(flipped) }),
      status.INVALID_ARGUMENT,
      'invalid Shamir share from holder',
    );
    const both = { ...r0, skShares: [...r0.skShares, { of: r0.bShares[0].of, share: r0.bShares[0].share }] };
    await expectRefused(
      call(c, 'SecAggUnmask', { ...req(sites[0]), response: unmaskResponseToWire(both) }),
      status.INVALID_ARGUMENT,
      'both sent input and is reported dropped',
    );
    // t = 4 answers rebuild every secret; the coordinator commits at once (a fifth would find the round closed).
    for (let i = 0; i < 4; i++) expect(await call(c, 'SecAggUnmask', { ...req(sites[i]), response: unmaskResponseToWire(responses[i]) })).to.equal(null);
    const latest = async (): Promise<string> => (await fs.readFile(`${h.runDir}/latest`, 'utf8')).trim();
    for (let i = 0; i < 200 && (await latest()) !== 'v000001'; i++) await new Promise((r) => setTimeout(r, 25));
    const ck = await h.coordinator.store.read(1);
    const want = decodeSum(sumVectors(sites.slice(0, 5).map((s) => s.x!)), sites[0].cfg!, smallAdapter(0)).adapter;
    for (let k = 0; k < want.length; k++) expect(Buffer.from(ck.adapter[k].data.buffer).equals(Buffer.from(want[k].data.buffer))).to.equal(true);
    expect(ck.manifest.secureAggregation!.dropped).to.deep.equal([sites[5].who.client_id]);
  });
});
