// Sealed uploads, unit by unit, with real X25519, ChaCha20-Poly1305 and Ed25519: what sealUpload writes (byte for
// byte where the format is fixed: nonces, chunk additional data, the signed field list, the envelope), what the
// coordinator's SealedUploadOpener refuses and with which status and message, the spool record written and
// reopened, and the client's sealed sender (sealDelta, sealMasked). Over gRPC: test/trust-upload.test.ts,
// test/door-sealed.test.ts and test/rejections.test.ts.
import { createCipheriv, createHash } from 'node:crypto';
import nacl from 'tweetnacl';
import { ProtocolError, status } from '../proto/errors';
import {
  SealedUploadOpener,
  chunkAad,
  expectedChunkCount,
  nonce,
  sealUpload,
  uploadBinding,
  uploadSignedFields,
  type CoordinatorBoxSecret,
  type SealedUpload,
  type UploadBinding,
} from '../proto/crypto/sealed-upload';
import { DOMAINS, sign } from '../proto/crypto/signing';
import { EXPLAIN_WINDOW } from '../proto/crypto/chunk-opener';
import { PROTOCOL_VERSION } from '../proto/load';
import { dataChunks, tensorHeader } from '../proto/tensor-stream';
import type { SealedEnvelope, SealedEnvelope__Output } from '../proto/generated/fedtune/v1/SealedEnvelope';
import type { TensorHeader, TensorHeader__Output } from '../proto/generated/fedtune/v1/TensorHeader';
import type { NamedTensor } from '../proto/tensors';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const coordinatorBox = nacl.box.keyPair.fromSecretKey(createHash('sha256').update('sealed-upload test coordinator').digest());
const COORDINATOR: CoordinatorBoxSecret = { keyId: 'ck-1', boxPublicKey: coordinatorBox.publicKey, boxSecretKey: coordinatorBox.secretKey };
const site = nacl.sign.keyPair.fromSeed(createHash('sha256').update('sealed-upload test site').digest());
const TASK = { task_id: 'task-7', round: 3, attempt: 2, base_version: 2, base_manifest_sha256: 'ab'.repeat(32) };
const BINDING: UploadBinding = uploadBinding('run-1', 'client-9', TASK, 12);

/** 40 float32 values in two tensors (160 bytes): 64-byte chunks make three, the last partial. */
function delta(): NamedTensor[] {
  return [
    { name: 'a', dtype: 'float32', shape: [4, 5], data: Float32Array.from({ length: 20 }, (_, i) => i / 8 - 1) },
    { name: 'b', dtype: 'float32', shape: [20], data: Float32Array.from({ length: 20 }, (_, i) => 3 - i / 4) },
  ];
}

/** The header as the coordinator decodes it from the wire (numbers, not Longs). */
function received(h: TensorHeader): TensorHeader__Output {
  return {
    protocol_version: h.protocol_version ?? 0,
    tensors: (h.tensors ?? []).map((t) => ({
      name: t.name ?? '',
      dtype: t.dtype as TensorHeader__Output['tensors'][number]['dtype'],
      shape: (t.shape ?? []).map(Number),
    })),
    total_bytes: Number(h.total_bytes ?? 0),
    chunk_bytes: h.chunk_bytes ?? 0,
    piece_bytes: 0,
    piece_sha256: [],
    max_range_calls: 0,
  };
}

const bytes = (b: Uint8Array | string | undefined): Buffer => Buffer.from((b ?? new Uint8Array(0)) as Uint8Array);

function envelopeOut(e: SealedEnvelope): SealedEnvelope__Output {
  return {
    run_id: e.run_id ?? '',
    client_id: e.client_id ?? '',
    attempt: e.attempt ?? 0,
    base_manifest_sha256: e.base_manifest_sha256 ?? '',
    coordinator_key_id: e.coordinator_key_id ?? '',
    ephemeral_public_key: bytes(e.ephemeral_public_key),
    nonce_prefix: bytes(e.nonce_prefix),
    chunk_count: e.chunk_count ?? 0,
    ciphertext_sha256: bytes(e.ciphertext_sha256),
    signature: bytes(e.signature),
  };
}

function seal(chunkBytes = 64): { sealed: SealedUpload; header: TensorHeader; plain: Buffer[] } {
  const header = tensorHeader(delta(), chunkBytes);
  const plain = [...dataChunks(delta(), chunkBytes)].map((c) => Buffer.from(c));
  const sealed = sealUpload({ binding: BINDING, tensors: header, plaintextChunks: plain, coordinator: COORDINATOR, identitySecretKey: site.secretKey });
  return { sealed, header, plain };
}

function opener(envelope: SealedEnvelope__Output, header: TensorHeader, binding = BINDING): SealedUploadOpener {
  return new SealedUploadOpener(envelope, binding, received(header), COORDINATOR, site.publicKey, 'site-9');
}

/** The ProtocolError `act` throws, with its status and whole message. */
function refusal(act: () => unknown): { code: string; message: string } {
  try {
    act();
  } catch (e) {
    expect(e).to.be.instanceOf(ProtocolError);
    const code = (e as ProtocolError).code;
    return { code: Object.keys(status).find((k) => status[k as keyof typeof status] === code) ?? String(code), message: (e as Error).message };
  }
  throw new Error('expected a ProtocolError; nothing was thrown');
}

describe('sealed uploads (unit, real crypto)', () => {
  it('nonce: the 7-byte prefix, the chunk index as big-endian uint32, then the final flag', () => {
    const prefix = Buffer.from('01020304050607', 'hex');
    expect(nonce(prefix, 0x0a0b0c0d, true).toString('hex')).to.equal('010203040506070a0b0c0d01');
    expect(nonce(prefix, 1, false).toString('hex')).to.equal('010203040506070000000100');
  });

  it('chunkAad: SHA-256 over the chunk domain, a NUL, run, client and task each NUL-terminated, then the ephemeral key', () => {
    const eph = Buffer.alloc(32, 7);
    const want = createHash('sha256')
      .update(Buffer.concat([Buffer.from('fedtune/upload-chunk/v1\0run\0client\0task\0'), eph]))
      .digest();
    expect(chunkAad('run', 'client', 'task', eph).equals(want)).to.equal(true);
  });

  it('expectedChunkCount: none for no bytes, otherwise the bytes over the chunk size rounded up', () => {
    expect([expectedChunkCount(0, 64), expectedChunkCount(1, 64), expectedChunkCount(64, 64), expectedChunkCount(65, 64)]).to.deep.equal([0, 1, 1, 2]);
    // An empty header may leave chunk_bytes unset (0): still no chunks, not NaN.
    expect(expectedChunkCount(0, 0)).to.equal(0);
  });

  it('seals chunk i under nonce(prefix, i, last) with the upload AAD; the envelope names the ciphertext and is signed', () => {
    const { sealed, header, plain } = seal();
    const e = sealed.envelope;
    expect(plain.map((p) => p.length)).to.deep.equal([64, 64, 32]);
    expect(sealed.chunks.map((c) => c.length)).to.deep.equal([80, 80, 48]);
    expect({
      run: e.run_id,
      client: e.client_id,
      attempt: e.attempt,
      base: e.base_manifest_sha256,
      key: e.coordinator_key_id,
      count: e.chunk_count,
    }).to.deep.equal({
      run: 'run-1',
      client: 'client-9',
      attempt: 2,
      base: 'ab'.repeat(32),
      key: 'ck-1',
      count: 3,
    });
    expect(bytes(e.ciphertext_sha256).equals(createHash('sha256').update(Buffer.concat(sealed.chunks)).digest())).to.equal(true);
    // Re-seal each plaintext independently with the key the coordinator derives: the same bytes.
    const eph = bytes(e.ephemeral_public_key);
    const key = nacl.box.before(eph, COORDINATOR.boxSecretKey);
    plain.forEach((p, i) => {
      const c = createCipheriv('chacha20-poly1305', key, nonce(bytes(e.nonce_prefix), i, i === 2), { authTagLength: 16 });
      c.setAAD(chunkAad('run-1', 'client-9', 'task-7', eph), { plaintextLength: p.length });
      expect(Buffer.concat([c.update(p), c.final(), c.getAuthTag()]).equals(sealed.chunks[i]), `chunk ${i}`).to.equal(true);
    });
    expect(bytes(e.signature).equals(Buffer.from(sign(DOMAINS.upload, uploadSignedFields(BINDING, header, e), site.secretKey)))).to.equal(true);
  });

  it('signs exactly: binding, layout, key id, ephemeral key, nonce prefix, chunk count, ciphertext hash', () => {
    const { sealed, header } = seal();
    const e = sealed.envelope;
    expect(uploadSignedFields(BINDING, header, e)).to.deep.equal([
      PROTOCOL_VERSION,
      'run-1',
      'client-9',
      'task-7',
      3,
      2,
      2,
      'ab'.repeat(32),
      12,
      160,
      64,
      2,
      'a',
      'FLOAT32',
      '4,5',
      'b',
      'FLOAT32',
      '20',
      'ck-1',
      e.ephemeral_public_key,
      e.nonce_prefix,
      3,
      e.ciphertext_sha256,
    ]);
    // Base64 (as JSON carries bytes) reads as the same bytes; absent fields sign as empty / zero.
    const b64 = { ...e, ephemeral_public_key: bytes(e.ephemeral_public_key).toString('base64') };
    expect(uploadSignedFields(BINDING, header, b64)[19]).to.deep.equal(bytes(e.ephemeral_public_key));
    expect(uploadSignedFields(BINDING, {}, {}).slice(9)).to.deep.equal([0, 0, 0, '', new Uint8Array(0), new Uint8Array(0), 0, new Uint8Array(0)]);
    expect(uploadSignedFields(BINDING, { tensors: [{}] }, {}).slice(9, 15)).to.deep.equal([0, 0, 1, '', '', '']);
  });

  it('opens each chunk at its position, then finish and the trailer check pass', () => {
    const { sealed, header, plain } = seal();
    const o = opener(envelopeOut(sealed.envelope), header);
    expect(sealed.chunks.map((c) => o.open(c).equals(plain[sealed.chunks.indexOf(c)]))).to.deep.equal([true, true, true]);
    expect(o.chunksOpened).to.equal(3);
    o.checkTrailer(sealed.envelope.ciphertext_sha256 as Uint8Array);
  });

  it('refuses a ciphertext that is not the one the site signed, though every chunk authenticates (DATA_LOSS)', () => {
    const { sealed, header } = seal();
    // A site that signs a header naming other ciphertext: the chunks open, the signature verifies.
    const e: SealedEnvelope = { ...sealed.envelope, ciphertext_sha256: Buffer.alloc(32, 0x5a) };
    e.signature = sign(DOMAINS.upload, uploadSignedFields(BINDING, header, e), site.secretKey);
    const o = opener(envelopeOut(e), header);
    for (const c of sealed.chunks) o.open(c);
    expect(refusal(() => o.finish())).to.deep.equal({ code: 'DATA_LOSS', message: 'ciphertext SHA-256 does not match the signed header' });
    // The trailer check runs finish() first: the same refusal, whatever the trailer says.
    expect(refusal(() => o.checkTrailer(sealed.envelope.ciphertext_sha256 as Uint8Array)).message).to.equal(
      'ciphertext SHA-256 does not match the signed header',
    );
  });

  it('refuses a trailer naming other bytes, with both hashes abbreviated, or of the wrong length', () => {
    const { sealed, header } = seal();
    const digest = bytes(sealed.envelope.ciphertext_sha256).toString('hex');
    const open = (): SealedUploadOpener => {
      const o = opener(envelopeOut(sealed.envelope), header);
      for (const c of sealed.chunks) o.open(c);
      return o;
    };
    expect(refusal(() => open().checkTrailer(Buffer.alloc(32, 0xee)))).to.deep.equal({
      code: 'DATA_LOSS',
      message: `trailer SHA-256 ${'ee'.repeat(8)}… does not match the ciphertext received (${digest.slice(0, 16)}…)`,
    });
    expect(refusal(() => open().checkTrailer(bytes(sealed.envelope.ciphertext_sha256).subarray(0, 31))).message).to.equal(
      `trailer SHA-256 (31 bytes) does not match the ciphertext received (${digest.slice(0, 16)}…)`,
    );
    expect(refusal(() => open().checkTrailer(undefined)).message).to.match(/^trailer SHA-256 \(0 bytes\)/);
  });

  it('refuses an envelope for another coordinator key, of the wrong sizes, with a bad signature or a wrong chunk count', () => {
    const { sealed, header } = seal();
    const e = envelopeOut(sealed.envelope);
    expect(refusal(() => opener({ ...e, coordinator_key_id: 'ck-2' }, header))).to.deep.equal({
      code: 'FAILED_PRECONDITION',
      message: "upload is sealed to coordinator key ck-2; this coordinator's key is ck-1",
    });
    expect(refusal(() => opener({ ...e, coordinator_key_id: '' }, header)).message).to.equal(
      "upload is sealed to coordinator key (none); this coordinator's key is ck-1",
    );
    const sizes = 'sealed envelope: ephemeral key must be 32 bytes, nonce prefix 7, ciphertext hash 32';
    for (const bad of [
      { ephemeral_public_key: e.ephemeral_public_key.subarray(0, 31) },
      { nonce_prefix: Buffer.alloc(8) },
      { ciphertext_sha256: Buffer.alloc(31) },
    ]) {
      expect(refusal(() => opener({ ...e, ...bad }, header))).to.deep.equal({ code: 'INVALID_ARGUMENT', message: sizes });
    }
    expect(refusal(() => opener({ ...e, ephemeral_public_key: Buffer.alloc(32) }, header))).to.deep.equal({
      code: 'INVALID_ARGUMENT',
      message:
        "the sealed envelope's ephemeral key is a low-order point: every secret agreed with it is all-zero, so anyone could open what is sealed under it",
    });
    expect(refusal(() => opener(e, header, { ...BINDING, numExamples: 13 }))).to.deep.equal({
      code: 'UNAUTHENTICATED',
      message: 'upload signature does not verify with the enrolled key of site-9: the header was altered or signed by another key',
    });
    // A site that signs a wrong chunk count: the signature verifies, the count does not match the layout.
    const four: SealedEnvelope = { ...sealed.envelope, chunk_count: 4 };
    four.signature = sign(DOMAINS.upload, uploadSignedFields(BINDING, header, four), site.secretKey);
    expect(refusal(() => opener(envelopeOut(four), header))).to.deep.equal({
      code: 'INVALID_ARGUMENT',
      message: 'sealed envelope declares 4 chunks; 160 bytes in chunks of 64 make 3',
    });
  });

  it('names what is wrong with a chunk: extra, moved, wrongly final, tampered, too short; and a truncated stream', () => {
    const { sealed, header } = seal();
    const e = envelopeOut(sealed.envelope);
    const [c0, c1, c2] = sealed.chunks;
    const at = (before: Buffer[], chunk: Buffer): { code: string; message: string } => {
      const o = opener(e, header);
      for (const c of before) o.open(c);
      return refusal(() => o.open(chunk));
    };
    expect(at([c0, c1, c2], c2)).to.deep.equal({ code: 'OUT_OF_RANGE', message: 'sealed stream carries more than the 3 chunks its header declares' });
    expect(at([], c1)).to.deep.equal({ code: 'DATA_LOSS', message: 'sealed chunk 1 arrived at position 0: chunks were reordered or dropped' });
    expect(at([c0], c2)).to.deep.equal({ code: 'DATA_LOSS', message: 'sealed chunk 2 arrived at position 1: chunks were reordered or dropped' });
    expect(at([c0, c1], c0).message).to.equal('sealed chunk 0 arrived at position 2: chunks were reordered or dropped');
    const tampered = Buffer.from(c1);
    tampered[3] ^= 1;
    expect(at([c0], tampered)).to.deep.equal({
      code: 'DATA_LOSS',
      message: 'sealed chunk 1 fails authentication: it was tampered with or not sealed for this upload',
    });
    expect(at([c0], c1.subarray(0, 15)).message).to.equal('sealed chunk 1 fails authentication: it was tampered with or not sealed for this upload');
    // The final flag: a two-chunk sealing of the first 128 bytes whose last chunk is final, sent where chunk 1
    // of three is expected; and the same chunk sealed as not final, sent last.
    const plain = [...dataChunks(delta(), 64)].map((p) => Buffer.from(p));
    const key = nacl.box.before(e.ephemeral_public_key, COORDINATOR.boxSecretKey);
    const resealed = (i: number, final: boolean): Buffer => {
      const c = createCipheriv('chacha20-poly1305', key, nonce(e.nonce_prefix, i, final), { authTagLength: 16 });
      c.setAAD(chunkAad('run-1', 'client-9', 'task-7', e.ephemeral_public_key), { plaintextLength: plain[i].length });
      return Buffer.concat([c.update(plain[i]), c.final(), c.getAuthTag()]);
    };
    expect(at([c0], resealed(1, true))).to.deep.equal({
      code: 'DATA_LOSS',
      message: 'sealed chunk 1 is marked final, but the header declares 3 chunks: the stream was truncated or spliced',
    });
    expect(at([c0, c1], resealed(2, false)).message).to.equal(
      'sealed chunk 2 is marked not final, but the header declares 3 chunks: the stream was truncated or spliced',
    );
    // A chunk sealed for an index beyond the declared count is not "moved": it fails authentication.
    plain.push(Buffer.alloc(8, 1));
    expect(at([c0], resealed(3, false)).message).to.equal('sealed chunk 1 fails authentication: it was tampered with or not sealed for this upload');
    // Authentication is the opener's one test: a sealed empty plaintext (a bare tag) opens at its position.
    plain[1] = Buffer.alloc(0);
    const bare = resealed(1, false);
    expect(bare.length).to.equal(16);
    const ob = opener(e, header);
    ob.open(c0);
    expect(ob.open(bare).length).to.equal(0);
    const o = opener(e, header);
    o.open(c0);
    expect(refusal(() => o.finish())).to.deep.equal({ code: 'DATA_LOSS', message: 'sealed stream truncated: 1 of 3 chunks arrived' });
    // The trailer check finishes first: a truncated stream is refused as truncated whatever its trailer.
    expect(refusal(() => o.checkTrailer(sealed.envelope.ciphertext_sha256 as Uint8Array)).message).to.equal('sealed stream truncated: 1 of 3 chunks arrived');
  });

  it('explains a moved chunk only within EXPLAIN_WINDOW positions of where it arrived (the search is bounded)', () => {
    const header: TensorHeader = {
      protocol_version: PROTOCOL_VERSION,
      tensors: [{ name: 'x', dtype: 'UINT32', shape: [25] }],
      total_bytes: 100,
      chunk_bytes: 1,
    };
    const plain = Array.from({ length: 100 }, (_, i) => Buffer.from([i & 0xff]));
    const sealed = sealUpload({ binding: BINDING, tensors: header, plaintextChunks: plain, coordinator: COORDINATOR, identitySecretKey: site.secretKey });
    const e = envelopeOut(sealed.envelope);
    expect(EXPLAIN_WINDOW).to.equal(8);
    expect(refusal(() => opener(e, header).open(sealed.chunks[8])).message).to.equal('sealed chunk 8 arrived at position 0: chunks were reordered or dropped');
    for (const j of [9, 99]) {
      expect(refusal(() => opener(e, header).open(sealed.chunks[j])).message).to.equal(
        'sealed chunk 0 fails authentication: it was tampered with or not sealed for this upload',
      );
    }
    // Behind the position as well as ahead: a replay of a chunk 8 back is named, 9 back is not.
    const o = opener(e, header);
    for (let k = 0; k < 9; k++) o.open(sealed.chunks[k]);
    expect(refusal(() => o.open(sealed.chunks[1])).message).to.equal('sealed chunk 1 arrived at position 9: chunks were reordered or dropped');
    const o2 = opener(e, header);
    for (let k = 0; k < 10; k++) o2.open(sealed.chunks[k]);
    expect(refusal(() => o2.open(sealed.chunks[1])).message).to.equal(
      'sealed chunk 10 fails authentication: it was tampered with or not sealed for this upload',
    );
  });
});
