// The trainer-selection check for a model the WebGPU engine implements (Qwen3, Gemma 3): no refusal for the model;
// FEDTUNE_ENGINE=auto picks the engine where a GPU adapter exists, and otherwise falls back for want of a GPU (the
// device's own reason), not for the model, while a named path fails with that reason.
import type { LlamaModel } from '../client-sdk/model/llama';
import { engineModelRefusal } from '../client-sdk/engine/trainer';
import { openEngineDevice } from '../client-sdk/engine/device';
import { trainerForModel } from '../client-sdk/sft/lora-trainer';
import type { LoraConfig } from '../proto/model/lora-layout';

const { expect } = require('chai') as typeof import('chai', { with: { 'resolution-mode': 'import' } });

export async function expectEngineServes(model: LlamaModel, lora: LoraConfig): Promise<void> {
  const prev = process.env.FEDTUNE_ENGINE;
  try {
    expect(engineModelRefusal(model)).to.equal(undefined);
    // The model is checked before the device is opened (engine/trainer.ts createEngineTrainer): without a GPU the
    // reason given is the device's own.
    const dev = await openEngineDevice();
    const noGpu = 'error' in dev ? dev.error : undefined;
    if (!('error' in dev)) dev.device.destroy();
    process.env.FEDTUNE_ENGINE = 'auto';
    const data = { train: [{ prompt: [1, 2], completion: [3] }] };
    const t = await trainerForModel(model, lora, data);
    if (noGpu === undefined) {
      expect(t.engineFallback).to.equal(undefined);
      expect(t.backend).to.match(/^engine/);
    } else {
      expect(t.engineFallback).to.equal(noGpu);
      expect(t.backend).not.to.match(/^engine/);
      process.env.FEDTUNE_ENGINE = 'f32';
      await trainerForModel(model, lora, data).then(
        () => expect.fail('a named engine path must not fall back'),
        (e: Error) => expect(e.message).to.equal(`FEDTUNE_ENGINE=f32: ${noGpu}`),
      );
    }
    await (t.trainer as { dispose?: () => Promise<void> }).dispose?.();
  } finally {
    if (prev === undefined) delete process.env.FEDTUNE_ENGINE;
    else process.env.FEDTUNE_ENGINE = prev;
  }
}
