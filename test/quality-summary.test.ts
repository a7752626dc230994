// The learning-quality benchmark's arithmetic (bench/quality.ts): best accuracy, its round, the final figure and
// the largest round-to-round drop after round 6, as bench/QUALITY.md reports them; early stopping's pick replayed
// on validation figures (bench/quality-stopping.ts) and the comparison with local-only sites; every configuration
// is one the coordinator accepts.
import { summariseCurve, summarise, stoppingTable } from '../bench/quality';
import type { CellResult, QualityCell } from '../bench/quality-cell';
import { earlyStoppingPick, STOP_RULES } from '../bench/quality-stopping';
import { curvesFromLog } from '../bench/quality-log';
import { QUALITY_CONFIGS, cellOverrides, configTraining, deepMerge } from '../bench/quality-configs';
// Over the classic defaults (FedAvg, no average…), which this file was written against.
import { classicConfig } from './classic-defaults';
import { withUpdateNorm } from '../bench/quality-update-norm';
import type { Trainer } from '../client-sdk/trainer';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const curve = (accs: number[]) => accs.map((accuracy, round) => ({ round, accuracy, loss: 0, extra: {} }));

describe('quality benchmark summary', () => {
  it('ignores round 0, finds the first best round, and measures drops only after round 6', () => {
    //            r0    r1    r2    r3    r4    r5    r6    r7    r8    r9
    const c = curve([0.9, 0.5, 0.7, 0.6, 0.8, 0.8, 0.75, 0.85, 0.83, 0.85]);
    const s = summariseCurve(c);
    expect(s.best).to.equal(0.85);
    expect(s.bestRound).to.equal(7);
    expect(s.final).to.equal(0.85);
    // r2→r3 drops 0.1 and r5→r6 0.05 (both at or before round 6); after it only r7→r8: 0.02.
    expect(s.maxDrop).to.be.closeTo(0.02, 1e-12);
  });

  it('averages a local-only cell over its sites and reports each site', () => {
    const cell: QualityCell = {
      split: 'groups',
      seed: 1,
      splitSeed: 7,
      config: 'local',
      rounds: 2,
      clients: 2,
      localSteps: 1,
      batchSize: 1,
      learningRate: 1,
      testLimit: 1,
    };
    const r = (seed: number, a: number[], b: number[]): CellResult => ({
      cell: { ...cell, seed },
      ok: true,
      curves: [curve(a), curve(b)],
      backend: 'cpu',
      seconds: 0,
    });
    const [s] = summarise([r(1, [0, 0.6, 0.7], [0, 0.8, 0.7]), r(2, [0, 0.5, 0.5], [0, 0.9, 0.9])]);
    expect(s.seeds).to.equal(2);
    expect(s.perSiteBest).to.have.length(2);
    expect(s.perSiteBest![0]).to.be.closeTo(0.6, 1e-12);
    expect(s.perSiteBest![1]).to.be.closeTo(0.85, 1e-12);
    // Seed 1: sites' bests 0.7 and 0.8 → 0.75; seed 2: 0.5 and 0.9 → 0.7.
    expect(s.best.mean).to.be.closeTo(0.725, 1e-12);
    expect(s.best.min).to.be.closeTo(0.7, 1e-12);
    expect(s.best.max).to.be.closeTo(0.75, 1e-12);
  });

  // Validation loss falls to its best at round 3 and not below it for five rounds: patience runs out at round 8,
  // so round 3's version is released, although held-out accuracy peaks later (round 10, after the stop).
  //              r1    r2    r3    r4    r5    r6    r7    r8    r9    r10
  const vloss = [1.0, 0.8, 0.7, 0.75, 0.72, 0.7, 0.73, 0.74, 0.6, 0.5];
  const vacc = [0.5, 0.6, 0.7, 0.72, 0.71, 0.7, 0.69, 0.68, 0.67, 0.66];
  const held = [0.6, 0.7, 0.8, 0.79, 0.81, 0.8, 0.8, 0.8, 0.82, 0.86];
  const evalCurve = [
    { round: 0, accuracy: 0.675, loss: 9, extra: {} },
    ...held.map((accuracy, i) => ({ round: i + 1, accuracy, loss: 0, extra: { 'eval.loss': vloss[i], 'eval.accuracy': vacc[i] } })),
  ];

  it('replays early stopping (patience 5) on validation loss and on validation accuracy: the pick, its accuracy, the gap', () => {
    const byLoss = earlyStoppingPick(evalCurve, STOP_RULES.loss)!;
    // An equal value (0.7 at round 6) is not an improvement.
    expect(byLoss).to.deep.include({ pickedRound: 3, accuracy: 0.8, stopRound: 8 });
    expect(byLoss.gap).to.be.closeTo(0.06, 1e-12);
    const byAcc = earlyStoppingPick(evalCurve, STOP_RULES.accuracy)!;
    expect(byAcc).to.deep.include({ pickedRound: 4, accuracy: 0.79, stopRound: 9 });
    expect(byAcc.gap).to.be.closeTo(0.07, 1e-12);
    // Never stopping: the best version of the whole run, stopRound NaN.
    const rising = earlyStoppingPick(
      curve([0.1, 0.2, 0.3]).map((p) => ({ ...p, extra: { 'eval.accuracy': p.accuracy } })),
      STOP_RULES.accuracy,
    )!;
    expect(rising.pickedRound).to.equal(2);
    expect(rising.stopRound).to.be.NaN;
    expect(rising.gap).to.equal(0);
    // The coordinator's default (patience 0): never stops; the lowest validation loss of the run (0.5, round 10).
    expect(earlyStoppingPick(evalCurve, STOP_RULES.release)).to.deep.include({ pickedRound: 10, accuracy: 0.86, gap: 0 });
    // No validation figures: no pick.
    expect(earlyStoppingPick(curve([0.1, 0.2]), STOP_RULES.loss)).to.equal(undefined);
  });

  it('summarises the picks per configuration and compares the released accuracy with each local-only site', () => {
    const cell = (config: string, seed: number): QualityCell => ({
      split: 'groups',
      seed,
      splitSeed: 7,
      config,
      rounds: 10,
      clients: 2,
      localSteps: 1,
      batchSize: 1,
      learningRate: 1,
      testLimit: 1,
    });
    const results: CellResult[] = [
      { cell: cell('sgd-adam', 1), ok: true, curves: [evalCurve], backend: 'cpu', seconds: 0 },
      { cell: cell('local', 1), ok: true, curves: [curve([0, 0.675, 0.7]), curve([0, 0.325, 0.81])], backend: 'cpu', seconds: 0 },
    ];
    const [fed, local] = summarise(results);
    expect(fed.stop!.loss!.accuracy.mean).to.equal(0.8);
    expect(fed.stop!.loss!.stopped).to.equal(1);
    expect(fed.stop!.accuracy!.pickedRound.mean).to.equal(4);
    expect(fed.stop!.release!.pickedRound.mean).to.equal(10);
    expect(fed.stop!.release!.stopped).to.equal(0);
    // Released (the release pointer under the defaults: round 10, 0.86) against the sites' local bests 0.7 and 0.81.
    expect(fed.vsLocal!.released).to.equal(0.86);
    expect(fed.vsLocal!.margins[0]).to.be.closeTo(0.16, 1e-12);
    expect(fed.vsLocal!.margins[1]).to.be.closeTo(0.05, 1e-12);
    expect(local.vsLocal).to.equal(undefined);
    const t = stoppingTable([fed, local]);
    expect(t).to.contain(
      '| groups | sgd-adam | 86.0 | 3.0 (1/1 stopped) | 80.0 | 6.0 | 6.0 | 4.0 (1/1 stopped) | 79.0 | 7.0 | 7.0 | 10.0 (0/1 stopped) | 86.0 | 0.0 | 0.0 | 16.0 / 5.0 (beats all) |',
    );
  });

  it("reads a cut cell's curve back from its log lines, validation figures included", () => {
    const log = [
      'dirichlet-0.1/prox-k100/42 [0] round 0: accuracy 67.5%, loss 8.3428',
      'dirichlet-0.1/prox-k100/42 [0] round 2: accuracy 68.0%, loss 0.9100, val loss 0.9500, val accuracy 63.08%',
      'noise from a site: round 3 started',
      'dirichlet-0.1/prox-k100/42 [0] round 1: accuracy 67.5%, loss 1.7800, val loss 1.8000, val accuracy 63.11%',
      'groups/local/43 [1] round 1: accuracy 32.5%, loss 3.2000',
    ].join('\n');
    const cells = curvesFromLog(log);
    expect(cells.map((c) => [c.cell.split, c.cell.config, c.cell.seed, c.curves.length, c.partial])).to.deep.equal([
      ['dirichlet-0.1', 'prox-k100', 42, 1, true],
      ['groups', 'local', 43, 1, true],
    ]);
    expect(cells[0].curves[0]).to.deep.equal([
      { round: 0, accuracy: 0.675, loss: 8.3428, extra: {} },
      { round: 1, accuracy: 0.675, loss: 1.78, extra: { 'eval.loss': 1.8, 'eval.accuracy': 0.6311 } },
      { round: 2, accuracy: 0.68, loss: 0.91, extra: { 'eval.loss': 0.95, 'eval.accuracy': 0.6308 } },
    ]);
  });

  it('every configuration is one the coordinator accepts, with its own rate and steps where it sets them', () => {
    for (const [name, c] of Object.entries(QUALITY_CONFIGS)) {
      const own = configTraining(c);
      const cfg = classicConfig({ overrides: deepMerge({ training: { learningRate: own.learningRate ?? 0.002 } }, cellOverrides(c)) });
      expect(cfg.training.learningRate, name).to.equal(own.learningRate ?? 0.002);
    }
    // A rate and steps given as fields or inside the overrides (run 3's entries) reach the cell the same way.
    expect(configTraining(QUALITY_CONFIGS['sgd-k3'])).to.deep.equal({ learningRate: 0.2, localSteps: 3 });
    expect(configTraining(QUALITY_CONFIGS['fedavg-s3'])).to.deep.equal({ learningRate: 0.004, localSteps: 3 });
    expect(cellOverrides(QUALITY_CONFIGS['fedavg-s3'])).to.deep.equal({ training: { schedule: 'cosine' } });
    expect(configTraining(QUALITY_CONFIGS.fedavg)).to.deep.equal({});
    expect(classicConfig({ overrides: QUALITY_CONFIGS['sgd-avgm1'].overrides }).strategy).to.deep.include({ name: 'fedavgm', serverLearningRate: 1 });
    expect(classicConfig({ overrides: QUALITY_CONFIGS['sgd-m9'].overrides }).training).to.deep.include({ optimizer: 'sgd', momentum: 0.9, schedule: 'cosine' });
  });
  it("adds each site's update norm to its metrics, leaving the update and the trainer's other members as they were", async () => {
    const t = (d: number[]) => ({ name: 'x', dtype: 'float32' as const, shape: [d.length], data: Float32Array.from(d) });
    class Fake {
      readonly backend = 'cpu';
      #calls = 0; // a private field: the wrapper's methods must run on the original object
      async train(): ReturnType<Trainer['train']> {
        this.#calls++;
        return { adapter: [t([4, 6, 3])], numExamples: 2, metrics: { train_loss: 1 } };
      }
      calls(): number {
        return this.#calls;
      }
    }
    const fake = new Fake();
    const w = withUpdateNorm(fake);
    const out = await w.train([t([1, 2, 3])], {} as Parameters<Trainer['train']>[1]);
    // ‖(3, 4, 0)‖ = 5
    expect(out.metrics).to.deep.equal({ train_loss: 1, update_norm: 5 });
    expect(Array.from(out.adapter[0].data)).to.deep.equal([4, 6, 3]);
    expect(w.backend).to.equal('cpu');
    expect((w as unknown as Fake).calls()).to.equal(1);
  });
});
