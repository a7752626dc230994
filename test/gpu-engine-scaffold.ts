// SCAFFOLD on the WebGPU engine (part of `npm run test:gpu`, `--only-scaffold` alone): the update kernel's
// control-variate lines (client-sdk/engine/optimizer.ts) against the tfjs trainer (client-sdk/sft/scaffold-local.ts)
// over whole rounds, with AdamW and with SGD: on f32 the adapters within 2% of the distance moved and the mean
// gradients (the sites' next c_i) within 2%; on every path the mean loss within 1%, the correction moving the
// adapter, and a zero correction leaving the engine's adapter bit-identical to a round without SCAFFOLD.
import * as path from 'node:path';
import { loadGpt2Dir } from '../client-sdk/model/load';
import { LoraSftTrainer } from '../client-sdk/sft/lora-trainer';
import type { EngineDevice } from '../client-sdk/engine/device';
import type { EnginePath } from '../client-sdk/engine/program';
import { EngineSftTrainer } from '../client-sdk/engine/trainer';
import type { TrainingPlan } from '../client-sdk/trainer';
import { initLoraAdapter, type LoraConfig } from '../proto/model/lora-layout';
import { Prng } from '../proto/prng';
import type { NamedTensor, TensorList } from '../proto/tensors';

type Check = (name: string, ok: boolean, detail: string) => void;

const MODEL_DIR = path.resolve(__dirname, '..', '..', 'examples', 'base-model');
const LORA: LoraConfig = { r: 16, alpha: 32, dropout: 0, targetModules: ['c_attn', 'c_proj', 'c_fc'] };

const dist = (a: TensorList, b: TensorList): number => Math.sqrt(a.reduce((s, t, k) => s + t.data.reduce((u, x, i) => u + (x - b[k].data[i]) ** 2, 0), 0));
const norm = (a: TensorList): number => Math.sqrt(a.reduce((s, t) => s + t.data.reduce((u, x) => u + x * x, 0), 0));
const sameBits = (a: TensorList, b: TensorList): boolean =>
  a.every((t, k) =>
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(b[k].data.buffer, b[k].data.byteOffset, b[k].data.byteLength)),
  );

export async function scaffoldTests(ed: EngineDevice, paths: EnginePath[], check: Check): Promise<void> {
  const { model } = await loadGpt2Dir(MODEL_DIR);
  const rng = new Prng(41);
  const V = model.config.vocabSize;
  const train = Array.from({ length: 96 }, () => {
    const prompt = Array.from({ length: 12 }, () => 1 + rng.nextInt(Math.min(V - 1, 200)));
    return { prompt, completion: prompt.slice().reverse() };
  });
  const adapter = initLoraAdapter(model.config, LORA, 1).map((t) => ({ ...t, data: t.data.map((x, i) => (x === 0 ? 0.01 * ((i % 5) - 2) : x)) }));
  const zero: NamedTensor[] = adapter.map((t) => ({ ...t, data: new Float32Array(t.data.length) }));
  const base = { round: 1, taskId: 'scaffold', localSteps: 12, batchSize: 8, weightDecay: 0, maxSeqLen: 32, seed: 4 };
  const rules: { name: string; plan: TrainingPlan; scale: number }[] = [
    { name: 'adamw', plan: { ...base, learningRate: 2e-3 }, scale: 2e-3 },
    { name: 'sgd', plan: { ...base, learningRate: 0.05, optimizer: { name: 'sgd', momentum: 0 } }, scale: 0.05 },
  ];
  const tfjs = new LoraSftTrainer({ model, lora: LORA, train });
  for (const rule of rules) {
    const correction = adapter.map((t) => ({ ...t, data: Float32Array.from(t.data, () => (rng.nextFloat() - 0.5) * rule.scale) }));
    const plan = { ...rule.plan, scaffold: { correction } };
    const ref = await tfjs.train(adapter, plan);
    for (const p of paths) {
      const t = new EngineSftTrainer({ model, lora: LORA, train, device: ed, path: p });
      const plain = await t.train(adapter, rule.plan);
      const withZero = await t.train(adapter, { ...rule.plan, scaffold: { correction: zero } });
      const out = await t.train(adapter, plan);
      check(`scaffold ${rule.name} ${p}: a zero correction leaves the adapter bit-identical`, sameBits(withZero.adapter, plain.adapter), 'c − c_i = 0');
      const moved = dist(out.adapter, plain.adapter) / dist(plain.adapter, adapter);
      check(`scaffold ${rule.name} ${p}: the correction moves the adapter`, moved > 0.01, `${(100 * moved).toFixed(2)}% of the distance moved`);
      const [a, b] = [out.metrics.train_loss, ref.metrics.train_loss];
      check(`scaffold ${rule.name} ${p}: mean train loss vs tfjs trainer`, Math.abs(a - b) / b < 0.01, `engine ${a.toFixed(5)} tfjs ${b.toFixed(5)}`);
      const mg = out.meanGradient;
      check(
        `scaffold ${rule.name} ${p}: mean gradient over every step`,
        mg?.steps === ref.meanGradient?.steps,
        `${mg?.steps} steps, tfjs ${ref.meanGradient?.steps}`,
      );
      if (p === 'f32' && mg && ref.meanGradient) {
        const gap = dist(out.adapter, ref.adapter) / dist(ref.adapter, adapter);
        check(`scaffold ${rule.name} ${p}: same adapter as the tfjs trainer's`, gap < 0.02, `difference ${(100 * gap).toFixed(3)}% of the distance moved`);
        const g = dist(mg.tensors, ref.meanGradient.tensors) / norm(ref.meanGradient.tensors);
        check(`scaffold ${rule.name} ${p}: same mean gradient as the tfjs trainer's`, g < 0.02, `relative difference ${(100 * g).toFixed(3)}%`);
      }
      await t.dispose();
    }
  }
  model.dispose();
}
