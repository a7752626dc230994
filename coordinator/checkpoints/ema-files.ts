// A version's averaged adapter (strategy.ema, coordinator/strategy/ema.ts) as a PEFT adapter directory inside the
// version: ema/adapter_model.safetensors + ema/adapter_config.json (the version's own adapter config), listed and
// hashed in the signed manifest like every other file. It is the adapter the version was scored as, and what its
// release and `fedtune checkpoints export` give: PeftModel.from_pretrained(model, <export>, subfolder="ema").
// The same values are in server-state.safetensors (ema/<tensor>), from which a restarted coordinator resumes the
// average; this is the copy for people and tools that load PEFT directories. Written only when the state holds an
// average: a run without strategy.ema writes exactly the files it wrote before.
import { writeSafetensors } from '../../proto/safetensors';
import type { TensorList } from '../../proto/tensors';
import { evaluatedAdapter } from '../strategy/ema';

export const EMA_DIR = 'ema';
export const EMA_ADAPTER_FILE = `${EMA_DIR}/adapter_model.safetensors`;
export const EMA_ADAPTER_CONFIG_FILE = `${EMA_DIR}/adapter_config.json`;
/** The only names under a version's ema/ a manifest may list (fedtune verify refuses any other path with a '/'). */
export const EMA_FILES: readonly string[] = [EMA_ADAPTER_FILE, EMA_ADAPTER_CONFIG_FILE];

/** The averaged adapter's PEFT weights file, or null when `serverState` holds no average. */
export function emaWeights(adapter: TensorList, serverState: TensorList | undefined): Buffer | null {
  if (!serverState?.some((t) => t.name.startsWith(`${EMA_DIR}/`))) return null;
  return writeSafetensors(evaluatedAdapter(adapter, serverState), { format: 'pt' });
}
