// TLS on the gRPC channel, over real loopback gRPC with certificates made here by openssl: a CA, a server
// certificate for 127.0.0.1/localhost, a client certificate, and an unrelated CA with its own client
// certificate. Server TLS, mutual TLS, refusals, the configuration's errors, and that no key leaks.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { Coordinator } from '../coordinator/coordinator';
import { ConfigError, loadConfig } from '../coordinator/config';
import { FederationClient } from '../client-sdk/client';
import { tlsCredentials } from '../client-sdk/tls';
import { downloadAdapter } from '../client-sdk/download';
import { parallelDownloads, rangeStats } from '../client-sdk/download-ranges';
import { loadFedtuneProto } from '../proto/load';
import type { FederationClient as RawClient } from '../proto/generated/fedtune/v1/Federation';
import { ConstantTrainer, smallAdapter, startCoordinator, tempDir, type Harness, testIdentity, join, settled } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const fast = { initialMs: 20, maxMs: 200, factor: 2 };

interface Pair {
  readonly cert: string;
  readonly key: string;
}
interface Pki {
  readonly ca: Pair;
  readonly server: Pair;
  readonly client: Pair;
  readonly otherCa: Pair;
  readonly otherClient: Pair;
}

// A private openssl config, so that the certificates do not depend on the machine's openssl.cnf.
const REQ_CNF = `[req]
distinguished_name = dn
prompt = no
x509_extensions = v3_ca
[dn]
CN = fedtune test CA
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`;
const leafExt = (usage: 'serverAuth' | 'clientAuth', san?: string): string =>
  [
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = critical,digitalSignature',
    `extendedKeyUsage = ${usage}`,
    'authorityKeyIdentifier = keyid',
    ...(san ? [`subjectAltName = ${san}`] : []),
  ].join('\n') + '\n';

/** EC P-256 keys (fast to make); x509 -req with -extfile works on openssl 1.1.1 and 3.x alike. */
function makePki(dir: string): Pki {
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const f = (name: string): string => path.join(dir, name);
  writeFileSync(f('req.cnf'), REQ_CNF);
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = (name: string, cn: string): Pair => {
    ssl('req', '-x509', '-config', 'req.cnf', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${cn}`);
    return { cert: f(`${name}.crt`), key: f(`${name}.key`) };
  };
  let serial = 0x1000;
  const leaf = (name: string, cn: string, issuer: Pair, ext: string): Pair => {
    writeFileSync(f(`${name}.ext`), ext);
    ssl('req', '-new', '-config', 'req.cnf', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      issuer.cert,
      '-CAkey',
      issuer.key,
      '-set_serial',
      String(serial++),
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.crt`,
    );
    return { cert: f(`${name}.crt`), key: f(`${name}.key`) };
  };
  const caPair = ca('ca', 'fedtune test CA');
  const otherCa = ca('other-ca', 'unrelated CA');
  return {
    ca: caPair,
    otherCa,
    server: leaf('server', 'localhost', caPair, leafExt('serverAuth', 'IP:127.0.0.1,DNS:localhost')),
    client: leaf('client', 'site-a', caPair, leafExt('clientAuth')),
    otherClient: leaf('other-client', 'site-x', otherCa, leafExt('clientAuth')),
  };
}

/** One Join over a fresh channel with these credentials: null when it succeeds, else the gRPC error. */
function tryJoin(address: string, credentials: grpc.ChannelCredentials, name = 'probe'): Promise<grpc.ServiceError | null> {
  const Ctor = loadFedtuneProto().fedtune.v1.Federation;
  const c = new Ctor(address, credentials) as unknown as RawClient;
  return join(c, name)
    .then(
      () => null,
      (e: grpc.ServiceError) => e,
    )
    .finally(() => c.close());
}

describe('TLS on the gRPC channel', function () {
  this.timeout(30_000);
  let dir: string;
  let pki: Pki;
  const harnesses: Harness[] = [];
  const clients: FederationClient[] = [];
  const coordinators: Coordinator[] = [];
  const runDirs: string[] = [];

  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'fedtune-tls-'));
    pki = makePki(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.stop().catch(() => undefined);
    for (const c of coordinators.splice(0)) await c.stop(200);
    for (const d of runDirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
    for (const h of harnesses.splice(0)) {
      await h.coordinator.stop(200);
      await fs.rm(h.runDir, { recursive: true, force: true });
    }
  });

  const start = async (mutual: boolean): Promise<Harness> => {
    const tls = { certFile: pki.server.cert, keyFile: pki.server.key, clientCaFile: mutual ? pki.ca.cert : '' };
    const h = await startCoordinator(await tempDir('tls'), { total: 1 }, { tls });
    harnesses.push(h);
    return h;
  };
  const site = (h: Harness, name: string, credentials: grpc.ChannelCredentials): FederationClient => {
    const c = new FederationClient({ address: h.address, name, identity: testIdentity(name), trainer: new ConstantTrainer(0.5), backoff: fast, credentials });
    clients.push(c);
    return c;
  };
  const expectRefused = (e: grpc.ServiceError | null, what: string, why?: string): void => {
    expect(e, what).to.not.equal(null);
    expect(e!.code, `${what}: ${e!.message}`).to.equal(grpc.status.UNAVAILABLE);
    if (why) expect(e!.details, what).to.contain(why);
  };

  it('server TLS: clients that trust the CA commit a round; neither the key nor tls.* reaches the run directory', async () => {
    const h = await start(false);
    const creds = tlsCredentials({ caFile: pki.ca.cert });
    const runs = [site(h, 'a', creds).run(), site(h, 'b', creds).run()];
    const final = await h.coordinator.done;
    await Promise.all(runs);
    expect(final.manifest.version).to.equal(1);
    expect(Array.from(final.adapter[0].data)).to.deep.equal(new Array(6).fill(0.5));
    expect(final.manifest.config).to.not.have.property('tls');
    const keyBody = readFileSync(pki.server.key, 'utf8').split('\n')[1];
    for (const f of await fs.readdir(h.runDir, { recursive: true })) {
      const p = path.join(h.runDir, f);
      if (!(await fs.stat(p)).isFile()) continue;
      const text = await fs.readFile(p, 'latin1');
      expect(text, f).to.not.contain('PRIVATE KEY').and.not.contain(keyBody).and.not.contain(pki.server.key);
    }
  });

  it('server TLS: refuses a plaintext client and clients that do not trust the CA (UNAVAILABLE), and keeps serving', async () => {
    const h = await start(false);
    expectRefused(await tryJoin(h.address, grpc.credentials.createInsecure()), 'plaintext');
    expectRefused(await tryJoin(h.address, tlsCredentials()), 'system roots only', 'unable to verify the first certificate');
    expectRefused(await tryJoin(h.address, tlsCredentials({ caFile: pki.otherCa.cert })), 'another CA', 'unable to verify the first certificate');
    expect(await tryJoin(h.address, tlsCredentials({ caFile: pki.ca.cert }))).to.equal(null);
  });

  it("checks the server's name: the certificate's SAN, or serverNameOverride", async () => {
    const h = await start(false);
    expect(await tryJoin(h.address, tlsCredentials({ caFile: pki.ca.cert, serverNameOverride: 'localhost' }))).to.equal(null);
    expectRefused(
      await tryJoin(h.address, tlsCredentials({ caFile: pki.ca.cert, serverNameOverride: 'coordinator.example' })),
      'wrong name',
      "is not in the cert's altnames",
    );
  });

  it('mutual TLS: refuses clients without a certificate or with one from another CA, then commits a round with CA-signed clients', async () => {
    const h = await start(true);
    const signed = tlsCredentials({ caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key });
    expectRefused(await tryJoin(h.address, tlsCredentials({ caFile: pki.ca.cert })), 'no client certificate');
    expectRefused(await tryJoin(h.address, tlsCredentials({ caFile: pki.ca.cert, certFile: pki.otherClient.cert, keyFile: pki.otherClient.key })), 'other CA');
    expectRefused(await tryJoin(h.address, grpc.credentials.createInsecure()), 'plaintext');
    // The refusals left the coordinator serving: two sites with certificates from the CA finish the run.
    const runs = [site(h, 'a', signed).run(), site(h, 'b', signed).run()];
    const final = await h.coordinator.done;
    await Promise.all(runs);
    expect(final.manifest.version).to.equal(1);
    expect(final.manifest.participants.map((p) => p.clientName).sort()).to.deep.equal(['a', 'b']);
  });

  it('logs the TLS mode and certificate path, never the key; an explicit credentials option wins', async () => {
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(chunk.toString()), cb()) });
    const config = (runDir: string) =>
      loadConfig({
        overrides: {
          server: { port: 0 },
          run: { dir: runDir },
          auth: { mode: 'tofu' },
          tls: { certFile: pki.server.cert, keyFile: pki.server.key, clientCaFile: pki.ca.cert },
        },
      });
    const make = async (credentials?: grpc.ServerCredentials): Promise<string> => {
      const runDir = await tempDir('tls-log');
      runDirs.push(runDir);
      const c = new Coordinator({
        config: config(runDir),
        credentials,
        initialAdapter: () => smallAdapter(0),
        adapterConfig: {},
        baseModel: { name: 't', sha256: '0'.repeat(64) },
        logger: pino({ level: 'info' }, sink),
      });
      coordinators.push(c);
      return (await c.start()).address;
    };
    await make();
    const listening = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'coordinator listening')!;
    expect(listening).to.include({ tls: 'mtls', tlsCertFile: pki.server.cert, tlsClientCaFile: pki.ca.cert });
    const keyBody = readFileSync(pki.server.key, 'utf8').split('\n')[1];
    expect(lines.join('')).to.not.contain('PRIVATE KEY').and.not.contain(keyBody);
    // credentials: an explicit insecure server despite the tls.* keys.
    const address = await make(grpc.ServerCredentials.createInsecure());
    expect(await tryJoin(address, grpc.credentials.createInsecure())).to.equal(null);
    const last = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === 'coordinator listening')
      .pop();
    expect(last).to.include({ tls: 'credentials option' });
  });

  it('configuration: tls.* keys load from flags and the environment; errors name the key', () => {
    const s = pki.server;
    const ok = loadConfig({ env: { FEDTUNE_TLS_CERT_FILE: s.cert, FEDTUNE_TLS_CLIENT_CA_FILE: pki.ca.cert }, args: ['--tls.keyFile', s.key] });
    expect(ok.tls).to.deep.equal({ certFile: s.cert, keyFile: s.key, clientCaFile: pki.ca.cert });
    expect(loadConfig().tls).to.deep.equal({ certFile: '', keyFile: '', clientCaFile: '' });
    const error = (tls: Record<string, string>): string => {
      try {
        loadConfig({ overrides: { tls } });
      } catch (e) {
        expect(e).to.be.instanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error(`expected a ConfigError for ${JSON.stringify(tls)}`);
    };
    expect(error({ certFile: s.cert })).to.contain('tls.keyFile must be set when tls.certFile is');
    expect(error({ keyFile: s.key })).to.contain('tls.certFile must be set when tls.keyFile is');
    expect(error({ clientCaFile: pki.ca.cert })).to.contain('tls.clientCaFile needs tls.certFile');
    const missing = path.join(dir, 'absent.pem');
    expect(error({ certFile: missing, keyFile: s.key }))
      .to.contain(`tls.certFile (${JSON.stringify(missing)}) must be a readable file`)
      .and.contain('ENOENT');
    expect(error({ certFile: s.cert, keyFile: s.key, clientCaFile: dir }))
      .to.contain('tls.clientCaFile')
      .and.contain('not a regular file');
  });

  it('mutual TLS: a parallel download (range calls on worker threads) makes its channels from tlsCredentials() and lands the version', async () => {
    // 16 tensors of 5,000 values over 64 KiB pieces: 5 pieces, 3 range calls, each worker presenting the site's certificate.
    const adapter = Array.from({ length: 16 }, (_, i) => ({
      name: `t${String(i).padStart(2, '0')}`,
      dtype: 'float32' as const,
      shape: [5000],
      data: Float32Array.from({ length: 5000 }, (_, j) => Math.sin(i * 5000 + j)),
    }));
    const tls = { certFile: pki.server.cert, keyFile: pki.server.key, clientCaFile: pki.ca.cert };
    const h = await startCoordinator(
      await tempDir('tls'),
      { total: 1 },
      { tls, transport: { chunkBytes: 16 << 10, pieceBytes: 64 << 10 } },
      { initialAdapter: () => adapter },
    );
    harnesses.push(h);
    await settled(h); // version 0 committed
    const credentials = tlsCredentials({ caFile: pki.ca.cert, certFile: pki.client.cert, keyFile: pki.client.key });
    const rpc = new (loadFedtuneProto().fedtune.v1.Federation)(h.address, credentials) as unknown as RawClient;
    try {
      const { session_token: token } = await join(rpc, 'site-p');
      const parallel = parallelDownloads({ address: h.address, credentials, downloadStreams: 3 }, {});
      expect(parallel?.channel.tls).to.not.equal(undefined);
      const before = rangeStats.ranges;
      const got = await downloadAdapter(rpc, token, 0, undefined, false, parallel);
      expect(rangeStats.ranges - before).to.equal(3);
      expect(got.map((t) => Array.from(t.data))).to.deep.equal(adapter.map((t) => Array.from(t.data)));
    } finally {
      rpc.close();
    }
  });

  it('start() names the key of a file that does not parse, or of a key that does not fit the certificate', async () => {
    const notPem = path.join(dir, 'req.cnf');
    const cases: [Record<string, string>, string][] = [
      [{ certFile: notPem, keyFile: pki.server.key }, 'tls.certFile'],
      [{ certFile: pki.server.cert, keyFile: notPem }, 'tls.keyFile'],
      [{ certFile: pki.server.cert, keyFile: pki.ca.key }, 'tls.keyFile'],
      [{ certFile: pki.server.cert, keyFile: pki.server.key, clientCaFile: notPem }, 'tls.clientCaFile'],
    ];
    for (const [tls, key] of cases) {
      const runDir = await tempDir('tls-bad');
      const err = await startCoordinator(runDir, {}, { tls }).then(
        (h) => (harnesses.push(h), null),
        (e: Error) => e,
      );
      await fs.rm(runDir, { recursive: true, force: true });
      expect(err, JSON.stringify(tls)).to.be.instanceOf(Error);
      expect(err!.message, JSON.stringify(tls)).to.match(new RegExp(`^${key.replace('.', '\\.')} `));
      expect(err!.message).to.not.contain('PRIVATE KEY');
    }
  });

  it('tlsCredentials refuses a certificate without its key and unreadable or non-PEM files', () => {
    expect(() => tlsCredentials({ certFile: pki.client.cert })).to.throw('certFile and keyFile together');
    expect(() => tlsCredentials({ caFile: path.join(dir, 'absent.pem') })).to.throw(/cannot read the TLS CA file .*absent\.pem/);
    expect(() => tlsCredentials({ caFile: path.join(dir, 'req.cnf') })).to.throw('holds no PEM certificate');
    expect(() => tlsCredentials({ certFile: pki.client.cert, keyFile: pki.ca.key })).to.throw('key values mismatch');
  });

  it('fedtune-site client --tls-cert needs --tls-key; fedtune coordinator --tls.certFile needs tls.keyFile', async () => {
    const cliOf = (cmd: string): string =>
      cmd === 'client' ? path.join(__dirname, '..', 'client-sdk', 'cli', 'fedtune-site.js') : path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
    const run = (args: string[]): Promise<{ code: number; out: string }> =>
      promisify(execFile)(process.execPath, [cliOf(args[0]), ...args], { timeout: 20_000 }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
    const [client, coordinator] = await Promise.all([
      run(['client', '--address', '127.0.0.1:1', '--name', 'x', '--tls-cert', pki.client.cert]),
      run(['coordinator', '--server.port', '0', '--tls.certFile', pki.server.cert]),
    ]);
    expect(client.code).to.equal(1);
    expect(client.out).to.contain('--tls-cert and --tls-key go together');
    expect(coordinator.code).to.equal(1);
    expect(coordinator.out).to.contain('tls.keyFile must be set when tls.certFile is');
  });
});
