// `fedtune-site client`'s connection flags (client-sdk/site/connection-flags.ts): --keepalive-ms,
// --keepalive-timeout-ms and --report-deadline-ms become FederationClient's keepalive and reportDeadlineMs, only what
// is given, checked against the SDK's own bounds before any model loads, an error naming the flag. That a real site
// process runs under them is checked in reconnect-grace-sdk (its 'site starting' line).
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { connectionFromFlags } from '../client-sdk/site/connection-flags';
import { FederationClient } from '../client-sdk/client';
import type { FederationClientOptions } from '../client-sdk/client-options';
import { ConstantTrainer, testIdentity } from './harness';
import { tempDir } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const SITE_CLI = path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js');

describe('fedtune-site client: connection flags', function () {
  this.timeout(30_000);

  it('sets only what is given, and reports the settings in effect with the SDK defaults for the rest', () => {
    expect(connectionFromFlags({})).to.deep.equal({});
    expect(connectionFromFlags({ keepaliveMs: '5000' })).to.deep.equal({ keepalive: { timeMs: 5000 } });
    expect(connectionFromFlags({ keepaliveMs: '5000', keepaliveTimeoutMs: '20000', reportDeadlineMs: '15000' })).to.deep.equal({
      keepalive: { timeMs: 5000, timeoutMs: 20000 },
      reportDeadlineMs: 15000,
    });
    // The client's settings in effect (what the site logs): the SDK's defaults for what is not given, and its channel's
    // own keepalive when channelOptions overrides it.
    const client = (o: Partial<FederationClientOptions> = {}): FederationClient =>
      new FederationClient({ address: '127.0.0.1:1', name: 'x', identity: testIdentity('x'), trainer: new ConstantTrainer(0.1), ...o });
    expect(client().connection).to.deep.equal({ keepaliveMs: 10000, keepaliveTimeoutMs: 25000, reportDeadlineMs: 20000 });
    expect(client(connectionFromFlags({ keepaliveTimeoutMs: '60000' })).connection).to.deep.equal({
      keepaliveMs: 10000,
      keepaliveTimeoutMs: 60000,
      reportDeadlineMs: 20000,
    });
    expect(client({ reportDeadlineMs: 15000, channelOptions: { 'grpc.keepalive_time_ms': 7000 } }).connection).to.deep.equal({
      keepaliveMs: 7000,
      keepaliveTimeoutMs: 25000,
      reportDeadlineMs: 15000,
    });
  });

  it('refuses a value outside the SDK bounds, or not a whole number of ms, naming the flag', () => {
    const refusals: [Parameters<typeof connectionFromFlags>[0], string][] = [
      [{ keepaliveMs: '999' }, '--keepalive-ms "999": keepalive.timeMs must be a whole number of ms in [1000, 3600000]; got 999'],
      [{ keepaliveTimeoutMs: '600001' }, '--keepalive-timeout-ms "600001": keepalive.timeoutMs must be a whole number of ms in [1000, 600000]; got 600001'],
      [{ reportDeadlineMs: '1.5e3x' }, '--report-deadline-ms "1.5e3x": reportDeadlineMs must be a whole number of ms in [1000, 600000]; got NaN'],
      [{ reportDeadlineMs: '2500.5' }, '--report-deadline-ms "2500.5": reportDeadlineMs must be a whole number of ms in [1000, 600000]; got 2500.5'],
    ];
    for (const [flags, message] of refusals) expect(() => connectionFromFlags(flags)).to.throw(Error, message);
  });

  it('a refused flag stops the command before the site loads anything or creates its identity', async () => {
    const dir = await tempDir('site-connection-flags');
    try {
      const identity = path.join(dir, 'x.identity.json');
      const r = await promisify(execFile)(
        process.execPath,
        [SITE_CLI, 'client', '--address', '127.0.0.1:1', '--name', 'x', '--identity', identity, '--report-deadline-ms', '0'],
        { timeout: 20_000 },
      ).then(
        () => ({ code: 0, out: '' }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
      expect(r.code).to.equal(1);
      expect(r.out.trim()).to.equal('fedtune-site: --report-deadline-ms "0": reportDeadlineMs must be a whole number of ms in [1000, 600000]; got 0');
      await fs.access(identity).then(
        () => expect.fail('identity created'),
        () => undefined,
      );
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
