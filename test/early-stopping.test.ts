// Early stopping and the release pointer. The decision over a synthetic metric sequence (pure); a real run over
// gRPC that stops at the expected version with the reason in its log and RunFinished, `release` naming the best
// version and `latest` the last; the operator commands (`checkpoints export … best|release`, `checkpoints release`
// / `rollback`, refusing a version that does not verify) and `fedtune verify`'s check of the pointer; the pointer's
// writes stopped at every step (crash hook) and a restarted coordinator finishing a pointer move a crash cut short.
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { FederationClient, type RunSummary } from '../client-sdk/client';
import { nextBest, stopReason, type EarlyStoppingSettings } from '../coordinator/evaluation/early-stopping';
import { reconcileRelease, writeRelease, readRelease } from '../coordinator/checkpoints/release';
import { FsCheckpointStore } from '../coordinator/checkpoints/fs-store';
import { verifyRun } from '../coordinator/checkpoints/verify';
import type { BestVersionRecord, Manifest } from '../coordinator/checkpoints/types';
import type { CrashHook } from '../proto/durable-file';
import { ConfigError, loadConfig } from '../coordinator/config';
import { startCoordinator, tempDir, testIdentity } from './harness';
import { ScriptedEvalTrainer } from './fed-eval-kit';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');
const cli = (args: string[]): Promise<{ code: number; out: string }> =>
  promisify(execFile)(process.execPath, [CLI, ...args], { timeout: 30_000 }).then(
    (r) => ({ code: 0, out: r.stdout + r.stderr }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );

/** The federated loss of version v in the scripted run: best at v2, then two versions without improvement. */
const LOSS = [NaN, 0.9, 0.7, 0.705, 0.69, 0.5, 0.4];

describe('early stopping and the release pointer', function () {
  this.timeout(90_000);
  let tmp: string;
  let runDir: string;
  let summaries: RunSummary[];
  const logs: string[] = [];

  before(async () => {
    tmp = await tempDir('early-stop');
    runDir = path.join(tmp, 'run');
    // patience 2, minDelta 0.02: v3 (0.705) and v4 (0.69, not better than 0.7 by more than 0.02) do not improve.
    const h = await startCoordinator(
      runDir,
      { total: 6, minClients: 2, minUpdates: 2 },
      { evaluation: { enabled: true, deadlineMs: 20_000 }, earlyStopping: { metric: 'eval.loss', mode: 'min', patience: 2, minDelta: 0.02 } },
      { logger: pino({ level: 'info' }, { write: (l: string) => logs.push(l) }) },
    );
    const clients = ['es-a', 'es-b'].map(
      (name) =>
        new FederationClient({
          address: h.address,
          name,
          trainer: new ScriptedEvalTrainer(1, 10, (level) => ({ eval_loss: LOSS[level], eval_examples: 5 })),
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

  it('decides over a synthetic sequence: best by mode and minDelta, versions without the metric skipped, stop at patience', () => {
    const s: EarlyStoppingSettings = { metric: 'eval.accuracy', mode: 'max', patience: 3, minDelta: 0.01 };
    const seq: (number | undefined)[] = [undefined, 0.5, 0.6, 0.605, undefined, 0.59, 0.62, 0.615, 0.6, 0.629, 0.7];
    let best: BestVersionRecord | undefined;
    const trace: string[] = [];
    for (const [v, x] of seq.entries()) {
      best = nextBest(s, best, v, x === undefined ? { other: 1 } : { 'eval.accuracy': x });
      trace.push(best ? `v${best.version}+${best.sinceBest}` : '-');
      if (stopReason(s, best)) break;
    }
    // v3 (0.605) is within minDelta of 0.6; v4 has no figure; v6 improves; v7, v8, v9 (0.629 < 0.63) do not: stop at v9.
    expect(trace).to.deep.equal(['-', 'v1+0', 'v2+0', 'v2+1', 'v2+1', 'v2+2', 'v6+0', 'v6+1', 'v6+2', 'v6+3']);
    expect(stopReason(s, best)).to.equal(
      'early stopping: eval.accuracy has not risen by more than 0.01 for 3 evaluated versions since v6 (eval.accuracy 0.62); patience 3',
    );
    // A record kept under another metric is not comparable: tracking starts again.
    expect(nextBest({ ...s, metric: 'eval.loss' }, best, 11, { 'eval.loss': 2 })).to.deep.equal({
      metric: 'eval.loss',
      mode: 'max',
      version: 11,
      value: 2,
      sinceBest: 0,
    });
    expect(stopReason({ ...s, patience: 0 }, { ...best!, sinceBest: 99 }), 'patience 0 never stops').to.equal(null);
  });

  it('refuses a patience on an eval.* metric without federated evaluation, naming both keys', () => {
    expect(() => loadConfig({ overrides: { earlyStopping: { patience: 2 } } })).to.throw(
      ConfigError,
      'earlyStopping.metric eval.loss comes from federated evaluation: set evaluation.enabled (or pick a heldout.* metric)',
    );
    expect(loadConfig({ overrides: { earlyStopping: { patience: 2, metric: 'heldout.eval_loss' } } }).earlyStopping.patience).to.equal(2);
  });

  it('a real run over gRPC stops at v4 (best v2, two versions without improvement) and says why; release names v2, latest v4', async () => {
    const store = new FsCheckpointStore(runDir, { readOnly: true });
    const manifests = await store.list();
    expect(manifests.map((m) => m.version)).to.deep.equal([0, 1, 2, 3, 4]);
    expect(manifests.map((m) => m.metrics['eval.loss'])).to.deep.equal([undefined, 0.9, 0.7, 0.705, 0.69]);
    expect(manifests.map((m) => (m.best ? `v${m.best.version}+${m.best.sinceBest}` : '-'))).to.deep.equal(['-', 'v1+0', 'v2+0', 'v2+1', 'v2+2']);
    const reason = 'early stopping: eval.loss has not fallen by more than 0.02 for 2 evaluated versions since v2 (eval.loss 0.7); patience 2';
    for (const s of summaries) expect(s).to.include({ finalVersion: 4, reason });
    expect(logs.some((l) => (JSON.parse(l) as { msg: string }).msg === reason)).to.equal(true);
    expect(await fs.readFile(path.join(runDir, 'latest'), 'utf8')).to.equal('v000004\n');
    expect(await fs.readFile(path.join(runDir, 'release'), 'utf8')).to.equal('v000002\n');
    expect((await verifyRun(runDir)).ok).to.equal(true);
  });

  it('exports best and release; `checkpoints release` / `rollback` moves the pointer, refusing a version that does not verify', async () => {
    const v2 = await fs.readFile(path.join(runDir, 'versions', 'v000002', 'adapter_model.safetensors'));
    for (const ref of ['best', 'release']) {
      const out = path.join(tmp, `export-${ref}`);
      const r = await cli(['checkpoints', 'export', runDir, ref, out]);
      expect(r.code, r.out).to.equal(0);
      expect((await fs.readFile(path.join(out, 'adapter_model.safetensors'))).equals(v2), ref).to.equal(true);
      expect((JSON.parse(await fs.readFile(path.join(out, 'manifest.json'), 'utf8')) as Manifest).version).to.equal(2);
    }
    let r = await cli(['checkpoints', 'rollback', runDir, '1']);
    expect(r.code, r.out).to.equal(0);
    expect(r.out.trim()).to.equal('release: v000002 -> v000001');
    expect(await readRelease(runDir)).to.equal(1);
    expect((await verifyRun(runDir)).ok).to.equal(true);
    r = await cli(['checkpoints', 'release', runDir, 'best']);
    expect(r.out.trim()).to.equal('release: v000001 -> v000002');
    // Damage v3: releasing v3 or v4 (whose chain includes v3) is refused and the pointer stays.
    const f = path.join(runDir, 'versions', 'v000003', 'adapter_config.json');
    const good = await fs.readFile(f);
    await fs.writeFile(f, '{"peft_type":"LORA","r":999}\n');
    try {
      for (const [v, name] of [
        ['3', 'v000003'],
        ['latest', 'v000004'],
      ]) {
        r = await cli(['checkpoints', 'release', runDir, v]);
        expect(r.code, v).to.equal(1);
        expect(r.out)
          .to.contain(`refused: the chain up to ${name} does not verify: v000003/adapter_config.json: sha256`)
          .and.contain('the release pointer was not changed');
        expect(await readRelease(runDir)).to.equal(2);
      }
      r = await cli(['checkpoints', 'release', runDir, '9']);
      expect(r.out).to.contain('refused: v000009 does not exist');
      // verify: the pointer at v2 is fine though v3 is damaged; at v4 it is a problem of its own.
      expect((await verifyRun(runDir)).problems.filter((p) => p.kind === 'release')).to.deep.equal([]);
      await writeRelease(runDir, 4);
      const rel = (await verifyRun(runDir)).problems.filter((p) => p.kind === 'release');
      expect(rel).to.have.length(1);
      expect(rel[0].message).to.match(/^release: names v000004, whose chain does not verify \(v000003\/adapter_config\.json: sha256/);
    } finally {
      await fs.writeFile(f, good);
      await writeRelease(runDir, 2);
    }
    await writeRelease(runDir, 7);
    expect((await verifyRun(runDir)).problems.map((p) => p.message)).to.deep.equal(['release: names v000007, which does not exist']);
    await fs.writeFile(path.join(runDir, 'release'), 'v2');
    expect((await verifyRun(runDir)).problems.map((p) => p.message)).to.deep.equal(['release: does not name a version as the coordinator writes it: "v2"']);
    await writeRelease(runDir, 2);
    expect((await cli(['verify', runDir])).code).to.equal(0);
  });

  it('the release pointer stopped at every step of its write: old or new, never torn; a restart clears temporaries and finishes a move a crash cut short', async () => {
    const all: string[] = [];
    const dir0 = path.join(tmp, 'ptr-all');
    await fs.mkdir(dir0);
    await writeRelease(dir0, 3, (p) => void all.push(p));
    expect(all).to.deep.equal(['release:open', 'release:write', 'release:fsync', 'release:rename', 'release:fsync-dir']);
    // The latest manifest is the best version (its commit is the one that moves the pointer).
    const latest = { version: 5, best: { metric: 'eval.loss', mode: 'min', version: 5, value: 0.1, sinceBest: 0 } } as unknown as Manifest;
    for (let n = 1; n <= all.length; n++) {
      const dir = path.join(tmp, `ptr-${n}`);
      await fs.mkdir(dir);
      await writeRelease(dir, 4);
      const stop: CrashHook = (p) => {
        if (p === all[n - 1]) throw new Error(`crash at ${p}`);
      };
      await writeRelease(dir, 5, stop).then(
        () => expect.fail('should have crashed'),
        () => undefined,
      );
      const seen = await readRelease(dir);
      expect(seen, all[n - 1]).to.equal(n < 4 ? 4 : 5); // the rename is the switch
      // The restart: temporaries removed, and the move the crash interrupted finished from the manifest.
      expect(await reconcileRelease(dir, latest), all[n - 1]).to.equal(seen === 4);
      expect(await readRelease(dir)).to.equal(5);
      expect(await fs.readdir(dir), all[n - 1]).to.deep.equal(['release']);
    }
    // An operator's rollback is not undone: the latest version is not the best, so the pointer is left alone.
    const dir = path.join(tmp, 'ptr-rollback');
    await fs.mkdir(dir);
    await writeRelease(dir, 1);
    expect(await reconcileRelease(dir, { version: 6, best: { ...latest.best!, version: 5, sinceBest: 1 } } as unknown as Manifest)).to.equal(false);
    expect(await readRelease(dir)).to.equal(1);
  });

  it('a coordinator restarted on a run whose best latest version never got its pointer moves it, then finishes without training', async () => {
    // The state a crash right after the commit of v2 (then the best and latest) leaves: release still at v1.
    const dir = path.join(tmp, 'restart');
    const h0 = await startCoordinator(dir, { total: 2 }, { evaluation: { enabled: true, deadlineMs: 20_000 } });
    const clients = ['rs-a', 'rs-b'].map(
      (name, i) =>
        new FederationClient({
          address: h0.address,
          name,
          trainer: new ScriptedEvalTrainer(1, 10, (level) => ({ eval_loss: 1 / (level + i), eval_examples: 5 })),
          identity: testIdentity(name),
        }),
    );
    try {
      await Promise.all(clients.map((c) => c.run()));
      await h0.coordinator.done;
    } finally {
      await Promise.all(clients.map((c) => c.stop()));
      await h0.coordinator.stop();
    }
    expect(await readRelease(dir)).to.equal(2);
    await writeRelease(dir, 1);
    const h = await startCoordinator(dir, { total: 2 }, { evaluation: { enabled: true } });
    try {
      const final = await h.coordinator.done;
      expect(final.manifest.version).to.equal(2);
      expect(await readRelease(dir)).to.equal(2);
    } finally {
      await h.coordinator.stop();
    }
  });
});
