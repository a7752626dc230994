// The operator's side of admission through the built `fedtune` command, against a running coordinator in
// auth.mode "enrolled": `fedtune-site identity` makes a site key file, `fedtune enroll token|add|list|revoke`
// edit <run>/clients.json, and the coordinator honours each edit without a restart.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { status } from '@grpc/grpc-js';
import { loadOrCreateIdentity } from '../client-sdk/identity';
import { PROTOCOL_VERSION } from '../proto/load';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import { download, expectRefused, join, rawClient, settled, startCoordinator, tempDir, testIdentity, type Harness } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const SITE_CLI = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');
const runner =
  (cli: string) =>
  (...args: string[]): Promise<{ code: number; out: string; err: string }> =>
    promisify(execFile)(process.execPath, [cli, ...args], { timeout: 30_000 }).then(
      (r) => ({ code: 0, out: r.stdout, err: r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout, err: e.stderr }),
    );
/** The operator's command (enroll) and the site's (identity). */
const fedtune = runner(CLI);
const fedtuneSite = runner(SITE_CLI);

describe('trust: fedtune enroll and fedtune-site identity', function () {
  this.timeout(60_000);
  let h: Harness;
  let c: RawClient;
  let keyDir: string;

  before(async () => {
    h = await startCoordinator(await tempDir('trust-cli'), {}, { auth: { mode: 'enrolled', allowList: [] } });
    await settled(h);
    c = rawClient(h.address);
    keyDir = await tempDir('trust-cli-keys');
  });
  after(async () => {
    c.close();
    await h.coordinator.stop(500);
    await fs.rm(h.runDir, { recursive: true, force: true });
    await fs.rm(keyDir, { recursive: true, force: true });
  });

  it('fedtune-site identity creates an owner-only key file and prints the same public key every time', async () => {
    const file = path.join(keyDir, 'site-y', 'identity.json');
    const first = await fedtuneSite('identity', file);
    expect(first.code, first.err).to.equal(0);
    const pk = first.out.trim();
    expect(Buffer.from(pk, 'base64')).to.have.length(32);
    expect(Buffer.from(pk, 'base64').toString('base64')).to.equal(pk);
    expect((await fs.stat(file)).mode & 0o777).to.equal(0o600);
    expect((await fs.stat(path.dirname(file))).mode & 0o777).to.equal(0o700);
    const second = await fedtuneSite('identity', file);
    expect(second.out.trim()).to.equal(pk);
    expect(Buffer.from((await loadOrCreateIdentity(file)).publicKey).toString('base64')).to.equal(pk);
  });

  it('fedtune-site identity refuses a key file others can read', async () => {
    const file = path.join(keyDir, 'open.json');
    await fedtuneSite('identity', file);
    await fs.chmod(file, 0o644);
    const r = await fedtuneSite('identity', file);
    expect(r.code).to.not.equal(0);
    expect(r.err).to.contain('too open');
  });

  it('fedtune enroll token prints a single-use token the running coordinator accepts', async () => {
    const r = await fedtune('enroll', 'token', 'site-x', '--run', h.runDir, '--ttl', '10m');
    expect(r.code, r.err).to.equal(0);
    const token = r.out.trim();
    expect(token).to.match(/^ftj_[\w-]{32}$/);
    const x = await join(c, 'site-x', PROTOCOL_VERSION, testIdentity('site-x'), token);
    expect(await download(c, x.session_token, 0)).to.be.greaterThan(0);
    await expectRefused(h.runDir, () => join(c, 'site-x2', PROTOCOL_VERSION, testIdentity('site-x2'), token), status.PERMISSION_DENIED, 'already used');
  });

  it('fedtune enroll add binds a key made by fedtune-site identity', async () => {
    const file = path.join(keyDir, 'site-y', 'identity.json');
    const pk = Buffer.from((await loadOrCreateIdentity(file)).publicKey).toString('base64'); // made by the first test
    const r = await fedtune('enroll', 'add', 'site-y', pk, '--run', h.runDir);
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.contain('enrolled site-y');
    await join(c, 'site-y', PROTOCOL_VERSION, await loadOrCreateIdentity(file));
    await expectRefused(h.runDir, () => join(c, 'site-y'), status.PERMISSION_DENIED, 'site site-y is enrolled with key');
  });

  it('fedtune enroll list shows sites and tokens; revoke takes effect at the next call', async () => {
    const pkX = Buffer.from(testIdentity('site-x').publicKey).toString('base64');
    const list = await fedtune('enroll', 'list', '--run', h.runDir);
    expect(list.code, list.err).to.equal(0);
    expect(list.out).to.contain(`site-x\t${pkX}\ttoken\t`).and.contain('site-y\t').and.contain('\toperator\t');
    expect(list.out).to.match(/token for site-x\texpires \S+\tused \S+/);
    const x = await join(c, 'site-x');
    const r = await fedtune('enroll', 'revoke', 'site-x', '--run', h.runDir, '--reason', 'decommissioned');
    expect(r.code, r.err).to.equal(0);
    expect(r.out).to.contain(`revoked site-x (key ${pkX})`);
    await expectRefused(h.runDir, () => download(c, x.session_token, 0), status.PERMISSION_DENIED, 'was revoked');
    await expectRefused(h.runDir, () => join(c, 'site-x'), status.PERMISSION_DENIED, 'decommissioned');
    expect((await fedtune('enroll', 'list', '--run', h.runDir)).out).to.match(/site-x\t\S+\ttoken\t\S+\trevoked /);
    const again = await fedtune('enroll', 'revoke', 'site-x', '--run', h.runDir);
    expect(again.code).to.not.equal(0);
    expect(again.err).to.contain('site site-x has no active enrolment');
  });
});
