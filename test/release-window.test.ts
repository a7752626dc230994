// earlyStopping.window: the best version by the mean of the metric over the last w evaluated versions, naming the
// middle one. The decision over a synthetic sequence (pure); a real run over gRPC where the best single figure is
// a lucky spike (v2) and the window picks the steady stretch (v5): every manifest's record, the release pointer
// naming the middle version, the stop with its reason; a restart finishing a pointer move a crash cut short.
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { FederationClient, type RunSummary } from '../client-sdk/client';
import { bestSetBy, nextBest, stopReason, type EarlyStoppingSettings } from '../coordinator/evaluation/early-stopping';
import { reconcileRelease, readRelease, writeRelease } from '../coordinator/checkpoints/release';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import type { BestVersionRecord, Manifest } from '../coordinator/checkpoints/types';
import { ConfigError, loadConfig } from '../coordinator/config';
import { startCoordinator, tempDir, testIdentity } from './harness';
import { ScriptedEvalTrainer } from './fed-eval-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

/** Validation accuracy of version v: a spike at v2, a steady stretch around v5, then a slow fall (binary fractions, exact in any mean). */
const ACC = [NaN, 0.75, 0.9375, 0.75, 0.875, 0.890625, 0.875, 0.84375, 0.828125, 0.8125];
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

describe('early stopping over a window of evaluations (earlyStopping.window)', function () {
  this.timeout(90_000);
  let tmp: string;
  let runDir: string;
  let summaries: RunSummary[];
  const S: EarlyStoppingSettings = { metric: 'eval.accuracy', mode: 'max', patience: 2, minDelta: 0, window: 3 };

  before(async () => {
    tmp = await tempDir('release-window');
    runDir = path.join(tmp, 'run');
    const h = await startCoordinator(
      runDir,
      { total: 9, minClients: 2, minUpdates: 2 },
      { evaluation: { enabled: true, deadlineMs: 20_000 }, earlyStopping: { metric: 'eval.accuracy', mode: 'max', patience: 2, window: 3 } },
    );
    const clients = ['rw-a', 'rw-b'].map(
      (name) =>
        new FederationClient({
          address: h.address,
          name,
          trainer: new ScriptedEvalTrainer(1, 10, (level) => ({ eval_loss: 1 - ACC[level], eval_accuracy: ACC[level], eval_examples: 5 })),
          identity: testIdentity(name),
        }),
    );
    try {
      summaries = await Promise.all(clients.map((c) => c.run()));
      await h.coordinator.done;
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
      await h.coordinator.stop();
    }
  });
  after(() => fs.rm(tmp, { recursive: true, force: true }));

  it('decides over a synthetic sequence: centred means, partial windows at the start, skipped versions, another window not comparable', () => {
    const seq: (number | undefined)[] = [undefined, 0.8, 0.9, undefined, 0.8, 0.86];
    let best: BestVersionRecord | undefined;
    const trace: string[] = [];
    for (const [v, x] of seq.entries()) {
      best = nextBest(S, best, v, x === undefined ? {} : { 'eval.accuracy': x });
      trace.push(best ? `v${best.version}+${best.sinceBest}${bestSetBy(best, v) ? '*' : ''}` : '-');
    }
    // v1 alone; v2: mean of v1-v2 (0.85) names v1; v3 has no figure; v4: v1,v2,v4 (0.833) does not beat 0.85;
    // v5: v2,v4,v5 (0.853) does, naming v4. '*': the commit that set the record (the release pointer follows it).
    expect(trace).to.deep.equal(['-', 'v1+0*', 'v1+0*', 'v1+0', 'v1+1', 'v4+0*']);
    expect(best).to.deep.equal({
      metric: 'eval.accuracy',
      mode: 'max',
      version: 4,
      value: mean([0.9, 0.8, 0.86]),
      sinceBest: 0,
      window: 3,
      recent: [
        { version: 2, value: 0.9 },
        { version: 4, value: 0.8 },
        { version: 5, value: 0.86 },
      ],
    });
    expect(nextBest({ ...S, window: 1 }, best, 6, { 'eval.accuracy': 0.5 }), 'window 1 after 3: tracking starts again').to.deep.equal({
      metric: 'eval.accuracy',
      mode: 'max',
      version: 6,
      value: 0.5,
      sinceBest: 0,
    });
    expect(stopReason({ ...S, window: 5 }, { ...best!, sinceBest: 9 }), 'a record under another window never stops the run').to.equal(null);
    expect(() => loadConfig({ overrides: { earlyStopping: { window: 0 } } })).to.throw(ConfigError, 'earlyStopping.window');
  });

  it('a real run over gRPC: release names v5, the middle of the best window, not the spike at v2; stops after v8', async () => {
    const manifests = await new FsCheckpointStore(runDir, { readOnly: true }).list();
    expect(manifests.map((m) => m.version)).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(manifests.map((m) => m.metrics['eval.accuracy'])).to.deep.equal([undefined, ...ACC.slice(1, 9)]);
    // Means: v1 0.75 (naming v1), v2 0.844 (v1), v3 0.813, v4 0.854 (v3), v5 0.839, v6 0.880 (v5), v7 0.870, v8 0.849.
    expect(manifests.map((m) => (m.best ? `v${m.best.version}+${m.best.sinceBest}` : '-'))).to.deep.equal([
      '-',
      'v1+0',
      'v1+0',
      'v1+1',
      'v3+0',
      'v3+1',
      'v5+0',
      'v5+1',
      'v5+2',
    ]);
    const last = manifests[8].best!;
    expect(last.value).to.equal(mean([0.875, 0.890625, 0.875]));
    expect(last.recent).to.deep.equal([6, 7, 8].map((v) => ({ version: v, value: ACC[v] })));
    expect(manifests[8].config).to.deep.include({ earlyStopping: { metric: 'eval.accuracy', mode: 'max', patience: 2, minDelta: 0, window: 3 } });
    const reason =
      'early stopping: the mean of eval.accuracy over 3 evaluated versions has not risen for 2 evaluated versions since v5 (mean ' +
      `${mean([0.875, 0.890625, 0.875])} centred on v5); patience 2`;
    for (const s of summaries) expect(s).to.include({ finalVersion: 8, reason });
    expect(await readRelease(runDir)).to.equal(5);
    expect(await fs.readFile(path.join(runDir, 'latest'), 'utf8')).to.equal('v000008\n');
  });

  it('a restart finishes a pointer move cut short by a crash (to the middle version), and leaves a rollback alone', async () => {
    const dir = path.join(tmp, 'ptr');
    await fs.mkdir(dir);
    await writeRelease(dir, 3);
    const set = {
      metric: 'eval.accuracy',
      mode: 'max',
      version: 5,
      value: 0.87,
      sinceBest: 0,
      window: 3,
      recent: [5, 6, 7].map((version) => ({ version, value: 0.87 })),
    };
    expect(await reconcileRelease(dir, { version: 7, best: set } as unknown as Manifest)).to.equal(true);
    expect(await readRelease(dir)).to.equal(5);
    await writeRelease(dir, 2); // the operator's rollback, then a version that did not improve
    const kept = { ...set, sinceBest: 1, recent: [6, 7, 8].map((version) => ({ version, value: 0.86 })) };
    expect(await reconcileRelease(dir, { version: 8, best: kept } as unknown as Manifest)).to.equal(false);
    expect(await readRelease(dir)).to.equal(2);
  });
});
