// privacy.sampling 'poisson' over the real coordinator, real gRPC and real SDK sites. The run's sampling secret is
// written before the coordinator starts (as a restored backup would be), so the test knows every round's sample:
//   * only the sampled sites train, a round whose sample is empty still commits (noise only), one under
//     rounds.minUpdates too; the committed adapters equal a hand computation of the fixed-denominator mean
//     (Σ clipped updates + noise) / (q·N) bit for bit (the noise drawn from a known seed per round, as in
//     dp-noise-aware-restart);
//   * nothing under versions/ names a site; nothing that leaves the coordinator names or counts a round's sample
//     (ops/sample-secrecy.ts): the info log has no per-update line and says 'hidden' for the round's counts, the
//     Prometheus scrape has no series of the round's sites and none for the sampled sites' own gRPC methods, and
//     the dashboard's state, read while each round trains, shows every connected site as 'connected', and the
//     privacy series and panel hold exactly the latest version's ε, budget, rounds left, C, z and q, nothing that
//     counts a sample; ε in every manifest and in `checkpoints list` is the accountant's at the
//     configured q, z and round count, and privacy.epsilonBudget stops the run before the round that would pass it;
//   * a coordinator stopped mid-round and restarted, once without the round's spooled record (a crash between the
//     draw and its record) and once with it, sends the round's tasks to the same sampled sites.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { formatVersionTable } from '../coordinator/checkpoints/table';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { SAMPLING_KEY_FORMAT, samplingKeyFile } from '../coordinator/privacy/sampling';
import { clientIdFor } from '../coordinator/registry';
import { encodeKey, writeSecretJson } from '../proto/crypto/key-file';
import type { TensorList } from '../proto/tensors';
import type { DashboardState } from '../coordinator/ops/dashboard/state';
import { expectedAdapter, findSecret, names, privacy, Q, sampleValues, seededDp, SiteTrainer, Z } from './dp-sampling-kit';
import { freePort, smallAdapter, startCoordinator, tempDir, type Harness } from './harness';
import { expectedSeries, expectedStatus, httpGet, privacySeries, sample } from './ops-privacy-kit';
import { restartSuite, startRestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Every file under versions/, as text: what a run publishes. */
async function published(runDir: string): Promise<string> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push((await fs.readFile(p)).toString('latin1'));
    }
  };
  await walk(path.join(runDir, 'versions'));
  return out.join('\n');
}

describe('DP Poisson sampling over real gRPC: secret membership, fixed denominator, ε at q, the same draw after a restart', function () {
  this.timeout(120_000);
  const { dirs, clients, coordinators } = restartSuite();

  async function coordinator(
    runDir: string,
    runId: string,
    n: number,
    secret: Buffer,
    total: number,
    extra: Record<string, unknown>,
    committed: number,
    logger?: pino.Logger,
    ops: Record<string, unknown> = {},
  ): Promise<Harness> {
    if (committed === 0) await writeSecretJson(samplingKeyFile(runDir), { format: SAMPLING_KEY_FORMAT, secret: encodeKey(secret) });
    const h = await startCoordinator(
      runDir,
      { total, minClients: n, minUpdates: 2, maxAttempts: 2 },
      { run: { dir: runDir, id: runId, seed: 5 }, ...privacy(n, extra), ...ops },
      { strategy: seededDp(committed), ...(logger ? { logger } : {}) },
    );
    coordinators.push(h.coordinator);
    return h;
  }

  it('trains only the sampled sites, commits an empty or small sample, divides by q·N, names nobody, charges ε at q and stops at the budget', async () => {
    const n = 8;
    const runId = 'dpsample-a';
    // Round 1: one site (under rounds.minUpdates); round 2: nobody; round 3: at least two.
    const { secret, samples } = findSecret(runId, n, (s) => s[0].length === 1 && s[1].length === 0 && s[2].length >= 2, 3);
    const e = (t: number): number => epsilonSpent([{ q: Q, z: Z, steps: t }], 1e-5);
    const runDir = await tempDir('dpsample-a');
    dirs.push(runDir);
    const lines: string[] = [];
    const log = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString('utf8'));
        cb();
      },
    });
    const ops = { metrics: { port: await freePort() }, dashboard: { port: await freePort() } };
    const budget = (e(3) + e(4)) / 2;
    const settings = { clipNorm: 1, noiseMultiplier: Z, delta: 1e-5, epsilonBudget: budget, adaptiveClipping: false, q: Q };
    const h = await coordinator(runDir, runId, n, secret, 6, { epsilonBudget: budget }, 0, pino({ level: 'info' }, log), ops);
    const finished = new Promise<{ version: number; reason: string }>((r) => h.coordinator.once('runFinished', r));
    // The dashboard's state and the scrape while each round's tasks are out (the sampled sites training).
    const seen: Promise<[DashboardState, string]>[] = [];
    const dashboard = (): Promise<DashboardState> =>
      httpGet(`${h.coordinator.ops!.dashboardEndpoint!.url}/api/state`).then((b) => JSON.parse(b) as DashboardState);
    const scrape = (): Promise<string> => httpGet(`${h.coordinator.ops!.metricsEndpoint!.url}/metrics`);
    h.coordinator.on('roundStarted', () => seen.push(Promise.all([dashboard(), scrape()])));
    const trainers = names(n).map((_, i) => new SiteTrainer((i + 1) * 2 ** -12));
    const sites = startRestartSites(h.address, trainers, clients);
    expect((await h.coordinator.done).manifest.version).to.equal(3);
    await Promise.all(sites.runs);
    expect((await finished).reason).to.match(/^privacy budget: round 4 would take ε from /);

    // Only the sampled sites trained, each once in its rounds.
    for (const [i, t] of trainers.entries()) expect(t.rounds, `site-${i}`).to.deep.equal([1, 2, 3].filter((r) => samples[r - 1].includes(`site-${i}`)));

    const store = new FsCheckpointStore(runDir, { readOnly: true });
    const v0 = await store.read(0);
    const v1 = await store.read(1);
    const v2 = await store.read(2);
    expect(v0.adapter.map((t) => Array.from(t.data))).to.deep.equal(smallAdapter(0).map((t) => Array.from(t.data)));
    expect(v1.adapter.map((t) => Array.from(t.data))).to.deep.equal(expectedAdapter(v0.adapter, sampleValues(trainers, samples[0]), n, 1));
    // The empty sample: the noise alone, over the same denominator.
    expect(v2.adapter.map((t) => Array.from(t.data))).to.deep.equal(expectedAdapter(v1.adapter, [], n, 2));

    // The coordinator's info log names the sites that joined (the population), not who was in a round, nor how many.
    const roundLines = lines.filter((l) => !/"msg":"client (joined|left)"/.test(l));
    for (const name of names(n)) expect(roundLines.join('\n'), name).to.not.contain(clientIdFor(name));
    expect(lines.filter((l) => /"msg":"(update accepted|resumed upload answered)/.test(l))).to.deep.equal([]);
    const fields = (msg: string, keys: string[]): unknown[] =>
      lines.filter((l) => l.includes(`"msg":"${msg}"`)).map((l) => keys.map((k) => (JSON.parse(l) as Record<string, unknown>)[k]));
    expect(fields('round started', ['round', 'selected', 'carried'])).to.deep.equal([1, 2, 3].map((r) => [r, 'hidden', 'hidden']));
    expect(fields('round committed', ['round', 'participants'])).to.deep.equal([1, 2, 3].map((r) => [r, 'hidden']));
    // The scrape and the dashboard, read while each round trained and once more at the end.
    const views = [...(await Promise.all(seen)), [await dashboard(), await scrape()] as [DashboardState, string]];
    expect(views).to.have.length(4);
    for (const [state, metrics] of views) {
      for (const series of [
        'fedtune_site_selections_total',
        'fedtune_updates_accepted_total',
        'fedtune_round_sites_selected',
        'fedtune_round_updates_accepted',
      ])
        expect(metrics).to.not.contain(series);
      expect(metrics).to.not.match(/method="(DownloadAdapter|UploadUpdate|ReportMetrics)"/);
      expect(metrics).to.contain('fedtune_grpc_server_handled_total{method="Join",code="OK"} 8'); // the population stays visible
      expect(state.run.sampleHidden).to.equal(true);
      expect(state.sites.map((x) => x.name)).to.deep.equal(names(n));
      for (const x of state.sites) {
        expect(x.rounds, x.name).to.equal('hidden');
        // While a round trains every site reads 'connected'; once the run is over, it may have left.
        expect(x.state, x.name).to.be.oneOf(state.run.phase === 'FINISHED' ? ['connected', 'finished'] : ['connected']);
      }
      for (const v of state.versions) expect(v.participants, `v${v.version}`).to.equal(v.version === 0 ? 0 : 'hidden');
      for (const name of names(n)) expect(metrics, name).to.not.contain(clientIdFor(name));
      // The privacy series and panel (ops/privacy-status.ts): exactly ε, δ, the budget, the rounds it allows, C, z
      // and q of the latest version, the same whatever the sample was; nothing else, so no count of a round's sites.
      const vm = sample(metrics, 'fedtune_latest_version');
      expect(privacySeries(metrics), `scrape at v${vm}`).to.deep.equal(expectedSeries((await store.read(vm)).manifest, settings));
      expect(privacySeries(metrics).fedtune_privacy_budget_rounds_left).to.equal(3 - vm);
      const vs = state.run.latestVersion;
      expect(state.privacy, `dashboard at v${vs}`).to.deep.equal(expectedStatus((await store.read(vs)).manifest, settings));
    }
    expect(views[3][1]).to.contain('fedtune_rounds_committed_total 3');
    // The progress line (coordinator/ops/progress-log.ts) of a sampled version says its participants are hidden, not "0".
    const progress = lines.filter((l) => /version \d of 6 committed/.test(l)).map((l) => (JSON.parse(l) as { participants: unknown }).participants);
    expect(progress).to.deep.equal(['hidden', 'hidden', 'hidden']);
    // …and says ε spent and the budget, as the version's manifest records them.
    const spent = lines
      .filter((l) => /version \d of 6 committed/.test(l))
      .map((l) => JSON.parse(l) as { msg: string; privacy: unknown })
      .map((l) => [l.msg, l.privacy]);
    expect(spent).to.deep.equal(
      [1, 2, 3].map((v) => [
        `version ${v} of 6 committed (ε ${e(v).toPrecision(4)} of budget ${budget} at δ = 0.00001)`,
        { epsilon: e(v), epsilonBudget: budget, delta: 1e-5 },
      ]),
    );
    const text = await published(runDir);
    for (const name of names(n)) {
      expect(text, name).to.not.contain(name);
      expect(text, name).to.not.contain(clientIdFor(name));
    }
    for (let v = 1; v <= 3; v++) {
      const m = (await store.read(v)).manifest;
      expect(m.participants).to.deep.equal([]);
      expect(Object.keys(m.seeds).sort()).to.deep.equal(['loraInit', 'run']);
      expect(Object.keys(m.metrics).filter((k) => k.startsWith('clients.'))).to.deep.equal([]);
      expect(m.privacy).to.deep.include({
        samplingRate: Q,
        sampling: { method: 'poisson', rate: Q, population: n, denominator: Q * n },
        rounds: v,
        epsilon: e(v),
        noiseAddedBy: 'coordinator',
      });
      expect(m.privacy!.epsilon!).to.be.below((e(3) + e(4)) / 2);
    }
    const table = formatVersionTable(await store.list()).split('\n');
    expect(table[4]).to.contain(`${e(3).toFixed(3)}@0.00001`);
    expect(table[4].split(/\s+/).slice(3, 5)).to.deep.equal(['hidden', 'hidden']); // clients, examples
  });

  it('a coordinator stopped mid-round and restarted (without, then with, the round spooled) sends the round to the same sampled sites', async () => {
    const n = 6;
    const runId = 'dpsample-b';
    const { secret, samples } = findSecret(runId, n, (s) => s.every((x) => x.length >= 1), 3);
    const runDir = await tempDir('dpsample-b');
    dirs.push(runDir);
    const started = (h: Harness, round: number): Promise<string[]> =>
      new Promise((r) => h.coordinator.on('roundStarted', (ev: { round: number; selected: string[] }) => ev.round === round && r(ev.selected)));
    const asNames = (ids: readonly string[]): string[] => names(n).filter((s) => ids.includes(clientIdFor(s)));
    const all: SiteTrainer[][] = [];
    const sitesOf = (h: Harness, slowRound: number) => {
      // The sites of round `slowRound` train slowly, so the stop lands while its tasks are out.
      const trainers = names(n).map(
        (_, i) =>
          new (class extends SiteTrainer {
            override train(g: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
              return plan.round === slowRound
                ? new Promise((r, j) => setTimeout(() => super.train(g, plan, signal).then(r, j), 3_000))
                : super.train(g, plan, signal);
            }
          })((i + 1) * 2 ** -12),
      );
      all.push(trainers);
      return startRestartSites(h.address, trainers, clients);
    };

    // First process: round 1 commits; stopped once round 2's tasks are out. Its spool is then removed, as if the
    // process had died between the draw and its record.
    const h1 = await coordinator(runDir, runId, n, secret, 3, {}, 0);
    const r2a = started(h1, 2);
    const s1 = sitesOf(h1, 2);
    expect(asNames(await r2a)).to.deep.equal(samples[1]);
    await h1.coordinator.stop(200);
    await s1.stop();
    await fs.rm(path.join(runDir, 'spool'), { recursive: true, force: true });
    const store = new FsCheckpointStore(runDir, { readOnly: true });
    expect((await store.latest())!.manifest.version).to.equal(1);

    // Second process: round 2 drawn again from the secret, the same sites; stopped once round 3's tasks are out.
    const h2 = await coordinator(runDir, runId, n, secret, 3, {}, 1);
    const r2b = started(h2, 2);
    const r3a = started(h2, 3);
    const s2 = sitesOf(h2, 3);
    expect(asNames(await r2b)).to.deep.equal(samples[1]);
    expect(asNames(await r3a)).to.deep.equal(samples[2]);
    await h2.coordinator.stop(200);
    await s2.stop();
    expect((await store.latest())!.manifest.version).to.equal(2);

    // Third process: round 3 resumed from its spooled draw, the same sites; the run completes.
    const h3 = await coordinator(runDir, runId, n, secret, 3, {}, 2);
    const r3b = started(h3, 3);
    const s3 = sitesOf(h3, 0);
    expect(asNames(await r3b)).to.deep.equal(samples[2]);
    expect((await h3.coordinator.done).manifest.version).to.equal(3);
    await Promise.all(s3.runs);

    // Across the three processes no site outside a round's sample was ever asked to train in it.
    for (const trainers of all)
      for (const [i, t] of trainers.entries()) for (const r of t.rounds) expect(samples[r - 1], `site-${i} in round ${r}`).to.include(`site-${i}`);
    for (let v = 1; v <= 3; v++) {
      const m = (await store.read(v)).manifest;
      expect(m.participants).to.deep.equal([]);
      expect(m.privacy).to.deep.include({ samplingRate: Q, rounds: v, epsilon: epsilonSpent([{ q: Q, z: Z, steps: v }], 1e-5) });
      expect(m.privacy!.sampling).to.deep.equal({ method: 'poisson', rate: Q, population: n, denominator: Q * n });
    }
  });
});
