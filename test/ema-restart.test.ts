// strategy.ema end to end (real coordinators, real gRPC, real SDK clients): the average survives a coordinator
// restart bit for bit (a run stopped after version 1 and restarted commits versions 2 and 3 byte for byte as an
// uninterrupted one: adapter, server state and the averaged adapter's PEFT file); the coordinator-side evaluator
// and the sites' federated evaluation score the average, not the iterate; the release pointer follows those figures, and `fedtune checkpoints export
// <run> best` gives the average as a PEFT directory (ema/) that `verify-export` checks, as `fedtune verify` checks
// the run (an unlisted file in a version's ema/ is reported).
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import type { Trainer, TrainingPlan, TrainOutcome } from '../client-sdk/trainer';
import { Coordinator } from '../coordinator';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { FsCheckpointStore, versionDirName } from '../coordinator/checkpoints/fs-store';
import { EMA_ADAPTER_CONFIG_FILE, EMA_ADAPTER_FILE } from '../coordinator/checkpoints/ema-files';
import { SERVER_STATE_FILE } from '../coordinator/checkpoints/server-state';
import { verifyRun, verifyVersionDir } from '../coordinator/checkpoints/verify';
import { readSafetensors } from '../proto/safetensors';
import type { TensorList } from '../proto/tensors';
import { smallAdapter, tempDir } from './harness';
import { restartSuite, startRestartSites, stopAfterVersion1, versionFile, type RestartSites } from './restart-sites';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CLI = path.join(__dirname, '..', 'coordinator', 'cli', 'fedtune.js');

const bytesOf = (t: TensorList): string[] => t.map((x) => `${x.name}:${Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength).toString('hex')}`);

/** Moves every value by value·(1 + i mod 3)·(round): a different update each round. */
class RoundTrainer implements Trainer {
  readonly backend = 'test';
  /** What the site's federated evaluation was given, in order. */
  readonly evaluated: string[][] = [];
  constructor(private readonly value: number) {}
  async evaluate(adapter: TensorList): Promise<Record<string, number>> {
    this.evaluated.push(bytesOf(adapter));
    return { eval_loss: 1, eval_examples: 4 };
  }
  async train(global: TensorList, plan: TrainingPlan): Promise<TrainOutcome> {
    const k = this.value * plan.round;
    return { adapter: global.map((t) => ({ ...t, data: t.data.map((x, i) => x + k * (1 + (i % 3))) })), numExamples: 10, metrics: {} };
  }
}

describe('strategy.ema across a restart, in the evaluator, the release pointer and the export (real gRPC)', function () {
  this.timeout(120_000);
  const { dirs, clients, coordinators } = restartSuite();

  /** A coordinator of 3 rounds of FedAdam with its average at β 0.5; its evaluator records what it scored. */
  async function start(runDir: string, scored: Map<number, string[]>): Promise<{ c: Coordinator; address: string }> {
    const config = classicConfig({
      overrides: {
        server: { port: 0 },
        run: { dir: runDir, seed: 5 },
        rounds: { total: 3, minClients: 2, minUpdates: 2, clientsPerRound: 100, deadlineMs: 20_000, maxAttempts: 3 },
        log: { level: 'silent' },
        auth: { mode: 'tofu' },
        lora: { aggregation: 'fedit' },
        strategy: { name: 'fedadam', serverLearningRate: 0.05, ema: 0.5 },
        // The release follows the evaluator's figure: the sum of the scored adapter's values, higher is better.
        earlyStopping: { metric: 'heldout.sum', mode: 'max' },
        // The sites' federated evaluation of every candidate too (it must see the average as well).
        evaluation: { enabled: true, everyRounds: 1, sites: 'participants', minSites: 2, deadlineMs: 20_000 },
      },
    });
    const evaluator = async (adapter: TensorList, version: number): Promise<Record<string, number>> => {
      scored.set(version, bytesOf(adapter));
      return { sum: adapter.reduce((s, t) => s + t.data.reduce((a, b) => a + b, 0), 0) };
    };
    const c = new Coordinator({
      config,
      evaluator,
      initialAdapter: () => smallAdapter(0),
      adapterConfig: { peft_type: 'LORA' },
      baseModel: { name: 'test', sha256: '0'.repeat(64) },
      logger: pino({ level: 'silent' }),
    });
    coordinators.push(c);
    const { address } = await c.start();
    return { c, address };
  }
  const sites = (address: string): RestartSites<RoundTrainer> =>
    startRestartSites(
      address,
      [0.25, -0.125].map((v) => new RoundTrainer(v)),
      clients,
    );
  const file = versionFile;

  it('restart resumes the average bit for bit; the evaluator scores it; release and export give it', async () => {
    const dirA = await tempDir('ema-a');
    dirs.push(dirA);
    const scoredA = new Map<number, string[]>();
    const a = await start(dirA, scoredA);
    const sa = sites(a.address);
    expect((await a.c.done).manifest.version).to.equal(3);
    await Promise.all(sa.runs);

    const dirB = await tempDir('ema-b');
    dirs.push(dirB);
    const b1 = await start(dirB, new Map());
    expect(await stopAfterVersion1(dirB, b1.c, () => sites(b1.address))).to.be.oneOf([1, 2]);
    const b2 = await start(dirB, new Map());
    const sb2 = sites(b2.address);
    expect((await b2.c.done).manifest.version).to.equal(3);
    await Promise.all(sb2.runs);
    for (let v = 1; v <= 3; v++) {
      for (const name of ['adapter_model.safetensors', SERVER_STATE_FILE, EMA_ADAPTER_FILE, EMA_ADAPTER_CONFIG_FILE]) {
        expect((await file(dirB, v, name)).equals(await file(dirA, v, name)), `v${v} ${name}`).to.equal(true);
      }
    }

    // A site evaluates its own trained adapter after each round's training (its reported metrics), then the candidate.
    for (const t of sa.trainers) expect(t.evaluated).to.have.length(6);
    // The evaluator and both sites scored the average (the ema/ file, the ema/ state) — the iterate only in round 1, where they agree.
    const store = new FsCheckpointStore(dirA, { readOnly: true });
    for (let v = 1; v <= 3; v++) {
      const ck = await store.read(v);
      const ema = readSafetensors(await file(dirA, v, EMA_ADAPTER_FILE)).tensors;
      expect(scoredA.get(v), `v${v} scored`).to.deep.equal(bytesOf(ema));
      for (const t of sa.trainers) expect(t.evaluated[2 * v - 1], `v${v} evaluated by a site`).to.deep.equal(bytesOf(ema));
      expect(bytesOf(ema)).to.deep.equal(bytesOf(ck.serverState!.filter((t) => t.name.startsWith('ema/')).map((t) => ({ ...t, name: t.name.slice(4) }))));
      expect(ck.manifest.serverOptimizer).to.deep.equal({ serverLearningRate: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3, ema: 0.5 });
      expect(ck.manifest.strategy).to.equal('fedadam+ema'); // what ran: the average over FedAdam
      if (v === 1) expect(bytesOf(ema)).to.deep.equal(bytesOf(ck.adapter));
      else expect(bytesOf(ema)).to.not.deep.equal(bytesOf(ck.adapter));
    }
    expect((await store.read(0)).manifest.files).to.not.have.property(EMA_ADAPTER_FILE);

    // The release pointer names the best version by the average's figures; its export carries the average in ema/.
    const best = (await store.latest())!.manifest.best!;
    const out = path.join(dirA, 'export-best');
    const r = await promisify(execFile)(process.execPath, [CLI, 'checkpoints', 'export', dirA, 'best', out], { timeout: 30_000 });
    expect(r.stdout).to.contain(`subfolder="ema"`);
    expect(r.stdout).to.match(/^OK: /m);
    expect((await fs.readFile(path.join(out, EMA_ADAPTER_FILE))).equals(await file(dirA, best.version, EMA_ADAPTER_FILE))).to.equal(true);
    expect(JSON.parse(await fs.readFile(path.join(out, EMA_ADAPTER_CONFIG_FILE), 'utf8'))).to.deep.equal({ peft_type: 'LORA' });
    expect((await fs.readFile(path.join(dirA, 'release'), 'utf8')).trim()).to.equal(versionDirName(best.version));

    // verify: the run passes; an unlisted file in a version's ema/ is reported, in the run and in an export.
    expect((await verifyRun(dirA)).ok).to.equal(true);
    await fs.writeFile(path.join(dirA, 'versions', versionDirName(2), 'ema', 'stray.bin'), 'x');
    // …and the release, whose chain runs through that version, no longer verifies.
    expect((await verifyRun(dirA)).problems.map((p) => [p.version, p.file, p.kind])).to.deep.equal([
      [2, 'ema/stray.bin', 'extra-file'],
      [null, 'release', 'release'],
    ]);
    await fs.writeFile(path.join(out, 'ema', 'stray.bin'), 'x');
    expect((await verifyVersionDir(out)).problems.filter((p) => p.kind !== 'signature-missing').map((p) => [p.file, p.kind])).to.deep.equal([
      ['ema/stray.bin', 'extra-file'],
    ]);
  });
});
