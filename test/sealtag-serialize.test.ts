// The sealed upload's costs cut without a wire change. The sealed sender writes each chunk's ciphertext and tag
// straight into its message (client-sdk/sealed-sender.ts serializeUploadMessage) instead of joining them first: the
// bytes on the wire must be exactly what the generated serializer makes of `{ chunk: ciphertext || tag }`, so the
// coordinator reads the same frame as before. The chunk key's X25519 runs through node:crypto: the same key.
import { randomBytes } from 'node:crypto';
import { serializeUploadMessage } from '../client-sdk/sealed-sender';
import { loadFedtuneProto } from '../proto/load';
import { boxKey } from '../proto/crypto/sealed-upload';
import { ProtocolError, status } from '../proto/errors';
import nacl from 'tweetnacl';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

describe('sealed sender: a chunk written as its two parts', () => {
  const m = loadFedtuneProto().fedtune.v1.Federation.service.UploadUpdate;

  it('encodes byte for byte as the generated serializer encodes the joined chunk, at every varint length boundary', () => {
    // Chunk lengths (ciphertext + 16-byte tag) on each side of the 1-, 2-, 3- and 4-byte varint limits, and the
    // default chunk size (1 MiB) and the largest the coordinator takes (4 MiB − 64 KiB), sealed.
    const lengths = [16, 17, 127, 128, 16383, 16384, (1 << 21) - 1, 1 << 21, (1 << 20) + 16, 4 * 1024 * 1024 - 64 * 1024 + 16];
    for (const n of lengths) {
      const ciphertext = randomBytes(n - 16);
      const tag = randomBytes(16);
      const ours = serializeUploadMessage({ ciphertext, tag });
      const generated = m.requestSerialize({ chunk: Buffer.concat([ciphertext, tag]) });
      expect(ours.equals(generated), `chunk of ${n} bytes`).to.equal(true);
      const back = m.requestDeserialize(ours);
      expect(back.frame).to.equal('chunk');
      expect(Buffer.from(back.chunk!).equals(Buffer.concat([ciphertext, tag]))).to.equal(true);
    }
  });

  it('hands any other frame to the generated serializer', () => {
    const trailer = { trailer: { chunk_count: 3, sha256: randomBytes(32) } };
    expect(serializeUploadMessage(trailer).equals(m.requestSerialize(trailer))).to.equal(true);
  });
});

describe('sealed upload: the chunk key', () => {
  it('is nacl.box.before byte for byte, from either side (the X25519 now runs through node:crypto)', () => {
    for (let i = 0; i < 8; i++) {
      const site = nacl.box.keyPair();
      const coordinator = nacl.box.keyPair();
      const want = Buffer.from(nacl.box.before(coordinator.publicKey, site.secretKey));
      expect(boxKey(coordinator.publicKey, site.secretKey).equals(want)).to.equal(true);
      expect(boxKey(site.publicKey, coordinator.secretKey).equals(want)).to.equal(true);
    }
  });

  it('refuses a low-order public key (the X25519 secret would be all-zero): INVALID_ARGUMENT', () => {
    expect(() => boxKey(new Uint8Array(32), nacl.box.keyPair().secretKey))
      .to.throw(ProtocolError, 'all-zero DH share')
      .with.property('code', status.INVALID_ARGUMENT);
  });
});
