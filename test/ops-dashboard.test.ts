// The dashboard in headless Chromium (Debian's chromium driven by playwright-core) after a real 2-round
// federation over gRPC: the page loads with no console errors, the plots show 2 rounds with train, validation
// and held-out series, sites and versions (signed) are listed; with a token the data needs it; a DP run shows its
// privacy panel (ε spent / budget, rounds the budget allows, C, z, q, and ε over the versions), a plain run none.
// FEDTUNE_TEST_UPDATE_SCREENSHOT=1 rewrites docs/dashboard.png (the README's screenshot).
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import pino from 'pino';
import { chromium, type Browser, type Page } from 'playwright-core';
import { Coordinator } from '../coordinator/coordinator';
import { ConfigError } from '../coordinator/config';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { FederationClient } from '../client-sdk/client';
import type { TensorList } from '../proto/tensors';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { ConstantTrainer, freePort, smallAdapter, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CHROMIUM = '/usr/bin/chromium';
// As the environment notes say: without the background-networking flags Chromium tries the closed network.
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** A site that also reports local validation (eval_loss, eval_accuracy) that improves with the version. */
class EvalTrainer extends ConstantTrainer {
  private evals = 0;
  async evaluate(_adapter: TensorList): Promise<Record<string, number>> {
    this.evals++;
    return { eval_loss: 2 / (this.evals + 1), eval_accuracy: 0.5 + 0.1 * this.evals };
  }
}

async function newPage(browser: Browser): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  return { page, errors };
}

describe('ops: dashboard in headless Chromium', function () {
  this.timeout(90_000);
  let browser: Browser;
  let dir: string;
  let coordinator: Coordinator;
  const sites: FederationClient[] = [];
  const runs: Promise<unknown>[] = [];

  before(async () => {
    await fs.access(CHROMIUM).catch(() => {
      throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)`);
    });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS, headless: true });
  });
  after(async () => {
    await browser?.close();
  });
  afterEach(async () => {
    for (const s of sites.splice(0)) await s.stop().catch(() => undefined);
    runs.length = 0;
    await coordinator?.stop(200);
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function run(dashboard: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<string> {
    dir = await tempDir('ops-dashboard');
    const port = await freePort();
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir, seed: 9, id: 'dashboard-demo' },
        rounds: { total: 2, minClients: 2, minUpdates: 2, clientsPerRound: 100, deadlineMs: 20_000, maxAttempts: 2 },
        dashboard: { port, ...dashboard },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
        ...extra,
      },
    });
    coordinator = new Coordinator({
      config,
      initialAdapter: () => smallAdapter(0),
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 'test', sha256: '0'.repeat(64) },
      evaluator: async (_a, version) => ({ eval_loss: 3 / (version + 1), eval_accuracy: 0.6 + 0.1 * version }),
      logger: pino({ level: 'silent' }),
    });
    const { address } = await coordinator.start();
    for (const [name, value] of [
      ['hospital-north', 0.8],
      ['hospital-south', 0.4],
    ] as const) {
      const s = new FederationClient({
        address,
        name,
        identity: testIdentity(name),
        trainer: new EvalTrainer(value, 10),
        backoff: { initialMs: 20, maxMs: 200, factor: 2 },
      });
      sites.push(s);
      runs.push(s.run().catch(() => undefined));
    }
    expect((await coordinator.done).manifest.version).to.equal(2);
    await Promise.all(runs); // each site's run ends with the run, and closes its channel
    return coordinator.ops!.dashboardEndpoint!.url;
  }

  it('shows progress, sites, per-round plots and signed versions, with no console errors', async () => {
    const url = await run({});
    const { page, errors } = await newPage(browser);
    const res = await page.goto(`${url}/`);
    expect(res!.status()).to.equal(200);
    await page.waitForSelector('#loss-chart[data-rounds="2"]', { timeout: 15_000 });
    expect(await page.textContent('#loss-chart .caption')).to.equal('Loss per round (2 rounds)');
    expect(await page.textContent('#accuracy-chart .caption')).to.equal('Accuracy per round (2 rounds)');
    // train (sites), validation (sites), held-out: one line each.
    expect(
      await page.$$eval('#loss-chart polyline', (ls: { getAttribute(name: string): string | null }[]) => ls.map((l) => l.getAttribute('data-metric'))),
    ).to.deep.equal(['clients.eval_loss', 'clients.train_loss', 'heldout.eval_loss']);
    expect(await page.$$eval('#loss-chart .xtick', (ts) => ts.map((t) => t.textContent))).to.deep.equal(['0', '1', '2']);
    expect(await page.textContent('#progress-text'))
      .to.contain('version 2 of 2')
      .and.contain('phase FINISHED');
    const siteRows = await page.$$eval('#sites-table tr', (rs) => rs.slice(1).map((r) => [...r.children].map((c) => c.textContent)));
    // The run is over: the sites' runs ended and closed their channels after it finished, so both show as
    // finished (green), not as disconnected (red).
    expect(siteRows).to.deep.equal([
      ['hospital-north', 'finished', 'test', '2'],
      ['hospital-south', 'finished', 'test', '2'],
    ]);
    expect(await page.$$eval('#sites-table tr', (rs) => rs.slice(1).map((r) => r.children[1]!.className))).to.deep.equal(['ok', 'ok']);
    const versionRows = await page.$$eval('#versions-table tr', (rs) => rs.slice(1).map((r) => [r.children[0]!.textContent, r.children[10]!.textContent]));
    expect(versionRows).to.deep.equal([
      ['2', 'signed'],
      ['1', 'signed'],
      ['0', 'signed'],
    ]);
    // Not a DP run: no privacy panel.
    expect(await page.isHidden('#privacy')).to.equal(true);
    expect(errors).to.deep.equal([]);
    const shot =
      process.env.FEDTUNE_TEST_UPDATE_SCREENSHOT === '1'
        ? path.resolve(__dirname, '..', '..', 'docs', 'dashboard.png')
        : path.join(os.tmpdir(), 'fedtune-dashboard.png');
    await fs.mkdir(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot, fullPage: true });
    await page.close();
  });

  it('with dashboard.token, serves data only to a bearer of the token', async () => {
    const token = 'tok-0123456789abcdef';
    const url = await run({ token });
    const plain = await fetch(`${url}/api/state`);
    expect(plain.status).to.equal(401);
    expect((await fetch(`${url}/api/state`, { headers: { authorization: 'Bearer wrong-token-000000' } })).status).to.equal(401);
    const ok = await fetch(`${url}/api/state`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).to.equal(200);
    const state = (await ok.json()) as { run: { latestVersion: number } };
    expect(state.run.latestVersion).to.equal(2);
    expect(state).to.not.have.property('privacy'); // not a DP run
    expect((await fetch(`${url}/api/state`, { method: 'POST' })).status).to.equal(405);

    const { page, errors } = await newPage(browser);
    await page.goto(`${url}/`);
    await page.waitForSelector('#token', { state: 'visible' });
    expect(await page.isVisible('#sites')).to.equal(false);
    await page.fill('#token', token);
    await page.click('#login-form button');
    await page.waitForSelector('#loss-chart[data-rounds="2"]', { timeout: 15_000 });
    // The browser logs the first 401 as a failed resource load; nothing else may be logged.
    expect(errors.filter((e) => !/status of 401/.test(e))).to.deep.equal([]);
    await page.close();
  });

  it('shows a DP run’s privacy panel: ε spent / budget at δ, the rounds the budget allows, C, z, q', async () => {
    const e = (t: number): number => epsilonSpent([{ q: 1, z: 1, steps: t }], 1e-5);
    const budget = (e(3) + e(4)) / 2; // after the run's 2 rounds, 1 more fits
    const privacy = { enabled: true, clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: budget };
    // Every tensor travels (ConstantTrainer moves A too): 'auto' would pick FFA-LoRA under privacy.enabled.
    const url = await run({}, { privacy, lora: { aggregation: 'fedit' } });
    const { page, errors } = await newPage(browser);
    await page.goto(`${url}/`);
    await page.waitForSelector('#privacy-table', { timeout: 15_000 });
    const rows = await page.$$eval('#privacy-table tr', (rs: { children: ArrayLike<{ textContent: string | null }> }[]) =>
      rs.slice(1).map((r) => Array.from(r.children, (c) => c.textContent)),
    );
    expect(rows).to.deep.equal([
      ['ε spent / budget', `${e(2).toPrecision(4)} / ${budget} at δ = 0.00001`],
      ['rounds the budget allows', '1'],
      ['clip norm C', '1.000 (fixed)'],
      ['noise multiplier z', '1'],
      ['sampling rate q', '1'],
    ]);
    expect(await page.isVisible('#privacy')).to.equal(true);
    // ε over the versions (0, 1, 2: what each manifest stamps) beside the budget, one point per version each.
    const chart = await page.$eval('#privacy-chart', (c: { getAttribute(n: string): string | null; textContent: string | null }) => ({
      rounds: c.getAttribute('data-rounds'),
      series: c.getAttribute('data-series'),
      caption: c.textContent?.split('ε spent per round')[1]?.split(')')[0],
    }));
    expect(chart).to.deep.equal({ rounds: '2', series: '2', caption: ' (2 rounds' });
    const dots = await page.$$eval('#privacy-chart circle title', (ts: { textContent: string | null }[]) => ts.map((t) => t.textContent));
    const fmt = (v: number): string => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(4));
    expect(dots).to.deep.equal([
      ...[0, 1, 2].map((r) => `privacy.epsilon round ${r}: ${fmt(r === 0 ? 0 : e(r))}`),
      ...[0, 1, 2].map((r) => `privacy.epsilon_budget round ${r}: ${fmt(budget)}`),
    ]);
    expect(errors).to.deep.equal([]);
    await page.screenshot({ path: path.join(os.tmpdir(), 'fedtune-dashboard-dp.png'), fullPage: true });
    await page.close();
  });

  it('refuses a dashboard off loopback without a token', () => {
    expect(() => classicConfig({ overrides: { dashboard: { port: 8080, host: '0.0.0.0' } } }))
      .to.throw(ConfigError)
      .with.property(
        'message',
        'invalid configuration: dashboard.host 0.0.0.0 is not a loopback address: set dashboard.token (at least 16 characters) so the dashboard asks for it',
      );
  });
});
