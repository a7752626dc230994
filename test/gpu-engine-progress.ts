// The WebGPU engine's progress reports (run by test/gpu-engine.ts, or alone: `node dist/test/gpu-engine-progress.js`,
// FEDTUNE_ENGINE_SOFTWARE=1 for lavapipe): the engine reports every ENGINE_PROGRESS_EVERY-th step and the last,
// once their non-blocking loss read-backs land, each with that step's loss as the tfjs trainer reports it.
import * as path from 'node:path';
import { selectBackend } from '../client-sdk/model/backend';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { EngineSftTrainer } from '../client-sdk/engine/trainer';
import { choosePath, openEngineDevice, type EngineDevice } from '../client-sdk/engine/device';
import type { EnginePath } from '../client-sdk/engine/program';
import type { TrainStep } from '../client-sdk/trainer';

const MODEL_DIR = path.resolve(__dirname, '..', '..', 'examples', 'base-model');
const LORA: LoraConfig = { r: 16, alpha: 32, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] };

type Check = (name: string, ok: boolean, detail: string) => void;

export async function progressRun(ed: EngineDevice, paths: readonly EnginePath[], check: Check): Promise<void> {
  const { model } = await loadGpt2Dir(MODEL_DIR);
  const rng = new Prng(25);
  const train = Array.from({ length: 64 }, () => {
    const prompt = Array.from({ length: 12 }, () => 1 + rng.nextInt(200));
    return { prompt, completion: prompt.slice().reverse() };
  });
  const adapter = initLoraAdapter(model.config, LORA, 3);
  const plan = { round: 1, taskId: 'progress', localSteps: 12, batchSize: 4, learningRate: 2e-3, weightDecay: 0, maxSeqLen: 32, seed: 6 };
  const ref: TrainStep[] = [];
  const out = await new LoraSftTrainer({ model, lora: LORA, train }).train(adapter, plan, undefined, (s) => ref.push(s));
  const mean = ref.reduce((a, s) => a + s.loss, 0) / ref.length;
  check(
    'progress tfjs: steps 1..12 in order, their mean is train_loss',
    ref.map((s) => s.step).join() === '1,2,3,4,5,6,7,8,9,10,11,12' && Math.abs(mean - out.metrics.train_loss) / mean < 1e-6,
    `mean ${mean} train_loss ${out.metrics.train_loss}`,
  );
  for (const p of paths) {
    const t = new EngineSftTrainer({ model, lora: LORA, train, device: ed, path: p });
    const got: TrainStep[] = [];
    await t.train(adapter, plan, undefined, (s) => got.push(s));
    const worst = Math.max(...got.map((s) => Math.abs(s.loss - ref[s.step - 1].loss) / ref[s.step - 1].loss));
    const steps = got.map((s) => `${s.step}/${s.total}`).join(',');
    check(
      `progress ${p}: steps 8 and 12 reported after their read-back, losses vs tfjs`,
      steps === '8/12,12/12' && worst < 0.01,
      `${steps}, worst rel err ${worst.toExponential(2)}`,
    );
    await t.dispose();
  }
  model.dispose();
}

if (require.main === module) {
  let failed = 0;
  const check: Check = (name, ok, detail) => {
    if (!ok) failed++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
  };
  void (async () => {
    await selectBackend({ force: 'wasm' });
    const ed = await openEngineDevice();
    if ('error' in ed) throw new Error(ed.error);
    const paths = (['f32', 'f16', 'tc'] as EnginePath[]).filter((p) => {
      try {
        choosePath(ed.caps, p);
        return true;
      } catch {
        return false;
      }
    });
    await progressRun(ed, paths, check);
    await ed.device.queue.onSubmittedWorkDone();
    ed.device.destroy();
    process.exit(failed ? 1 : 0);
  })().catch((e: Error) => {
    console.error(e.stack ?? e);
    process.exit(1);
  });
}
