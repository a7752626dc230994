// A version's averaged adapter (strategy.ema, coordinator/strategy/ema.ts) as a PEFT adapter directory inside the
// version: ema/adapter_model.safetensors + ema/adapter_config.json (the version's own adapter config), listed and
// hashed in the signed manifest like every other file. It is the adapter the version was scored as, and what its
// release and `fedtune checkpoints export` give: PeftModel.from_pretrained(model, <export>, subfolder="ema").
// Written only when the state holds an average: a run without strategy.ema writes exactly the files it wrote before.
//
// The average is stored once: this file is also where a restarted coordinator reads it back from. The server
// state's `ema/<tensor>` tensors are exactly these float32 values under those names (strategy/ema.ts), so
// server-state.safetensors leaves them out (splitAverage) and a read puts them back (withAverage): the state a
// version resumes is the one it was committed with, bit for bit. Versions written before hold the average in
// server-state.safetensors too; their state is read as it is.
import { writeSafetensors } from '../../proto/safetensors';
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { EMA_KIND, evaluatedAdapter } from '../strategy/ema';

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

const PREFIX = `${EMA_KIND}/`;
const byName = (a: NamedTensor, b: NamedTensor): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/**
 * The server state to store beside an ema/ file: without the average when the ema/ file holds all of it (one
 * `ema/<name>` per adapter tensor, as EmaStrategy keeps it), else whole.
 */
export function splitAverage(adapter: TensorList, serverState: TensorList): TensorList {
  const names = new Set(adapter.map((t) => `${PREFIX}${t.name}`));
  const averaged = serverState.filter((t) => t.name.startsWith(PREFIX));
  if (averaged.length !== names.size || !averaged.every((t) => names.has(t.name))) return serverState;
  return serverState.filter((t) => !t.name.startsWith(PREFIX));
}

/** A version's server state: its stored tensors, with the average read back from its ema/ file when they lack it. */
export function withAverage(stored: readonly NamedTensor[], ema: TensorList | null): NamedTensor[] {
  if (!ema || stored.some((t) => t.name.startsWith(PREFIX))) return [...stored];
  const average = ema.map((t): NamedTensor => ({ name: `${PREFIX}${t.name}`, dtype: 'float32', shape: [...t.shape], data: t.data }));
  return [...stored, ...average].sort(byName);
}
