// Key rotation through the built commands against a running coordinator (auth.mode "enrolled") over real gRPC:
// `fedtune-site identity --rotate` makes a new key and keeps the old one aside; `fedtune enroll rotate` swaps a
// site's key in one write (the old key refused at its next call, open session included, with what to do; the new
// one admitted without a token); after a compromise, a revoked key presenting a fresh token is refused and the
// token stays unused for the site's new key. Every refusal: exact status, no key, token or path in the message,
// and the run directory untouched. docs/operator.md section 5 runs the same commands end to end (ops-docs.test).
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { loadOrCreateIdentity } from '../client-sdk/identity';
import { issueJoinToken, readClientsFile } from '../coordinator/auth/enrolment';
import { PROTOCOL_VERSION } from '../proto/load';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import { download, expectRefused, join, rawClient, settled, startCoordinator, tempDir, testIdentity, type Harness } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const runner =
  (cli: string) =>
  (...args: string[]): Promise<{ code: number; out: string; err: string }> =>
    promisify(execFile)(process.execPath, [cli, ...args], { timeout: 30_000 }).then(
      (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
    );
const fedtune = runner(path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js'));
const fedtuneSite = runner(path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js'));
const b64 = (k: Uint8Array): string => Buffer.from(k).toString('base64');

describe('ops: key rotation with fedtune enroll rotate and fedtune-site identity --rotate', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: RawClient;
  let keyDir: string;

  before(async () => {
    h = await startCoordinator(await tempDir('ops-rotate'), {}, { auth: { mode: 'enrolled', allowList: [] } });
    await settled(h);
    c = rawClient(h.address);
    keyDir = await tempDir('ops-rotate-keys');
  });
  after(async () => {
    c.close();
    await h.coordinator.stop(500);
    await fs.rm(h.runDir, { recursive: true, force: true });
    await fs.rm(keyDir, { recursive: true, force: true });
  });

  it('identity --rotate refuses a file that does not exist, creating nothing', async () => {
    const file = path.join(keyDir, 'none', 'id.json');
    const r = await fedtuneSite('identity', '--rotate', file);
    expect(r.code).to.equal(1);
    expect(r.err).to.contain('does not exist: there is no identity to rotate (fedtune-site identity <file> creates one)');
    expect(await fs.readdir(keyDir)).to.deep.equal([]);
  });

  it('a routine rotation: the old key is refused at its next call with what to do, the new key joins without a token', async () => {
    const file = path.join(keyDir, 'site-r.json');
    const old = await loadOrCreateIdentity(file);
    expect((await fedtune('enroll', 'add', 'site-r', b64(old.publicKey), '--run', h.runDir)).code).to.equal(0);
    const session = await join(c, 'site-r', PROTOCOL_VERSION, old);

    const rot = await fedtuneSite('identity', '--rotate', file);
    expect(rot.code, rot.err).to.equal(0);
    const fresh = await loadOrCreateIdentity(file);
    expect(rot.out).to.equal(`${b64(fresh.publicKey)}\n`); // stdout: the new public key alone
    expect(rot.err).to.contain(`key ${old.keyId} retired to ${file}.${old.keyId}.retired; new key ${fresh.keyId} in ${file}`);
    expect(b64((await loadOrCreateIdentity(`${file}.${old.keyId}.retired`)).publicKey)).to.equal(b64(old.publicKey));
    expect((await fs.stat(`${file}.${old.keyId}.retired`)).mode & 0o777).to.equal(0o600);
    expect(await download(c, session.session_token, 0), 'the old key works until the operator acts').to.be.greaterThan(0);

    const r = await fedtune('enroll', 'rotate', 'site-r', rot.out.trim(), '--run', h.runDir);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.match(new RegExp(`^rotated site-r: key ${old.keyId} revoked at \\S+, key ${fresh.keyId} enrolled\\n`));
    const why = `key ${old.keyId} of site site-r was revoked at`;
    const e1 = await expectRefused(h.runDir, () => download(c, session.session_token, 0), status.PERMISSION_DENIED, why);
    expect(e1.details).to.match(new RegExp(`\\(rotated to key ${fresh.keyId}\\): restart the site with its new identity file$`));
    const e2 = await expectRefused(h.runDir, () => join(c, 'site-r', PROTOCOL_VERSION, old), status.PERMISSION_DENIED, why);
    for (const e of [e1, e2]) expect(e.details).to.not.contain(b64(old.publicKey)).and.not.contain(keyDir).and.not.contain(h.runDir);
    const s2 = await join(c, 'site-r', PROTOCOL_VERSION, fresh);
    expect(await download(c, s2.session_token, 0)).to.be.greaterThan(0);
  });

  it('enroll rotate refuses, naming why and writing nothing: no active enrolment, the same key, a key used before, a weak key', async () => {
    const before = await fs.readFile(path.join(h.runDir, 'clients.json'), 'utf8');
    const current = readClientsFile(h.runDir).clients.find((x) => x.name === 'site-r' && !x.revokedAt)!.publicKey;
    const retired = readClientsFile(h.runDir).clients.find((x) => x.name === 'site-r' && x.revokedAt)!.publicKey;
    const cases: Array<[string[], string]> = [
      [['nobody', b64(testIdentity('x').publicKey)], 'site nobody has no active enrolment in'],
      [['site-r', current], 'is already the key of site site-r'],
      [['site-r', retired], 'was enrolled before (revoked or for another site): the site must make a new one'],
      [['site-r', Buffer.alloc(32).toString('base64')], 'the new key for site-r is'],
      [['site-r', 'abc'], 'newPublicKey must be a base64 32-byte Ed25519 key'],
    ];
    for (const [args, message] of cases) {
      const r = await fedtune('enroll', 'rotate', ...args, '--run', h.runDir);
      expect(r.code, args.join(' ')).to.equal(1);
      expect(r.err).to.contain(message);
    }
    expect(await fs.readFile(path.join(h.runDir, 'clients.json'), 'utf8')).to.equal(before);
  });

  it('after a compromise: the revoked key is refused even with a fresh token, which stays unused for the new key', async () => {
    const stolen = testIdentity('site-k');
    await join(c, 'site-k', PROTOCOL_VERSION, stolen, issueJoinToken(h.runDir, 'site-k', 60_000));
    const rv = await fedtune('enroll', 'revoke', 'site-k', '--run', h.runDir, '--reason', 'laptop stolen');
    expect(rv.code, rv.err).to.equal(0);
    const token = (await fedtune('enroll', 'token', 'site-k', '--run', h.runDir)).out.trim();
    const e = await expectRefused(h.runDir, () => join(c, 'site-k', PROTOCOL_VERSION, stolen, token), status.PERMISSION_DENIED, 'laptop stolen');
    expect(e.details).to.match(
      new RegExp(
        `^key ${stolen.keyId} of site site-k was revoked at \\S+ \\(laptop stolen\\): the site needs a new identity \\(fedtune-site identity --rotate <file>\\) and a new join token from the operator$`,
      ),
    );
    expect(e.details).to.not.contain(token);
    const fresh = testIdentity('site-k-2');
    const s = await join(c, 'site-k', PROTOCOL_VERSION, fresh, token);
    expect(await download(c, s.session_token, 0)).to.be.greaterThan(0);
    const list = await fedtune('enroll', 'list', '--run', h.runDir);
    expect(list.out)
      .to.contain(`site-k\t${b64(stolen.publicKey)}\ttoken\t`)
      .and.match(/\trevoked \S+ \(laptop stolen\)\n/);
    expect(list.out).to.contain(`site-k\t${b64(fresh.publicKey)}\ttoken\t`);
  });
});
