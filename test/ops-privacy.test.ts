// The operator's view of a DP run (coordinator/ops/privacy-status.ts) over the real coordinator, real gRPC and real
// SDK sites: a DP-FedAvg run with adaptive clipping and an ε budget, its Prometheus fedtune_privacy_* series taken
// at every commit and its dashboard state read over HTTP equal the latest manifest's figures exactly (ε, δ, the
// budget, C_{t+1}, z) and the rounds the budget allows equal the ledger's own count; the budget stops the run where
// that count said; a coordinator restarted on the run directory shows the same figures before any round (and, given
// a larger budget, the rounds it allows from version 4's ε while it waits for sites).
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import type { DashboardState } from '../coordinator/ops/dashboard/state';
import { PrivacyView } from '../coordinator/ops/privacy-status';
import { roundsLeft } from '../coordinator/privacy/plan';
import { CoordinatorMetrics } from '../coordinator/ops/metrics';
import type { Checkpoint } from '../coordinator/checkpoints/types';
import { classicConfig } from './classic-defaults';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { StepTrainer } from './dp-restart-kit';
import { freePort, startCoordinator, tempDir, type Harness } from './harness';
import { expectedSeries, expectedStatus, httpGet, privacySeries, sample, type PrivacySettings } from './ops-privacy-kit';
import { restartSuite, startRestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const Z = 0.5;
const e = (t: number): number => epsilonSpent([{ q: 1, z: Z, steps: t }], 1e-5);
/** Between ε after 4 and after 5 rounds: the run may commit 4 rounds. */
const BUDGET = (e(4) + e(5)) / 2;
const PRIVACY = {
  enabled: true,
  clipNorm: 1,
  noiseMultiplier: Z,
  delta: 1e-5,
  epsilonBudget: BUDGET,
  adaptiveClipping: true,
  clipTargetQuantile: 0.5,
  clipLearningRate: 0.2,
  clipCountNoise: 1,
};
const SETTINGS: PrivacySettings = { clipNorm: 1, noiseMultiplier: Z, delta: 1e-5, epsilonBudget: BUDGET, adaptiveClipping: true, q: 1 };

describe('ops: rounds the ε budget allows (the accountant’s largest k)', () => {
  it('is the k whose ε after k more rounds is within the budget and after k + 1 is not, over a mixed history', () => {
    const history = [
      { q: 1, z: 2, steps: 3 },
      { q: 0.02, z: 1.1, steps: 250 }, // ε 4.449 at 1e-5
    ];
    const after = (k: number, q: number, z: number): number => epsilonSpent([...history, { q, z, steps: k }], 1e-5);
    for (const [q, z, budget] of [
      [0.02, 1.1, 6],
      [0.005, 0.9, 8],
      [1, 1.5, 10],
    ] as const) {
      const k = roundsLeft((n) => after(n, q, z), budget);
      expect(after(k, q, z), `q ${q}`).to.be.at.most(budget);
      expect(after(k + 1, q, z), `q ${q}`).to.be.above(budget);
      expect(k, `q ${q}: a search past the first doublings`).to.be.above(q === 1 ? 0 : 100);
    }
    // A budget already spent (or not enough for one round) allows none.
    expect(roundsLeft((n) => after(n, 1, 1.5), after(0, 1, 1.5))).to.equal(0);
    // An unbounded ε (the ledger's null) never fits.
    expect(roundsLeft(() => null, 10)).to.equal(0);
  });
});

describe('ops: rounds the ε budget allows under SecAgg (the check before a round charges its worst case)', () => {
  // After 3 rounds at z 1, the latest a SecAgg round of 5 selected with threshold 3: a round may end with 3 of 5, each
  // site adding 1/5 of the noise, so the check before it charges z·√(3/5).
  const w = Math.sqrt(3 / 5);
  const eps = (segs: [number, number][]): number => epsilonSpent([{ q: 1, z: 1, steps: 3 }, ...segs.map(([z, steps]) => ({ q: 1, z, steps }))], 1e-5);
  // Between ε after 3 rounds at z and one at the worst case, and ε after 4 at z: 4 rounds if the last were charged z,
  // but the check before the 4th charges the worst case, so it stops there.
  const budget =
    (eps([[1, 4]]) +
      eps([
        [1, 3],
        [w, 1],
      ])) /
    2;
  const view = (secureAggregation: boolean): ReturnType<PrivacyView['status']> =>
    new PrivacyView(classicConfig({ overrides: { privacy: { enabled: true, clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: budget } } })).status({
      manifest: {
        round: 3,
        privacy: { history: [{ samplingRate: 1, noiseMultiplier: 1, rounds: 3 }] },
        ...(secureAggregation ? { secureAggregation: { threshold: 3, selected: ['a', 'b', 'c', 'd', 'e'] } } : {}),
      },
    } as unknown as Checkpoint);

  it('counts the last round at the worst case, and gives the rounds left if every round ends at the threshold', () => {
    expect(eps([[1, 4]])).to.be.below(budget);
    expect(
      eps([
        [1, 3],
        [w, 1],
      ]),
    ).to.be.above(budget);
    let atThreshold = 0;
    while (eps([[w, atThreshold + 1]]) <= budget) atThreshold++;
    expect(view(true)).to.include({ roundsLeft: 3, roundsLeftAtThreshold: atThreshold });
    expect(atThreshold).to.equal(2);
    // Without SecAgg every round is charged z, as before, and there is no threshold figure.
    const plain = view(false)!;
    expect(plain.roundsLeft).to.equal(4);
    expect(plain).to.not.have.property('roundsLeftAtThreshold');
  });

  it('has a series of its own under SecAgg, set with the latest version; none without SecAgg', async () => {
    const scrape = async (secureAggregation: boolean): Promise<Record<string, number>> => {
      const ck = {
        manifest: {
          version: 3,
          round: 3,
          metrics: {},
          privacy: { history: [{ samplingRate: 1, noiseMultiplier: 1, rounds: 3 }], epsilon: eps([]) },
          secureAggregation: { threshold: 3, selected: ['a', 'b', 'c', 'd', 'e'] },
        },
      } as unknown as Checkpoint;
      const view = new PrivacyView(
        classicConfig({ overrides: { privacy: { enabled: true, clipNorm: 1, noiseMultiplier: 1, delta: 1e-5, epsilonBudget: budget } } }),
      );
      let onPhase = (_p: string): void => undefined;
      const m = new CoordinatorMetrics(
        {
          on: (event: string, listener: unknown) => void (event === 'phase' && (onPhase = listener as (p: string) => void)),
          connectedSites: () => 0,
          latestCheckpoint: () => ck,
          roundsTotal: 10,
          privacy: (c) => view.status(c),
          secureAggregation,
        },
        false,
      );
      onPhase('WAITING_FOR_CLIENTS');
      return privacySeries(await m.registry.metrics());
    };
    const withSecAgg = await scrape(true);
    expect(withSecAgg).to.include({ fedtune_privacy_budget_rounds_left: 3, fedtune_privacy_budget_rounds_left_at_threshold: 2 });
    expect(await scrape(false)).to.not.have.property('fedtune_privacy_budget_rounds_left_at_threshold');
  });
});

describe('ops: a DP run’s privacy in the metrics and the dashboard (real gRPC)', function () {
  this.timeout(120_000);
  const suite = restartSuite();

  async function start(runDir: string, total: number, epsilonBudget = BUDGET): Promise<Harness> {
    const ops = { metrics: { port: await freePort() }, dashboard: { port: await freePort() } };
    const h = await startCoordinator(runDir, { total }, { privacy: { ...PRIVACY, epsilonBudget }, ...ops });
    suite.coordinators.push(h.coordinator);
    return h;
  }
  const scrapeOf = (h: Harness): Promise<string> => httpGet(`${h.coordinator.ops!.metricsEndpoint!.url}/metrics`);
  const stateOf = (h: Harness): Promise<DashboardState> =>
    httpGet(`${h.coordinator.ops!.dashboardEndpoint!.url}/api/state`).then((b) => JSON.parse(b) as DashboardState);

  it('equal the latest manifest after every commit, stop where the rounds left said, and come back from the run directory after a restart', async () => {
    const runDir = await tempDir('ops-privacy');
    suite.dirs.push(runDir);
    const store = new FsCheckpointStore(runDir, { readOnly: true });
    const h = await start(runDir, 6);
    // At each commit: the registry's text right then (its gauges are set by the commit event itself), and the
    // dashboard's state over HTTP (whatever version is latest when it answers: checked against its own).
    const scrapes: Promise<string>[] = [];
    const states: Promise<DashboardState>[] = [];
    h.coordinator.on('roundCommitted', () => {
      scrapes.push(h.coordinator.ops!.metrics!.scrape().then((s) => s.body));
      states.push(stateOf(h));
    });
    const finished = new Promise<{ version: number; reason: string }>((r) => h.coordinator.once('runFinished', r));
    const sites = startRestartSites(h.address, [new StepTrainer(0.3), new StepTrainer(-0.02)], suite.clients);
    expect((await h.coordinator.done).manifest.version).to.equal(4);
    await Promise.all(sites.runs);
    expect((await finished).reason).to.match(/^privacy budget: round 5 would take ε from /);

    const seen: number[] = [];
    for (const text of [...(await Promise.all(scrapes)), await scrapeOf(h)]) {
      const v = sample(text, 'fedtune_latest_version');
      seen.push(v);
      expect(privacySeries(text), `scrape at v${v}`).to.deep.equal(expectedSeries((await store.read(v)).manifest, SETTINGS));
    }
    expect(seen).to.deep.equal([0, 1, 2, 3, 4, 4]);
    for (const state of [...(await Promise.all(states)), await stateOf(h)]) {
      const v = state.run.latestVersion;
      expect(state.privacy, `dashboard at v${v}`).to.deep.equal(expectedStatus((await store.read(v)).manifest, SETTINGS));
    }
    // What the figures were: C moved every round (adaptive), and the rounds left counted down to the stop.
    const after = await Promise.all([0, 1, 2, 3, 4].map(async (v) => expectedStatus((await store.read(v)).manifest, SETTINGS)));
    expect(after.map((s) => s.roundsLeft)).to.deep.equal([4, 3, 2, 1, 0]);
    expect(after.map((s) => s.epsilon)).to.deep.equal([0, e(1), e(2), e(3), e(4)]);
    expect(new Set(after.map((s) => s.clipNorm)).size, 'C moved every round').to.equal(5);
    await h.coordinator.stop(200);

    // Restarted with more rounds but the same budget: before any round, the series and the panel are version 4's.
    const v4 = (await store.read(4)).manifest;
    const restored = async (h: Harness): Promise<string> => {
      const deadline = Date.now() + 10_000;
      let text = await scrapeOf(h);
      while (!(sample(text, 'fedtune_latest_version') === 4) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        text = await scrapeOf(h);
      }
      return text;
    };
    const h2 = await start(runDir, 8);
    let text = await restored(h2);
    expect(privacySeries(text)).to.deep.equal(expectedSeries(v4, SETTINGS));
    expect(sample(text, 'fedtune_rounds_committed_total')).to.equal(0);
    let state = await stateOf(h2);
    expect(state.run.latestVersion).to.equal(4);
    expect(state.privacy).to.deep.equal(expectedStatus(v4, SETTINGS));
    expect(state.privacy!.roundsLeft).to.equal(0);
    await h2.coordinator.stop(200);

    // Restarted with a larger budget and no site: waiting for the next round, ε is version 4's, the new budget allows 2 more.
    const wider = (e(6) + e(7)) / 2;
    const h3 = await start(runDir, 8, wider);
    text = await restored(h3);
    expect(sample(text, 'fedtune_round_phase{phase="WAITING_FOR_CLIENTS"}')).to.equal(1);
    expect(privacySeries(text)).to.deep.equal(expectedSeries(v4, { ...SETTINGS, epsilonBudget: wider }));
    expect(privacySeries(text).fedtune_privacy_budget_rounds_left).to.equal(2);
    state = await stateOf(h3);
    expect(state.privacy).to.deep.equal(expectedStatus(v4, { ...SETTINGS, epsilonBudget: wider }));
  });
});
