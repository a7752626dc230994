// Operations figures (node dist/bench/ops.js [--sites 500] [--versions 1000]; prints JSON lines):
//  1. Prometheus scrape time with N sites joined over gRPC and selected in a round that is training.
//  2. Dashboard with V signed versions: /api/state cold (every manifest read, every signature checked) and warm,
//     and the page in headless Chromium until the versions table shows them all.
import * as http from 'node:http';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium } from 'playwright-core';
import { BENCH_BASE_MODEL, benchCoordinator } from './fixtures/bench-coordinator';
// Its rounds run the classic defaults (FedAvg…), as every figure it reported was measured with them.
import { classicConfig } from '../test/classic-defaults';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { manifestSigner } from '../coordinator/checkpoints/signature';
import { loadOrCreateCoordinatorKeys } from '../coordinator/keys';
import { freePort, join, nextTask, rawClient, smallAdapter } from '../test/harness';

const arg = (name: string, dflt: number): number => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
/** The adapter config this bench's versions are written with. */
const LORA = { peft_type: 'LORA' };
function get(url: string, headers: Record<string, string> = {}): Promise<string> {
  return new Promise((resolve, reject) =>
    http
      .get(url, { headers }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve(body));
      })
      .on('error', reject),
  );
}

async function scrapeUnderRound(sites: number): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-bench-ops-'));
  const config = classicConfig({
    overrides: {
      server: { port: 0 },
      run: { dir, seed: 1 },
      metrics: { port: await freePort() },
      log: { level: 'silent' },
      auth: { mode: 'tofu' },
      rounds: { total: 1, minClients: sites, clientsPerRound: sites, minUpdates: 2, deadlineMs: 600_000 },
    },
  });
  const c = benchCoordinator(config, () => smallAdapter(0), LORA);
  const { address } = await c.start();
  const url = `${c.ops!.metricsEndpoint!.url}/metrics`;
  const raw = rawClient(address);
  const t0 = process.hrtime.bigint();
  const streams = [];
  for (let i = 0; i < sites; i++) {
    const j = await join(raw, `bench-site-${i}`);
    streams.push(nextTask(raw, j.session_token));
  }
  await Promise.all(streams.map((s) => s.task));
  const joinMs = ms(t0);
  const times: number[] = [];
  let bytes = 0;
  for (let k = 0; k < 30; k++) {
    const t = process.hrtime.bigint();
    bytes = (await get(url)).length;
    times.push(ms(t));
  }
  console.log(
    JSON.stringify({
      bench: 'metrics scrape',
      sites,
      phase: c.engine.phase,
      joinAndTaskMs: Math.round(joinMs),
      scrapeMedianMs: +median(times).toFixed(2),
      scrapeMaxMs: +Math.max(...times).toFixed(2),
      exposition_bytes: bytes,
    }),
  );
  for (const s of streams) s.stream.cancel();
  raw.close();
  await c.stop(200);
  await fs.rm(dir, { recursive: true, force: true });
}

async function dashboardWithVersions(versions: number): Promise<void> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedtune-bench-dash-'));
  const keys = await loadOrCreateCoordinatorKeys(path.join(dir, 'keys', 'coordinator.json'));
  const store = new FsCheckpointStore(dir, { signer: manifestSigner(keys.sign) });
  const t0 = process.hrtime.bigint();
  for (let v = 0; v <= versions; v++) {
    await store.commit({
      adapter: smallAdapter(v / 1000),
      adapterConfig: LORA,
      manifest: {
        runId: 'bench',
        round: v,
        attempt: 1,
        strategy: 'fedavg',
        participants: [],
        config: {},
        seeds: { run: 1 },
        baseModel: BENCH_BASE_MODEL,
        protocolVersion: 2,
        metrics:
          v === 0
            ? {}
            : { 'clients.train_loss': 2 / (1 + v / 100), 'heldout.eval_loss': 2.2 / (1 + v / 120), 'heldout.eval_accuracy': 0.5 + 0.4 * (v / versions) },
      },
    });
  }
  const makeMs = ms(t0);
  const token = 'bench-token-0123456789';
  const config = classicConfig({
    overrides: {
      server: { port: 0 },
      run: { dir, seed: 1, id: 'bench' }, // the run id the versions above were written with (checked on open)
      rounds: { total: versions },
      dashboard: { port: await freePort(), token },
      log: { level: 'silent' },
    },
  });
  const c = benchCoordinator(config, () => smallAdapter(0), LORA);
  await c.start();
  await c.done;
  const base = c.ops!.dashboardEndpoint!.url;
  let t = process.hrtime.bigint();
  const body = await get(`${base}/api/state`, { authorization: `Bearer ${token}` });
  const coldMs = ms(t);
  const warm: number[] = [];
  for (let k = 0; k < 10; k++) {
    t = process.hrtime.bigint();
    await get(`${base}/api/state`, { authorization: `Bearer ${token}` });
    warm.push(ms(t));
  }
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  const page = await browser.newPage();
  await page.goto(`${base}/`);
  await page.fill('#token', token);
  t = process.hrtime.bigint();
  await page.click('#login-form button');
  await page.waitForSelector(`#versions-table tr:nth-child(${versions + 2})`, { timeout: 60_000 });
  const pageMs = ms(t);
  await browser.close();
  console.log(
    JSON.stringify({
      bench: 'dashboard',
      versions: versions + 1,
      makeRunMs: Math.round(makeMs),
      stateColdMs: Math.round(coldMs),
      stateWarmMedianMs: +median(warm).toFixed(1),
      stateBytes: body.length,
      pageRenderMs: Math.round(pageMs),
    }),
  );
  await c.stop(200);
  await fs.rm(dir, { recursive: true, force: true });
}

async function main(): Promise<void> {
  await scrapeUnderRound(arg('sites', 500));
  await dashboardWithVersions(arg('versions', 1000));
}

main().then(
  () => process.exit(0),
  (e: Error) => {
    console.error(e);
    process.exit(1);
  },
);
