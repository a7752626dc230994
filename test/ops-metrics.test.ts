// The Prometheus endpoint after a real federation over gRPC: three sites (two selected per round), two rounds,
// one refused call; the scrape is parsed and its values checked exactly where the run determines them.
import { promises as fs } from 'node:fs';
import * as http from 'node:http';
import pino from 'pino';
import { Coordinator } from '../coordinator/coordinator';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { FederationClient } from '../client-sdk/client';
import { ConstantTrainer, freePort, rawClient, refusal, reportMetrics, smallAdapter, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Prometheus text format → 'name{labels}' → value (labels as printed, in prom-client's order). */
function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    out.set(m[1]!, Number(m[2]));
  }
  return out;
}

function get(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
      })
      .on('error', reject);
  });
}

describe('ops: Prometheus metrics', function () {
  this.timeout(60_000);
  let dir: string;
  const sites: FederationClient[] = [];
  let coordinator: Coordinator | undefined;
  afterEach(async () => {
    for (const s of sites.splice(0)) await s.stop().catch(() => undefined);
    await coordinator?.stop(200);
    coordinator = undefined;
    await fs.rm(dir, { recursive: true, force: true });
  });

  function start(metricsPort: number): Coordinator {
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir, seed: 11 },
        rounds: { total: 2, minClients: 3, minUpdates: 2, clientsPerRound: 2, deadlineMs: 20_000, maxAttempts: 2 },
        metrics: { port: metricsPort },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
      },
    });
    coordinator = new Coordinator({
      config,
      initialAdapter: () => smallAdapter(0),
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 'test', sha256: '0'.repeat(64) },
      logger: pino({ level: 'silent' }),
    });
    return coordinator;
  }
  const site = (address: string, name: string): FederationClient => {
    const s = new FederationClient({
      address,
      name,
      identity: testIdentity(name),
      trainer: new ConstantTrainer(0.25, 10),
      backoff: { initialMs: 20, maxMs: 200, factor: 2 },
    });
    sites.push(s);
    void s.run().catch(() => undefined);
    return s;
  };

  it('counts rounds, phases, sites, bytes and refusals of a real 2-round run, with no site names in labels', async () => {
    dir = await tempDir('ops-metrics');
    const c = start(await freePort());
    const { address } = await c.start();
    const url = `${c.ops!.metricsEndpoint!.url}/metrics`;

    // Two of the three sites the round waits for: the gauge shows them, no round has started.
    site(address, 'site-alpha');
    site(address, 'site-beta');
    const end = Date.now() + 10_000;
    while ((c.registry.connected().length < 2 || c.engine.phase !== 'WAITING_FOR_CLIENTS') && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    let m = parseExposition((await get(url)).body);
    expect(m.get('fedtune_sites_connected')).to.equal(2);
    expect(m.get('fedtune_rounds_committed_total')).to.equal(0);
    expect(m.get('fedtune_latest_version')).to.equal(0);
    expect(m.get('fedtune_round_phase{phase="WAITING_FOR_CLIENTS"}')).to.equal(1);
    expect(m.get('fedtune_rounds_planned')).to.equal(2);

    // A refused call: counted by status name under its method.
    const raw = rawClient(address);
    const err = await refusal(reportMetrics(raw, 'not-a-session', 't', 1));
    expect(err.details).to.contain('unknown session token');
    raw.close();

    site(address, 'site-gamma');
    const final = await c.done;
    expect(final.manifest.version).to.equal(2);
    const res = await get(url);
    expect(res.status).to.equal(200);
    expect(res.type).to.contain('text/plain');
    m = parseExposition(res.body);
    expect(m.get('fedtune_rounds_committed_total')).to.equal(2);
    expect(m.has('fedtune_round_attempts_aborted_total')).to.equal(false); // labelled counter, never incremented: no sample
    expect(m.get('fedtune_round_duration_seconds_count')).to.equal(2);
    expect(m.get('fedtune_round_attempt_duration_seconds_count{outcome="committed"}')).to.equal(2);
    expect(m.get('fedtune_round_phase_duration_seconds_count{phase="TRAINING"}')).to.equal(2);
    expect(m.get('fedtune_round_phase_duration_seconds_count{phase="AGGREGATING"}')).to.equal(2);
    expect(m.get('fedtune_round_phase_duration_seconds_count{phase="COMMITTING"}')).to.equal(3); // v0, v1, v2
    expect(m.get('fedtune_site_selections_total')).to.equal(4);
    expect(m.get('fedtune_updates_accepted_total')).to.equal(4);
    expect(m.get('fedtune_round_sites_selected')).to.equal(2);
    expect(m.get('fedtune_round_updates_accepted')).to.equal(2);
    expect(m.get('fedtune_latest_version')).to.equal(2);
    expect(m.get('fedtune_latest_round')).to.equal(2);
    expect(m.get('fedtune_latest_version_metric{metric="clients.train_loss"}')).to.equal(0.25);
    expect(m.get('fedtune_round_phase{phase="FINISHED"}')).to.equal(1);
    expect(m.get('fedtune_round_phase{phase="WAITING_FOR_CLIENTS"}')).to.equal(0);
    expect(m.get('fedtune_grpc_rejections_total{method="ReportMetrics",code="UNAUTHENTICATED"}')).to.equal(1);
    expect(m.get('fedtune_grpc_server_handled_total{method="UploadUpdate",code="OK"}')).to.equal(4);
    expect(m.get('fedtune_grpc_server_handled_total{method="Join",code="OK"}')).to.equal(3);
    // Four sealed uploads of 14 float32 each, three downloads per round plus retries at most: lower bounds.
    expect(m.get('fedtune_grpc_received_bytes_total{method="UploadUpdate"}')).to.be.greaterThan(4 * 14 * 4);
    expect(m.get('fedtune_grpc_sent_bytes_total{method="DownloadAdapter"}')).to.be.greaterThan(4 * 14 * 4);
    expect(m.has('process_cpu_user_seconds_total')).to.equal(true);
    expect(m.has('nodejs_heap_size_used_bytes')).to.equal(true);
    expect(res.body).not.to.match(/site-(alpha|beta|gamma)|c-[0-9a-f]{12}/);
    // Without privacy.enabled no privacy series exists (test/ops-privacy.test.ts has a DP run's).
    expect(res.body).not.to.contain('fedtune_privacy_');
    expect((await get(`${url.replace(/\/metrics$/, '/')}`)).status).to.equal(404);
  });

  it('a metrics port in use fails start() and leaves nothing bound', async () => {
    dir = await tempDir('ops-metrics-busy');
    const busy = http.createServer();
    const port = await freePort();
    await new Promise<void>((r) => busy.listen(port, '127.0.0.1', r));
    try {
      const c = start(port);
      const err = await c.start().then(
        () => undefined,
        (e: NodeJS.ErrnoException) => e,
      );
      expect(err?.code, String(err)).to.equal('EADDRINUSE');
      expect(c.ops!.metricsEndpoint).to.equal(undefined);
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
  });

  it('is off by default: no endpoint, no interceptor', async () => {
    dir = await tempDir('ops-metrics-off');
    const c = start(0);
    await c.start();
    expect(c.ops!.metrics).to.equal(undefined);
    expect(c.ops!.metricsEndpoint).to.equal(undefined);
  });
});
