// The two ends of a sealed upload beyond the opener (test/sealed-upload.test.ts): the coordinator's spool record
// (encodeSpoolHead / spoolChunkPrefix written, reopenSpoolRecord read back exactly as strictly as a live upload),
// and the client's sealed frames (sealDelta, sealMasked), with real crypto. sendSealed against the real
// coordinator: test/sealed-sender-grpc.test.ts.
import { createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { SealedUploadOpener, uploadBinding, uploadSignedFields, type CoordinatorBoxSecret } from '../proto/crypto/sealed-upload';
import { DOMAINS, sign } from '../proto/crypto/signing';
import { PROTOCOL_VERSION } from '../proto/load';
import { SPOOL_RECORD_MAGIC, encodeSpoolHead, reopenSpoolRecord, spoolChunkPrefix, type SpoolHeadFields } from '../coordinator/sealed-update';
import { sealDelta, sealMasked, type SealContext, type SealedFrames } from '../client-sdk/sealed-sender';
import type { SealedEnvelope, SealedEnvelope__Output } from '../proto/generated/fedtune/v1/SealedEnvelope';
import type { TensorHeader, TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import type { TrainTask__Output } from '../proto/generated/fedtune/v1/TrainTask';
import type { NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const box = nacl.box.keyPair.fromSecretKey(createHash('sha256').update('spool test coordinator').digest());
const COORDINATOR: CoordinatorBoxSecret = { keyId: 'ck-1', boxPublicKey: box.publicKey, boxSecretKey: box.secretKey };
const site = nacl.sign.keyPair.fromSeed(createHash('sha256').update('spool test site').digest());
const TASK: TrainTask__Output = {
  task_id: 'task-7',
  round: 3,
  attempt: 2,
  base_version: 2,
  base_manifest_sha256: 'cd'.repeat(32),
  deadline_unix_ms: 0,
  config: null,
  seed: 99,
  secagg: null,
};
const CTX: SealContext = { token: 'tok', runId: 'run-1', clientId: 'client-9', coordinator: COORDINATOR, identitySecretKey: site.secretKey, chunkBytes: 64 };

const delta = (): NamedTensor[] => [
  { name: 'a', dtype: 'float32', shape: [4, 5], data: Float32Array.from({ length: 20 }, (_, i) => i / 8 - 1) },
  { name: 'b', dtype: 'float32', shape: [20], data: Float32Array.from({ length: 20 }, (_, i) => 3 - i / 4) },
];

function headerOut(h: TensorHeader | null | undefined): TensorHeader__Output {
  return {
    protocol_version: h?.protocol_version ?? 0,
    tensors: (h?.tensors ?? []).map((t) => ({
      name: t.name ?? '',
      dtype: t.dtype as TensorHeader__Output['tensors'][number]['dtype'],
      shape: (t.shape ?? []).map(Number),
    })),
    total_bytes: Number(h?.total_bytes ?? 0),
    chunk_bytes: h?.chunk_bytes ?? 0,
    // Download-only fields (proto/pieces.ts); an upload's header never sets them.
    piece_bytes: h?.piece_bytes ?? 0,
    piece_sha256: (h?.piece_sha256 ?? []).map((b) => Buffer.from(b as Uint8Array)),
    max_range_calls: h?.max_range_calls ?? 0,
  };
}

const buf = (b: Uint8Array | string | undefined): Buffer => Buffer.from((b ?? new Uint8Array(0)) as Uint8Array);

function envelopeOut(e: SealedEnvelope | null | undefined): SealedEnvelope__Output {
  return {
    run_id: e?.run_id ?? '',
    client_id: e?.client_id ?? '',
    attempt: e?.attempt ?? 0,
    base_manifest_sha256: e?.base_manifest_sha256 ?? '',
    coordinator_key_id: e?.coordinator_key_id ?? '',
    ephemeral_public_key: buf(e?.ephemeral_public_key),
    nonce_prefix: buf(e?.nonce_prefix),
    chunk_count: e?.chunk_count ?? 0,
    ciphertext_sha256: buf(e?.ciphertext_sha256),
    signature: buf(e?.signature),
  };
}

/** Opens frames as the coordinator would: the plaintext bytes, after finish() and the trailer check. */
function openFrames(f: SealedFrames, numExamples: number): Buffer {
  const h = f.header.header!;
  const o = new SealedUploadOpener(
    envelopeOut(h.sealed),
    uploadBinding('run-1', 'client-9', TASK, numExamples),
    headerOut(h.tensors),
    COORDINATOR,
    site.publicKey,
    's',
  );
  const plain = Buffer.concat(f.sealed.chunks.map((c) => o.open(c)));
  o.checkTrailer(f.sealed.envelope.ciphertext_sha256 as Uint8Array);
  return plain;
}

/** The head and the chunks of a spool record, as the coordinator writes it while an upload streams in. */
function spoolRecord(f: SealedFrames, seed: number): { head: SpoolHeadFields; record: Buffer } {
  const h = f.header.header!;
  const head: SpoolHeadFields = {
    binding: uploadBinding('run-1', 'client-9', TASK, 12),
    header: headerOut(h.tensors),
    envelope: envelopeOut(h.sealed),
    clientName: 'site-9',
    clientPublicKey: site.publicKey,
  };
  const parts = [encodeSpoolHead(head, { seed })];
  for (const c of f.sealed.chunks) parts.push(spoolChunkPrefix(c), c);
  return { head, record: Buffer.concat(parts) };
}

describe('sealed uploads: spool records and the sealed sender (unit, real crypto)', () => {
  it('sealDelta: the header frame carries the task, the example count, the layout and the envelope; the chunks open to the delta', () => {
    const f = sealDelta(CTX, TASK, delta(), 12);
    const h = f.header.header!;
    expect({ ...h, tensors: undefined, sealed: undefined }).to.deep.equal({
      protocol_version: PROTOCOL_VERSION,
      session_token: 'tok',
      task_id: 'task-7',
      round: 3,
      base_version: 2,
      num_examples: 12,
      tensors: undefined,
      sealed: undefined,
    });
    expect(h.sealed).to.equal(f.sealed.envelope);
    expect(headerOut(h.tensors)).to.deep.equal({
      protocol_version: PROTOCOL_VERSION,
      tensors: [
        { name: 'a', dtype: 'FLOAT32', shape: [4, 5] },
        { name: 'b', dtype: 'FLOAT32', shape: [20] },
      ],
      total_bytes: 160,
      chunk_bytes: 64,
      piece_bytes: 0,
      piece_sha256: [],
      max_range_calls: 0,
    });
    expect(f.sealed.chunks.length).to.equal(3);
    const want = Buffer.concat(delta().map((t) => Buffer.from(t.data.buffer)));
    expect(openFrames(f, 12).equals(want)).to.equal(true);
  });

  it('sealMasked: one UINT32 tensor secagg.masked, weight 0 in the header, cut into chunkBytes pieces', () => {
    const y = Uint32Array.from({ length: 37 }, (_, i) => (i * 2654435761) >>> 0);
    // A view with an offset: only its own words are sent.
    const view = new Uint32Array(Uint32Array.from([7, ...y, 9]).buffer, 4, 37);
    const f = sealMasked(CTX, TASK, view);
    const h = f.header.header!;
    expect(h.num_examples).to.equal(0);
    expect(headerOut(h.tensors)).to.deep.equal({
      protocol_version: PROTOCOL_VERSION,
      tensors: [{ name: 'secagg.masked', dtype: 'UINT32', shape: [37] }],
      total_bytes: 148,
      chunk_bytes: 64,
      piece_bytes: 0,
      piece_sha256: [],
      max_range_calls: 0,
    });
    expect(f.sealed.chunks.map((c) => c.length - 16)).to.deep.equal([64, 64, 20]);
    expect(openFrames(f, 0).equals(Buffer.from(y.buffer))).to.equal(true);
    // A whole number of chunks: no empty chunk after the last.
    expect(sealMasked(CTX, TASK, new Uint32Array(32)).sealed.chunks.map((c) => c.length - 16)).to.deep.equal([64, 64]);
  });

  it('refuses to seal a layout the coordinator would refuse (checked before sending)', () => {
    const long = [{ name: 'x'.repeat(10_000), dtype: 'float32' as const, shape: [1], data: new Float32Array(1) }];
    expect(() => sealDelta(CTX, TASK, long, 1)).to.throw(/name/);
  });

  it('a spool record reopens to the same binding, header, envelope, key, seed and delta', () => {
    const f = sealDelta(CTX, TASK, delta(), 12);
    const { head, record } = spoolRecord(f, 4242);
    expect(record.subarray(0, SPOOL_RECORD_MAGIC.length).toString()).to.equal('fedtune.spool/2\n');
    const metaLen = record.readUInt32BE(SPOOL_RECORD_MAGIC.length);
    expect((JSON.parse(record.subarray(SPOOL_RECORD_MAGIC.length + 4, SPOOL_RECORD_MAGIC.length + 4 + metaLen).toString()) as { seed: number }).seed).to.equal(
      4242,
    );
    expect(spoolChunkPrefix(Buffer.alloc(0x0102)).toString('hex')).to.equal('00000102');
    const u = reopenSpoolRecord(record, COORDINATOR, 1 << 20);
    expect(u.binding).to.deep.equal(head.binding);
    expect(u.header).to.deep.equal(head.header);
    expect(u.envelope).to.deep.equal(head.envelope);
    expect(u.sha256).to.equal(buf(f.sealed.envelope.ciphertext_sha256).toString('hex'));
    expect(u.clientName).to.equal('site-9');
    expect(Buffer.from(u.clientPublicKey).equals(Buffer.from(site.publicKey))).to.equal(true);
    expect(u.seed).to.equal(4242);
    expect(u.delta!.map((t) => ({ name: t.name, shape: t.shape, data: Array.from(t.data) }))).to.deep.equal(
      delta().map((t) => ({ name: t.name, shape: t.shape, data: Array.from(t.data) })),
    );
  });

  it('refuses a damaged spool record, naming what is wrong', () => {
    const { record } = spoolRecord(sealDelta(CTX, TASK, delta(), 12), 1);
    const reopen =
      (b: Buffer): (() => unknown) =>
      () =>
        reopenSpoolRecord(b, COORDINATOR, 1 << 20);
    const m = SPOOL_RECORD_MAGIC.length;
    expect(reopen(record.subarray(0, m + 3))).to.throw('not a fedtune.spool/2 record');
    expect(reopen(Buffer.concat([Buffer.from('fedtune.spool/1\n'), record.subarray(m)]))).to.throw('not a fedtune.spool/2 record');
    const headEnd = m + 4 + record.readUInt32BE(m);
    expect(reopen(record.subarray(0, headEnd + 2))).to.throw('spool record ends before chunk 0 of 3');
    expect(reopen(record.subarray(0, headEnd + 4 + 80 + 4 + 10))).to.throw('spool record ends inside chunk 1 of 3');
    expect(reopen(record.subarray(0, record.length - 48 - 4))).to.throw('spool record ends before chunk 2 of 3');
    expect(reopen(Buffer.concat([record, Buffer.alloc(5)]))).to.throw('spool record holds 5 bytes beyond its chunks');
    const tampered = Buffer.from(record);
    tampered[record.length - 1] ^= 1;
    expect(reopen(tampered)).to.throw('sealed chunk 2 fails authentication');
    const lastPrefixEnd = record.length - 48;
    expect(reopen(record.subarray(0, lastPrefixEnd))).to.throw('spool record ends inside chunk 2 of 3');
    expect(reopen(record.subarray(0, record.length - 3))).to.throw('spool record ends inside chunk 2 of 3');
    // Exactly the record's own length: one byte short of a whole record is not enough for the head.
    expect(reopen(record.subarray(0, m + 4 + record.readUInt32BE(m) - 1))).to.throw(SyntaxError);
  });
});

describe('spool records: what a reload checks beyond the chunks', () => {
  it('refuses a record whose site signed another ciphertext hash, though every chunk authenticates', () => {
    const f = sealDelta(CTX, TASK, delta(), 12);
    const env = { ...f.sealed.envelope, ciphertext_sha256: Buffer.alloc(32, 0x5a) };
    env.signature = sign(DOMAINS.upload, uploadSignedFields(uploadBinding('run-1', 'client-9', TASK, 12), f.header.header!.tensors!, env), site.secretKey);
    const { record } = spoolRecord({ header: { header: { ...f.header.header, sealed: env } }, sealed: { ...f.sealed, envelope: env } }, 1);
    expect(() => reopenSpoolRecord(record, COORDINATOR, 1 << 20)).to.throw('ciphertext SHA-256 does not match the signed header');
  });

  it('keeps non-finite values as sealed: finiteness is the strategy’s check on reload as on a live upload (upload.ts)', () => {
    const d = delta();
    d[1].data[3] = Number.NaN;
    d[0].data[0] = Number.POSITIVE_INFINITY;
    const u = reopenSpoolRecord(spoolRecord(sealDelta(CTX, TASK, d, 12), 1).record, COORDINATOR, 1 << 20);
    expect(Number.isNaN(u.delta![1].data[3])).to.equal(true);
    expect(u.delta![0].data[0]).to.equal(Number.POSITIVE_INFINITY);
  });
});
