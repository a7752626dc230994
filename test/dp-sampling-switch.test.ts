// The guard in round-open.ts against resuming a selection spooled before a switch to privacy.sampling 'poisson',
// over the real coordinator, real gRPC and real SDK sites, with a real stop and restart (as the restart suites do):
// a DP run under 'selection' (clientsPerRound 3 of 6) is stopped while round 1 waits for its last selected site, two
// updates already accepted and spooled; the coordinator is restarted on the same run directory with 'poisson'. The
// spooled selection was public (it would have been named in the manifest), so the round must be drawn again from
// the secret: its tasks go to the Poisson sample, a spooled update of a sampled site is carried (that site is not
// asked to train again), one of a site outside the sample counts for nothing, and the version is the
// fixed-denominator mean (Σ + noise)/(q·N) of the sample bit for bit, naming nobody, charged at q.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { epsilonSpent } from '../coordinator/privacy/accountant';
import { SAMPLING_KEY_FORMAT, samplingKeyFile } from '../coordinator/privacy/sampling';
import { clientIdFor } from '../coordinator/registry';
import { encodeKey, writeSecretJson } from '../proto/crypto/key-file';
import type { TensorList } from '../proto/tensors';
import { expectedAdapter, findSecret, names, privacy, Q, sampleValues, seededDp, SiteTrainer, Z } from './dp-sampling-kit';
import { startCoordinator, tempDir } from './harness';
import { restartSuite, startRestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** A SiteTrainer whose round-1 training is held (until the coordinator stops it, at most 15 s) while `held()` says so. */
class HeldTrainer extends SiteTrainer {
  constructor(
    value: number,
    private readonly held: () => boolean,
  ) {
    super(value);
  }
  override async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal): Promise<TrainOutcome> {
    const end = Date.now() + 15_000;
    while (plan.round === 1 && this.held() && Date.now() < end) {
      signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, 10));
    }
    return super.train(global, plan, signal);
  }
}

describe("DP Poisson sampling over real gRPC: a selection spooled before the switch to 'poisson' is drawn again", function () {
  this.timeout(120_000);
  const { dirs, clients, coordinators } = restartSuite();

  it('a round stopped under selection and restarted under poisson goes to the secret sample, carries only sampled updates, and divides by q·N', async () => {
    const n = 6;
    const runId = 'dpsample-switch';
    const runDir = await tempDir('dpsample-switch');
    dirs.push(runDir);
    const value = (i: number): number => (i + 1) * 2 ** -12;
    const asNames = (ids: readonly string[]): string[] => names(n).filter((s) => ids.includes(clientIdFor(s)));
    const rounds = { total: 1, minClients: n, minUpdates: 2, maxAttempts: 3 };

    // First process: DP under 'selection', 3 of the 6 sites a round. The last selected site is held; the others'
    // updates are accepted (and spooled), then the coordinator is stopped mid-round.
    const dp = { enabled: true, clipNorm: 1, noiseMultiplier: Z, delta: 1e-5 };
    const h1 = await startCoordinator(
      runDir,
      { ...rounds, clientsPerRound: 3 },
      { run: { dir: runDir, id: runId, seed: 5 }, privacy: dp },
      { strategy: seededDp(0) },
    );
    coordinators.push(h1.coordinator);
    let selection: string[] = [];
    h1.coordinator.on('roundStarted', (e) => (selection = asNames(e.selected)));
    let accepted = 0;
    const twoAccepted = new Promise<void>((r) => h1.coordinator.on('updateAccepted', () => ++accepted === 2 && r()));
    const s1 = startRestartSites(
      h1.address,
      names(n).map((name, i) => new HeldTrainer(value(i), () => name === selection[2])),
      clients,
    );
    await twoAccepted;
    await h1.coordinator.stop(200);
    await s1.stop();
    expect(selection).to.have.length(3);
    const spooled = selection.slice(0, 2); // their updates were accepted and spooled; selection[2] was held
    expect(names(n).filter((_, i) => s1.trainers[i].rounds.length > 0)).to.deep.equal(spooled);
    const store = new FsCheckpointStore(runDir, { readOnly: true });
    expect((await store.latest())!.manifest.version).to.equal(0);
    expect(await fs.readdir(path.join(runDir, 'spool'))).to.not.deep.equal([]);

    // The secret of the second process: its round-1 sample holds one spooled site (carried), not the other (its
    // update must count for nothing), and a site outside the old selection.
    const { secret, samples } = findSecret(runId, n, ([s]) => s.filter((x) => spooled.includes(x)).length === 1 && s.some((x) => !selection.includes(x)), 1);
    const sample = samples[0];
    await writeSecretJson(samplingKeyFile(runDir), { format: SAMPLING_KEY_FORMAT, secret: encodeKey(secret) });

    // Second process: the same run directory, now 'poisson'.
    const h2 = await startCoordinator(runDir, rounds, { run: { dir: runDir, id: runId, seed: 5 }, ...privacy(n) }, { strategy: seededDp(0) });
    coordinators.push(h2.coordinator);
    const started: string[][] = [];
    h2.coordinator.on('roundStarted', (e) => started.push(asNames(e.selected)));
    const trainers = names(n).map((_, i) => new SiteTrainer(value(i)));
    const s2 = startRestartSites(h2.address, trainers, clients);
    expect((await h2.coordinator.done).manifest.version).to.equal(1);
    await Promise.all(s2.runs);

    // Round 1 went to the secret sample, not to the spooled selection; the carried site did not train again.
    expect(started).to.deep.equal([sample]);
    expect(sample).to.not.deep.equal(selection);
    const carried = sample.filter((x) => spooled.includes(x));
    for (const [i, t] of trainers.entries()) {
      const name = `site-${i}`;
      expect(t.rounds, name).to.deep.equal(sample.includes(name) && !carried.includes(name) ? [1] : []);
    }
    // (Σ over the sample, the carried update included and the other spooled one not, + noise)/(q·N), bit for bit.
    const v0 = await store.read(0);
    const v1 = await store.read(1);
    expect(v1.adapter.map((t) => Array.from(t.data))).to.deep.equal(expectedAdapter(v0.adapter, sampleValues(trainers, sample), n, 1));
    expect(v1.manifest.participants).to.deep.equal([]);
    expect(v1.manifest.privacy).to.deep.include({ samplingRate: Q, rounds: 1, epsilon: epsilonSpent([{ q: Q, z: Z, steps: 1 }], 1e-5) });
    expect(v1.manifest.privacy!.sampling).to.deep.equal({ method: 'poisson', rate: Q, population: n, denominator: Q * n });
  });
});
