// Keys that must never be trusted: small-order and non-canonical Ed25519 public keys (under which node:crypto's
// RFC 8032 verification accepts forged signatures), and key files whose halves disagree.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { verify, createPublicKey } from 'node:crypto';
import nacl from 'tweetnacl';
import { ed25519KeyProblem } from '../proto/crypto/ed25519-point';
import { verifyDetached } from '../proto/crypto/ed25519';
import { parseAllowList, enrolKey } from '../coordinator/auth/enrolment';
import { loadOrCreateCoordinatorKeys } from '../coordinator/keys';
import { loadOrCreateIdentity } from '../client-sdk/identity';
import { tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const hex = (h: string): Uint8Array => new Uint8Array(Buffer.from(h, 'hex'));
// The eight points of small order (the torsion subgroup) in their canonical encodings, from the Ed25519 paper's
// list as libsodium blocks them, plus non-canonical encodings of some of them.
const SMALL_ORDER = [
  '0100000000000000000000000000000000000000000000000000000000000000', // identity, order 1
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // (0, −1), order 2
  '0000000000000000000000000000000000000000000000000000000000000080', // order 4
  '0000000000000000000000000000000000000000000000000000000000000000', // order 4
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a', // order 8
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa', // order 8
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05', // order 8
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85', // order 8
];
const NON_CANONICAL = [
  '0100000000000000000000000000000000000000000000000000000000000080', // identity with the sign bit (x = −0)
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y = p + 1
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f', // y = p
];
const SPKI = Buffer.from('302a300506032b6570032100', 'hex');

describe('weak keys are refused', () => {
  it('node:crypto alone accepts a forged signature under the identity point (why the check exists)', () => {
    const pk = hex(SMALL_ORDER[0]);
    const forged = hex('01' + '00'.repeat(31) + '00'.repeat(32)); // R = identity, S = 0
    const key = createPublicKey({ key: Buffer.concat([SPKI, pk]), format: 'der', type: 'spki' });
    expect(verify(null, Buffer.from('any message'), key, forged)).to.equal(true);
    expect(verifyDetached(Buffer.from('any message'), forged, pk)).to.equal(false);
  });

  it('every small-order and non-canonical encoding is refused, naming why', () => {
    for (const h of SMALL_ORDER) expect(ed25519KeyProblem(hex(h)), h).to.match(/small order|canonical/);
    for (const h of NON_CANONICAL) expect(ed25519KeyProblem(hex(h)), h).to.match(/canonical/);
    expect(ed25519KeyProblem(hex('02' + '00'.repeat(31)))).to.match(/not a canonical encoding of a point/); // y = 2 is off the curve
  });

  it('100 real public keys pass and keep verifying their signatures', () => {
    for (let i = 0; i < 100; i++) {
      const kp = nacl.sign.keyPair();
      expect(ed25519KeyProblem(kp.publicKey)).to.equal(null);
      if (i < 20) expect(verifyDetached(Buffer.from('m'), nacl.sign.detached(Buffer.from('m'), kp.secretKey), kp.publicKey)).to.equal(true);
    }
  });

  it('the allow-list and operator enrolment refuse a small-order key', async () => {
    const b64 = Buffer.from(hex(SMALL_ORDER[4])).toString('base64');
    expect(() => parseAllowList([`evil=${b64}`])).to.throw(/small order/);
    const dir = await tempDir('weak-enrol');
    try {
      expect(() => enrolKey(dir, 'evil', b64)).to.throw(/small order/);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('a coordinator key file or site identity whose public half does not belong to its seed is refused', async () => {
    const dir = await tempDir('weak-keyfile');
    try {
      const kf = path.join(dir, 'keys', 'coordinator.json');
      await loadOrCreateCoordinatorKeys(kf);
      const j = JSON.parse(await fs.readFile(kf, 'utf8')) as Record<string, string>;
      const other = nacl.sign.keyPair();
      const mixed = Buffer.concat([Buffer.from(j.signSecretKey, 'base64').subarray(0, 32), Buffer.from(other.publicKey)]);
      await fs.writeFile(kf, JSON.stringify({ ...j, signSecretKey: mixed.toString('base64') }), { mode: 0o600 });
      await loadOrCreateCoordinatorKeys(kf).then(
        () => expect.fail('accepted'),
        (e: Error) => expect(e.message).to.match(/public half does not belong to the seed/),
      );

      const idf = path.join(dir, 'site.identity.json');
      await loadOrCreateIdentity(idf);
      const k = JSON.parse(await fs.readFile(idf, 'utf8')) as Record<string, string>;
      await fs.writeFile(idf, JSON.stringify({ ...k, publicKey: Buffer.from(other.publicKey).toString('base64') }), { mode: 0o600 });
      await loadOrCreateIdentity(idf).then(
        () => expect.fail('accepted'),
        (e: Error) => expect(e.message).to.match(/publicKey does not match/),
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
