// Loads a Hugging Face model directory (config.json + model.safetensors or sharded safetensors; f32, f16 or
// bf16 weights, read as float32) into a frozen model of its family: Gpt2Model or LlamaModel.
import { promises as fs } from 'fs';
import * as path from 'path';
import { readSafetensors } from '../../proto/safetensors';
import type { NamedTensor } from '../../proto/tensors';
import type { Gpt2Config } from '../../proto/model/gpt2-config';
import { isLlamaConfig, type ModelConfig } from '../../proto/model/model-config';
import { baseModelHash, modelWeightFiles, readModelConfig } from '../../proto/model/model-dir';
import { Gpt2Model } from './gpt2';
import { LlamaModel } from './llama';

/** Either family; both expose hiddenStates / lmHead / tokenLogits / forward with the same signatures. */
export type CausalLm = Gpt2Model | LlamaModel;

export interface LoadedModel<M extends CausalLm = CausalLm, C extends ModelConfig = ModelConfig> {
  readonly model: M;
  readonly config: C;
  /** SHA-256 hex of the weights (proto/model/model-dir.ts), the base model's identity. */
  readonly modelHash: string;
  /** The directory's base name, used as base_model_name_or_path in adapter_config.json. */
  readonly name: string;
  readonly dir: string;
}
export type LoadedBaseModel = LoadedModel<Gpt2Model, Gpt2Config>;

export { MODEL_FILE, CONFIG_FILE } from '../../proto/model/model-dir';

/** All tensors of the directory's safetensors file(s); a tensor in two shards is an error. */
export async function readModelTensors(dir: string): Promise<NamedTensor[]> {
  const out: NamedTensor[] = [];
  const seen = new Set<string>();
  for (const f of await modelWeightFiles(dir)) {
    for (const t of readSafetensors(await fs.readFile(path.join(dir, f))).tensors) {
      if (seen.has(t.name)) throw new Error(`tensor ${t.name} appears in more than one shard`);
      seen.add(t.name);
      out.push(t);
    }
  }
  return out;
}

export async function loadModelDir(dir: string): Promise<LoadedModel> {
  const config = await readModelConfig(dir);
  const modelHash = await baseModelHash(dir);
  const tensors = await readModelTensors(dir);
  const model = isLlamaConfig(config) ? LlamaModel.fromTensors(config, tensors) : Gpt2Model.fromTensors(config, tensors);
  return { model, config, modelHash, name: path.basename(path.resolve(dir)), dir };
}

/** A GPT-2 directory only (the demo's family); another family is an error naming it. */
export async function loadGpt2Dir(dir: string): Promise<LoadedBaseModel> {
  const loaded = await loadModelDir(dir);
  if (loaded.model instanceof LlamaModel) {
    loaded.model.dispose();
    throw new Error(`model directory holds a ${loaded.model.config.modelType} model, not gpt2`);
  }
  return loaded as LoadedBaseModel;
}
