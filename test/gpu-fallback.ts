// The engine's GPU failures made real (part of test/gpu-engine.ts; needs a WebGPU adapter: a GPU, or lavapipe with
// FEDTUNE_ENGINE_SOFTWARE=1). On one engine trainer of a tiny GPT-2, each fault of the test hook (EngineFault) goes
// through Dawn's own machinery: a validation error inside the round's error scope, NaN written into the adapter,
// then device.destroy() (device.lost resolves, read-backs abort). Each round fails as a GpuFailure of the right kind;
// a clean round after a validation or NaN fault gives the same adapter bytes as before it (the device and engine
// are reusable); after the loss the FallbackTrainer moves to the next backend, which trains the next round.
//   FEDTUNE_ENGINE_SOFTWARE=1 XDG_RUNTIME_DIR=/tmp node dist/test/gpu-engine.js --only-fallback
import { Gpt2Model } from '../client-sdk/model/gpt2';
import { randomGpt2Weights } from '../client-sdk/model/init';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import { choosePath, openEngineDevice } from '../client-sdk/engine/device';
import { createEngineTrainer, EngineSftTrainer } from '../client-sdk/engine/trainer';
import { FallbackTrainer, fallbackStages } from '../client-sdk/engine/fallback';
import { isGpuFailure, type EngineFault } from '../client-sdk/engine/gpu-failure';
import { engineMemory } from '../client-sdk/engine/memory';
import type { TrainingPlan } from '../client-sdk/trainer';
import { parseGpt2Config } from '../proto/model/gpt2-config';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';

type Check = (name: string, ok: boolean, detail: string) => void;

const CFG = parseGpt2Config({ model_type: 'gpt2', vocab_size: 64, n_positions: 32, n_embd: 32, n_layer: 1, n_head: 2 });
const LORA: LoraConfig = { r: 4, alpha: 8, dropout: 0, targetModules: ['c_attn'] };
const TRAIN = Array.from({ length: 8 }, (_, i) => ({ prompt: [4 + i, 1], completion: [i % 2 === 0 ? 2 : 3, 5] }));
const PLAN: TrainingPlan = { round: 1, taskId: 'fault', localSteps: 3, batchSize: 4, learningRate: 0.01, weightDecay: 0, maxSeqLen: 16, seed: 3 };

const hex = (ts: readonly { data: Float32Array }[]): string =>
  ts.map((t) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).toString('hex')).join('');

export async function fallbackTests(check: Check): Promise<void> {
  // A device of its own: the loss at the end must not take the other checks' device with it.
  const ed = await openEngineDevice();
  if ('error' in ed) throw new Error(ed.error);
  const path = choosePath(ed.caps);
  const model = Gpt2Model.fromTensors(CFG, randomGpt2Weights(CFG, 11, 0.3));
  const global = initLoraAdapter(CFG, LORA, 1);
  const engine = new EngineSftTrainer({ model, lora: LORA, train: TRAIN, device: ed, path });
  const clean = hex((await engine.train(global, PLAN)).adapter);
  const e = engine.current;
  const mem = e ? engineMemory(e.program, e.layout.adapterSize) : undefined;
  check(`engine memory on ${path}: counted from the program = allocated`, mem?.storage === e?.bytesAllocated, `${mem?.storage} / ${e?.bytesAllocated} bytes`);
  const faulty = async (kind: EngineFault['kind'], want: string): Promise<void> => {
    engine.armFault({ kind, step: engine.stepsDone + 1 });
    const err = await engine.train(global, PLAN).then(
      () => undefined,
      (e: unknown) => e,
    );
    const ok = isGpuFailure(err) && err.kind === want && err.message.includes(`[injected: FEDTUNE_ENGINE_FAULT=${kind}@`);
    check(`fault ${kind} on ${path}: the round fails as a GpuFailure (${want})`, ok, err instanceof Error ? err.message : String(err));
  };
  await faulty('validation', 'validation');
  check(
    `after a validation fault on ${path}: the next round gives the same adapter bytes`,
    hex((await engine.train(global, PLAN)).adapter) === clean,
    'compared',
  );
  await faulty('nan', 'non-finite');
  check(`after a NaN fault on ${path}: the next round gives the same adapter bytes`, hex((await engine.train(global, PLAN)).adapter) === clean, 'compared');

  const lines: string[] = [];
  const tfjs = (): LoraSftTrainer => new LoraSftTrainer({ model, lora: LORA, train: TRAIN });
  const site = new FallbackTrainer(
    engine,
    fallbackStages(path, { engine: (p) => createEngineTrainer({ model, lora: LORA, train: TRAIN, path: p, device: ed }), tfjs }),
    (level, msg, fields) => void lines.push(`${level} ${msg} ${JSON.stringify(fields)}`),
  );
  engine.armFault({ kind: 'lost', step: engine.stepsDone + 1 });
  const lost = await site.train(global, PLAN).then(
    () => undefined,
    (e: Error) => e,
  );
  const next = path === 'f32' ? 'tfjs' : 'engine-f32';
  check(
    `fault lost on ${path}: the round fails with the device-lost reason, the site moves to ${next}`,
    lost !== undefined &&
      lost.message.includes(`GPU failure on engine-${path} (device-lost): GPU device lost (destroyed)`) &&
      site.backend !== `engine-${path}`,
    `${lost?.message ?? 'no error'}; backend now ${site.backend}`,
  );
  const after = await site.train(global, { ...PLAN, round: 2 });
  check(
    `after the loss: the next round trains on ${site.backend}`,
    Number.isFinite(after.metrics.train_loss) && lines.some((l) => l.startsWith('info training backend changed')),
    `train_loss ${after.metrics.train_loss}; log: ${lines.join(' | ')}`,
  );
  await site.dispose();
  model.dispose();
}
