// Loads a Hugging Face GPT-2 directory (config.json + model.safetensors) into a frozen Gpt2Model.
import { promises as fs } from 'fs';
import * as path from 'path';
import { readSafetensors } from '../../proto/safetensors';
import { parseGpt2Config, type Gpt2Config } from '../../proto/model/gpt2-config';
import { Gpt2Model } from './gpt2';
import { sha256Hex } from '../../proto/model/identity';

export interface LoadedBaseModel {
  readonly model: Gpt2Model;
  readonly config: Gpt2Config;
  /** SHA-256 hex of model.safetensors, the base model's identity. */
  readonly modelHash: string;
  /** The directory's base name, used as base_model_name_or_path in adapter_config.json. */
  readonly name: string;
  readonly dir: string;
}

export const MODEL_FILE = 'model.safetensors';
export const CONFIG_FILE = 'config.json';

export async function loadGpt2Dir(dir: string): Promise<LoadedBaseModel> {
  const configText = await fs.readFile(path.join(dir, CONFIG_FILE), 'utf8');
  const config = parseGpt2Config(JSON.parse(configText));
  const bytes = await fs.readFile(path.join(dir, MODEL_FILE));
  const modelHash = sha256Hex(bytes);
  const model = Gpt2Model.fromTensors(config, readSafetensors(bytes).tensors);
  return { model, config, modelHash, name: path.basename(path.resolve(dir)), dir };
}
