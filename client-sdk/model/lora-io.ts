// A PEFT adapter directory: adapter_config.json + adapter_model.safetensors, readable by
// `PeftModel.from_pretrained(base, dir)` and written by `model.save_pretrained(dir)`.
import { promises as fs } from 'fs';
import * as path from 'path';
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { readSafetensors, writeSafetensors } from '../../proto/safetensors';
import { canonicalAdapter, parsePeftKey, type LoraConfig } from '../../proto/model/lora-layout';
import { loraConfigFromPeft, peftAdapterConfig } from '../../proto/model/peft-config';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

export interface PeftAdapter {
  readonly config: LoraConfig;
  /** Canonical PEFT names, sorted. */
  readonly adapter: NamedTensor[];
}

export async function loadPeftAdapterDir(dir: string): Promise<PeftAdapter> {
  const config = loraConfigFromPeft(JSON.parse(await fs.readFile(path.join(dir, ADAPTER_CONFIG_FILE), 'utf8')));
  const file = readSafetensors(await fs.readFile(path.join(dir, ADAPTER_WEIGHTS_FILE)));
  return { config, adapter: canonicalAdapter(file.tensors) };
}

export async function savePeftAdapterDir(dir: string, adapter: TensorList, lora: LoraConfig, baseModelName: string): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const tensors = canonicalAdapter(adapter);
  // The family shows in the module paths: Conv1D (GPT-2, `h.N.…`) is fan-in-fan-out, nn.Linear (`layers.N.…`) is not.
  const linear = tensors.some((t) => parsePeftKey(t.name)?.path.startsWith('layers.'));
  const cfg = peftAdapterConfig(lora, baseModelName, !linear);
  await fs.writeFile(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(cfg, null, 2) + '\n');
  await fs.writeFile(path.join(dir, ADAPTER_WEIGHTS_FILE), writeSafetensors(tensors, { format: 'pt' }));
}
