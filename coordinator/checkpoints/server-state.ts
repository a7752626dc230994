// A version's server optimiser state (FedAvgM's momentum, FedAdam's/FedYogi's/FedAdagrad's moments; see
// strategy/optimizer-state.ts): one float32 safetensors file beside the adapter, hashed in the signed manifest like
// every other file, so `fedtune verify` checks it and a restarted coordinator resumes the optimiser exactly.
// Written only when the strategy keeps state: a FedAvg version's directory is unchanged.
import { readSafetensors, writeSafetensors } from '../../proto/safetensors';
import type { NamedTensor, TensorList } from '../../proto/tensors';

export const SERVER_STATE_FILE = 'server-state.safetensors';
const FORMAT = 'fedtune.server-state/1';

export function encodeServerState(state: TensorList, strategy: string): Buffer {
  return writeSafetensors(state, { format: FORMAT, strategy });
}

/** The state's tensors; throws (naming what is wrong) for a file that is not a server-state file. */
export function decodeServerState(bytes: Uint8Array): NamedTensor[] {
  const f = readSafetensors(bytes);
  if (f.metadata.format !== FORMAT) throw new Error(`${SERVER_STATE_FILE}: metadata format is ${JSON.stringify(f.metadata.format)}, not ${FORMAT}`);
  if (f.skipped.length) throw new Error(`${SERVER_STATE_FILE}: holds non-float tensors (${f.skipped.join(', ')})`);
  return f.tensors;
}
