// A GPU failure during a round (client-sdk/engine/fallback.ts, gpu-failure.ts): the task fails with the reason, the
// site moves to its next backend (tc → f32 engine → tfjs) for the rest of the run and says so, the manifest records
// the backend that really trained each round, and the checkpoint chain verifies. CI has no GPU, so the engine's
// place is taken by a stand-in that trains like tfjs, reports an engine backend and throws the GpuFailure the
// engine would; the real engine's failures (device.destroy(), a validation error in the round's error scope, a NaN
// loss) are injected through FEDTUNE_ENGINE_FAULT by test/gpu-fallback.ts on lavapipe or a GPU.
import { promises as fs } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../client-sdk/model/backend';
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import type { Trainer, TrainingPlan, TrainOutcome, TrainStep } from '../client-sdk/trainer';
import { FederationClient } from '../client-sdk/client';
import { FallbackTrainer, fallbackStages, type FallbackLog } from '../client-sdk/engine/fallback';
import { GpuFailure, parseEngineFault, type GpuFailureKind } from '../client-sdk/engine/gpu-failure';
import type { EvaluateOptions } from '../client-sdk/trainer';
import { verifyRun } from '../coordinator/checkpoints/verify';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import type { TensorList } from '../proto/tensors';
import { startCoordinator, tempDir, testIdentity } from './harness';
const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

const CFG = parseGpt2Config({ model_type: 'gpt2', vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 1, n_head: 2 });
const LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn'] };
const TRAIN = Array.from({ length: 8 }, (_, i) => ({ prompt: [4 + i, 1], completion: [i % 2 === 0 ? 2 : 3] }));
const PLAN: TrainingPlan = { round: 1, taskId: 't', localSteps: 2, batchSize: 4, learningRate: 0.01, weightDecay: 0, maxSeqLen: 16, seed: 3 };

/** The engine's place on a machine without a GPU: trains on `inner`, reports `backend`, fails the calls listed. */
class EngineStandIn implements Trainer {
  calls = 0;
  disposed = false;
  constructor(
    readonly backend: string,
    private readonly inner: Trainer,
    private readonly failures: Record<number, GpuFailureKind> = {},
  ) {}
  async train(global: TensorList, plan: TrainingPlan, signal?: AbortSignal, onStep?: (s: TrainStep) => void): Promise<TrainOutcome> {
    const kind = this.failures[this.calls++];
    if (kind) throw new GpuFailure(kind, this.backend, `stand-in failure at call ${this.calls - 1}`);
    return this.inner.train(global, plan, signal, onStep);
  }
  async dispose(): Promise<void> {
    this.disposed = true;
  }
}

describe('GPU failure fallback (client-sdk/engine/fallback.ts)', function () {
  this.timeout(120_000);
  let model: Gpt2Model;
  let tfjsBackend: string;
  before(async () => {
    tfjsBackend = await selectBackend();
    model = Gpt2Model.fromTensors(CFG, randomGpt2Weights(CFG, 11, 0.3));
  });
  after(() => model.dispose());
  const tfjs = (): LoraSftTrainer => new LoraSftTrainer({ model, lora: LORA, train: TRAIN });
  const collect = (): { lines: string[]; log: FallbackLog } => {
    const lines: string[] = [];
    return { lines, log: (level, msg, fields) => void lines.push(`${level} ${msg} ${JSON.stringify(fields)}`) };
  };
  const failure = (p: Promise<unknown>): Promise<Error> =>
    p.then(
      () => {
        throw new Error('expected a failure');
      },
      (e: Error) => e,
    );

  it('falls back tc → f32 engine → tfjs, one step per GPU failure, saying which backend and why each time', async () => {
    const { lines, log } = collect();
    const tc = new EngineStandIn('engine-tc', tfjs(), { 1: 'out-of-memory' });
    const f32 = new EngineStandIn('engine-f32', tfjs(), { 0: 'non-finite' });
    const t = new FallbackTrainer(tc, fallbackStages('tc', { engine: async (p) => (p === 'f32' ? f32 : { error: 'unexpected' }), tfjs }), log);
    const global = initLoraAdapter(CFG, LORA, 1);
    expect((await t.train(global, PLAN)).metrics.train_examples_seen).to.equal(8);
    expect(t.backend).to.equal('engine-tc');
    const e1 = await failure(t.train(global, { ...PLAN, round: 2 }));
    expect(e1.message).to.equal(
      'GPU failure on engine-tc (out-of-memory): stand-in failure at call 1; round 2 fails on this site (nothing uploaded), which trains on engine-f32 from its next task',
    );
    expect(tc.disposed).to.equal(true);
    expect(t.backend).to.equal('engine-f32');
    const e2 = await failure(t.train(global, { ...PLAN, round: 3 }));
    expect(e2.message).to.contain(
      `GPU failure on engine-f32 (non-finite): stand-in failure at call 0; round 3 fails on this site (nothing uploaded), which trains on ${tfjsBackend}`,
    );
    expect(t.backend).to.equal(tfjsBackend);
    expect((await t.train(global, { ...PLAN, round: 4 })).metrics.train_examples_seen).to.equal(8);
    expect(t.changes.map((c) => `${c.from}→${c.to}`)).to.deep.equal(['engine-tc→engine-f32', `engine-f32→${tfjsBackend}`]);
    expect(lines).to.deep.equal([
      'warn GPU failure: this round fails, the site changes backend {"backend":"engine-tc","kind":"out-of-memory","reason":"stand-in failure at call 1"}',
      'info training backend changed {"from":"engine-tc","to":"engine-f32","reason":"GPU failure on engine-tc (out-of-memory): stand-in failure at call 1"}',
      'warn GPU failure: this round fails, the site changes backend {"backend":"engine-f32","kind":"non-finite","reason":"stand-in failure at call 0"}',
      `info training backend changed {"from":"engine-f32","to":"${tfjsBackend}","reason":"GPU failure on engine-f32 (non-finite): stand-in failure at call 0"}`,
    ]);
  });

  it('skips an f32 engine that cannot open (a lost GPU) straight to tfjs; other errors leave the backend alone', async () => {
    const { lines, log } = collect();
    const tc = new EngineStandIn('engine-tc', tfjs(), { 1: 'device-lost' });
    const t = new FallbackTrainer(tc, fallbackStages('tc', { engine: async () => ({ error: 'no WebGPU adapter (no GPU, or no Vulkan driver)' }), tfjs }), log);
    const global = initLoraAdapter(CFG, LORA, 1);
    // A bad plan or an abort is not a GPU failure: the task fails, the backend stays.
    expect((await failure(t.train(global, { ...PLAN, localSteps: -1 }))).message).to.equal('bad localSteps -1');
    expect(t.backend).to.equal('engine-tc');
    expect(lines).to.deep.equal([]);
    await failure(t.train(global, PLAN));
    expect(t.backend).to.equal(tfjsBackend);
    expect(lines[1]).to.equal(
      'warn fallback backend unavailable, trying the next {"backend":"engine-f32","reason":"no WebGPU adapter (no GPU, or no Vulkan driver)"}',
    );
    // An f32 engine that fails goes to tfjs only: there is no engine path below it.
    expect(fallbackStages('f32', { engine: async () => ({ error: 'x' }), tfjs }).map((s) => s.name)).to.deep.equal(['tfjs']);
    expect(fallbackStages('f16', { engine: async () => ({ error: 'x' }), tfjs }).map((s) => s.name)).to.deep.equal(['engine-f32', 'tfjs']);
  });

  it('parses the test hook FEDTUNE_ENGINE_FAULT exactly and refuses anything else', () => {
    expect(parseEngineFault(undefined)).to.equal(undefined);
    expect(parseEngineFault('lost@3')).to.deep.equal({ kind: 'lost', step: 3 });
    expect(parseEngineFault('nan@0:tc')).to.deep.equal({ kind: 'nan', step: 0, path: 'tc' });
    for (const bad of ['lost', 'oom@1', 'lost@-1', 'lost@1:cpu', ' lost@1'])
      expect(() => parseEngineFault(bad)).to.throw(`FEDTUNE_ENGINE_FAULT='${bad}' is not kind@step[:path]`);
  });

  it('over real gRPC: the failed attempt commits nothing, the retry trains on tfjs, the manifest says so, the chain verifies', async () => {
    const runDir = await tempDir('engine-fallback');
    const initial = initLoraAdapter(CFG, LORA, 1);
    const h = await startCoordinator(
      runDir,
      { total: 2, minClients: 1, minUpdates: 1, deadlineMs: 5000, maxAttempts: 3 },
      {},
      { initialAdapter: () => initial },
    );
    const failed: { round: number; attempt: number; reason: string }[] = [];
    h.coordinator.engine.on('roundFailed', (e: { round: number; attempt: number; reason: string }) => failed.push(e));
    const { lines, log } = collect();
    const tc = new EngineStandIn('engine-tc', tfjs(), { 0: 'device-lost' });
    const trainer = new FallbackTrainer(tc, fallbackStages('tc', { engine: async () => ({ error: 'the GPU is gone' }), tfjs }), log);
    const siteLog: string[] = [];
    const site = new FederationClient({
      address: h.address,
      name: 'gpu-site',
      identity: testIdentity('gpu-site'),
      trainer,
      log: (level, msg, fields) => void siteLog.push(`${level} ${msg} ${JSON.stringify(fields)}`),
    });
    try {
      const run = site.run();
      const final = await h.coordinator.done;
      await run;
      expect(final.manifest).to.include({ version: 2, round: 2 });
      expect(failed.map((f) => `${f.round}/${f.attempt}`)).to.deep.equal(['1/1']);
      const v1 = (await h.coordinator.store.read(1)).manifest;
      expect(v1).to.include({ round: 1, attempt: 2 });
      for (const m of [v1, final.manifest]) expect(m.participants.map((p) => `${p.clientName}:${p.backend}`)).to.deep.equal([`gpu-site:${tfjsBackend}`]);
      expect((await fs.readdir(`${runDir}/versions`)).sort()).to.deep.equal(['v000000', 'v000001', 'v000002']);
      expect((await verifyRun(runDir)).ok).to.equal(true);
      const taskFailed = siteLog.filter((l) => l.startsWith('warn task failed'));
      expect(taskFailed).to.have.length(1);
      expect(taskFailed[0]).to.contain(
        `GPU failure on engine-tc (device-lost): stand-in failure at call 0; round 1 fails on this site (nothing uploaded), which trains on ${tfjsBackend} from its next task`,
      );
      expect(lines.some((l) => l.startsWith(`info training backend changed {"from":"engine-tc","to":"${tfjsBackend}"`))).to.equal(true);
      expect(tf.getBackend()).to.equal(tfjsBackend);
    } finally {
      await site.stop().catch(() => undefined);
      await h.coordinator.stop(200);
      await fs.rm(runDir, { recursive: true, force: true });
    }
  });
  it('a FLoRA round, a stack to score and the progress of every round go to the backend in use, before and after a fallback (each backend trains FLoRA itself)', async () => {
    const { lines, log } = collect();
    const evals: [string, EvaluateOptions | undefined][] = [];
    /** An engine stand-in that also scores (and records what it was asked to score). */
    const scoring = (backend: string, failures: Record<number, GpuFailureKind> = {}): EngineStandIn =>
      Object.assign(new EngineStandIn(backend, tfjs(), failures), {
        evaluate: async (_a: TensorList, o?: EvaluateOptions) => (evals.push([backend, o]), { [backend]: 1 }),
      });
    const tc = scoring('engine-tc', { 1: 'device-lost' });
    const f32 = scoring('engine-f32');
    const t = new FallbackTrainer(tc, fallbackStages('tc', { engine: async () => f32, tfjs }), log);
    const global = initLoraAdapter(CFG, LORA, 1);
    const flora: TrainingPlan = { ...PLAN, loraAggregation: 'flora', floraRank: 4 };
    const steps: string[] = [];
    const out = await t.train(global, flora, undefined, (s) => steps.push(`${s.step}/${s.total}`));
    expect([out.loraRank, t.backend, tc.calls]).to.deep.equal([4, 'engine-tc', 1]);
    expect(steps).to.deep.equal(['1/2', '2/2']);
    expect(await t.evaluate(global, { stack: true })).to.deep.equal({ 'engine-tc': 1 });
    await failure(t.train(global, flora));
    expect((await t.train(global, flora, undefined, (s) => steps.push(`f32 ${s.step}`))).loraRank).to.equal(4);
    expect([t.backend, f32.calls]).to.deep.equal(['engine-f32', 1]);
    expect(steps.slice(2)).to.deep.equal(['f32 1', 'f32 2']);
    expect(await t.evaluate(global, { stack: true })).to.deep.equal({ 'engine-f32': 1 });
    expect(evals).to.deep.equal([
      ['engine-tc', { stack: true }],
      ['engine-f32', { stack: true }],
    ]);
    expect(t.changes.map((c) => `${c.from}→${c.to}`)).to.deep.equal(['engine-tc→engine-f32']);
    expect(lines.some((l) => l.includes('flora'))).to.equal(false);
  });
});
