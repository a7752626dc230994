// Sealed uploads at the door, over real gRPC: an ephemeral key of low order (all-zero, whose chunk key is a
// public constant anyone could compute) or non-canonical (bit 255 set: the same point under another name) is
// refused although the upload is otherwise perfect and signed by its site; a trailer whose SHA-256 is not the
// ciphertext's, or a signed header naming another ciphertext, is refused with DATA_LOSS. Nothing is persisted and the round still commits.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { status } from '@grpc/grpc-js';
import nacl from 'tweetnacl';
import { chunkAad, nonce, uploadSignedFields } from '../proto/crypto/sealed-upload';
import { DOMAINS, sign } from '../proto/crypto/signing';
import { checkPeerX25519, isCanonicalX25519 } from '../proto/crypto/x25519';
import { PROTOCOL_VERSION } from '../proto/load';
import { dataChunks, tensorHeader } from '../proto/tensor-stream';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import type { SealedEnvelope } from '../proto/generated/fedtune/v1/SealedEnvelope';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { UploadFrame } from '../proto/generated/fedtune/v1/UploadFrame';
import { expectRefused, reportMetrics, smallAdapter, startCoordinator, tempDir, upload, uploadFrames, type Harness, type JoinedRaw } from './harness';
import { twoSitesInRound, type TwoSitesInRound } from './sites-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** An upload sealed under `key` and announcing `ephemeral` as its key, correctly signed by its site. */
function sealedWith(who: JoinedRaw, task: TrainTask__Output, ephemeral: Uint8Array, key: Uint8Array, signedHash?: Uint8Array): UploadFrame[] {
  const delta = smallAdapter(0.01);
  const tensors = tensorHeader(delta);
  const binding = {
    protocolVersion: PROTOCOL_VERSION,
    runId: who.run_id,
    clientId: who.client_id,
    taskId: task.task_id,
    round: task.round,
    attempt: task.attempt,
    baseVersion: task.base_version,
    baseManifestSha256: task.base_manifest_sha256,
    numExamples: 10,
  };
  const prefix = randomBytes(7);
  const aad = chunkAad(binding.runId, binding.clientId, binding.taskId, ephemeral);
  const plain = [...dataChunks(delta)];
  const hash = createHash('sha256');
  const chunks = plain.map((p, i) => {
    const c = createCipheriv('chacha20-poly1305', key, nonce(prefix, i, i === plain.length - 1), { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: p.length });
    const out = Buffer.concat([c.update(p), c.final(), c.getAuthTag()]);
    hash.update(out);
    return out;
  });
  const received = hash.digest();
  const envelope: SealedEnvelope = {
    run_id: binding.runId,
    client_id: binding.clientId,
    attempt: binding.attempt,
    base_manifest_sha256: binding.baseManifestSha256,
    coordinator_key_id: who.coordinator.keyId,
    ephemeral_public_key: ephemeral,
    nonce_prefix: prefix,
    chunk_count: chunks.length,
    ciphertext_sha256: signedHash ?? received,
  };
  envelope.signature = sign(DOMAINS.upload, uploadSignedFields(binding, tensors, envelope), who.identity.secretKey);
  return [
    {
      header: {
        protocol_version: PROTOCOL_VERSION,
        session_token: who.session_token,
        task_id: task.task_id,
        round: task.round,
        base_version: task.base_version,
        num_examples: 10,
        tensors,
        sealed: envelope,
      },
    },
    ...chunks.map((chunk) => ({ chunk })),
    { trailer: { chunk_count: chunks.length, sha256: received } },
  ];
}

describe('the door: sealed upload keys and the trailer hash (over gRPC)', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: RawClient;
  let a: JoinedRaw;
  let b: JoinedRaw;
  let taskA: TrainTask__Output;
  let taskB: TrainTask__Output;
  let round: TwoSitesInRound;

  before(async () => {
    h = await startCoordinator(await tempDir('door-sealed'));
    round = await twoSitesInRound(h);
    ({ c, a, b, taskA, taskB } = round);
  });

  after(() => round.close());

  it('refuses an all-zero ephemeral key whose chunks are sealed under the resulting public constant key', async () => {
    const zero = new Uint8Array(32);
    // What the coordinator would derive from a zero key, whatever its secret: computable by anyone on the path.
    const publicConstant = nacl.box.before(zero, nacl.box.keyPair().secretKey);
    expect(Buffer.from(nacl.box.before(zero, nacl.box.keyPair().secretKey)).equals(Buffer.from(publicConstant))).to.equal(true);
    await expectRefused(
      h.runDir,
      () => upload(c, sealedWith(a, taskA, zero, publicConstant)),
      status.INVALID_ARGUMENT,
      "the sealed envelope's ephemeral key is a low-order point",
    );
  });

  it('refuses every other low-order point and a non-canonical encoding of an honest key', async () => {
    const one = new Uint8Array(32);
    one[0] = 1;
    await expectRefused(
      h.runDir,
      () => upload(c, sealedWith(a, taskA, one, nacl.box.before(one, nacl.box.keyPair().secretKey))),
      status.INVALID_ARGUMENT,
      'low-order point',
    );
    // Bit 255 is ignored by X25519: the same agreement under a second name. Sealed correctly, still refused.
    const eph = nacl.box.keyPair();
    const key = nacl.box.before(a.coordinator.boxPublicKey, eph.secretKey);
    const alias = Uint8Array.from(eph.publicKey);
    alias[31] |= 0x80;
    await expectRefused(h.runDir, () => upload(c, sealedWith(a, taskA, alias, key)), status.INVALID_ARGUMENT, 'is not a canonical X25519 key');
  });

  it('refuses a trailer whose SHA-256 is not the ciphertext received, with DATA_LOSS', async () => {
    const f = uploadFrames({ who: a, task: taskA }, smallAdapter(0.01));
    const last = f.length - 1;
    const wrong = Buffer.from(f[last].trailer!.sha256 as Uint8Array);
    wrong[0] ^= 1;
    await expectRefused(
      h.runDir,
      () => upload(c, [...f.slice(0, last), { trailer: { ...f[last].trailer!, sha256: wrong } }]),
      status.DATA_LOSS,
      'trailer SHA-256',
    );
    await expectRefused(
      h.runDir,
      () => upload(c, [...f.slice(0, last), { trailer: { chunk_count: f[last].trailer!.chunk_count } }]),
      status.DATA_LOSS,
      'trailer SHA-256 (0 bytes) does not match',
    );
  });

  it('refuses chunks that all authenticate when the site signed another ciphertext hash, with DATA_LOSS', async () => {
    const eph = nacl.box.keyPair();
    const key = nacl.box.before(a.coordinator.boxPublicKey, eph.secretKey);
    // The trailer names the ciphertext that arrives; the signed header names other bytes.
    await expectRefused(
      h.runDir,
      () => upload(c, sealedWith(a, taskA, eph.publicKey, key, Buffer.alloc(32, 0x5a))),
      status.DATA_LOSS,
      'ciphertext SHA-256 does not match the signed header',
    );
  });

  it('knows the canonical encodings (unit): p − 1 is canonical, p and 2^255 − 1 are not; low-order points are refused', () => {
    const pMinus1 = Buffer.from('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex');
    const p = Buffer.from('edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', 'hex');
    expect(isCanonicalX25519(pMinus1)).to.equal(true);
    expect(isCanonicalX25519(p)).to.equal(false);
    expect(isCanonicalX25519(Buffer.alloc(32, 0xff))).to.equal(false);
    expect(isCanonicalX25519(nacl.box.keyPair().publicKey.map((x, i) => (i === 31 ? x & 0x7f : x)))).to.equal(true);
    expect(() => checkPeerX25519(pMinus1, 'k')).to.throw('low-order'); // p − 1 has order 2
    expect(() => checkPeerX25519(new Uint8Array(31), 'k')).to.throw('must be 32 bytes');
  });

  it('still accepts honest uploads and commits the round', async () => {
    await upload(c, uploadFrames({ who: a, task: taskA }, smallAdapter(0.25)));
    await upload(c, uploadFrames({ who: b, task: taskB }, smallAdapter(0.75)));
    await reportMetrics(c, a.session_token, taskA.task_id, taskA.round);
    await reportMetrics(c, b.session_token, taskB.task_id, taskB.round).catch(() => undefined);
    const latest = async (): Promise<string> => (await fs.readFile(`${h.runDir}/latest`, 'utf8')).trim();
    for (let i = 0; i < 100 && (await latest()) !== 'v000001'; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await latest()).to.equal('v000001');
  });
});
