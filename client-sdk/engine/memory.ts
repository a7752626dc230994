// The engine's GPU memory, exactly: it allocates every buffer itself, once per (model, batch, seq, path), so the
// bytes follow from its program. Reported beside PyTorch's torch.cuda.max_memory_allocated (bench/RESULTS.md),
// which counts the tensors PyTorch allocated (not the CUDA context or the caching allocator's slack); likewise this
// counts the engine's buffers, not Dawn's or the driver's own.
import type { Program } from './program';

const BYTES = { f32: 4, f16: 2, u32: 4 } as const;
/** Bytes of uniform data per dispatch (engine.ts: one 256-byte slot per kernel, the binding alignment). */
const PARAM_SLOT = 256;

// Buffers by role; any other buffer (the llama family may add some) counts as activations and workspace.
const WEIGHTS = new Set(['wte', 'wpe', 'w', 'vec', 'wte16']);
const ADAPTER = new Set(['theta', 'grad', 'adamM', 'adamV', 'anchor', 'control', 'gsum', 'normPart', 'norm']);
const INPUTS = new Set(['step', 'ids', 'pairRow', 'pairTarget', 'rowStart', 'rowPairs', 'dropKey']);

export interface EngineMemory {
  /** Storage buffers, as LoraEngine allocates them (its bytesAllocated). */
  readonly storage: number;
  /** The static uniform buffer of every dispatch's constants. */
  readonly uniform: number;
  /** The largest transient buffer: the read-back of the trained adapter at the end of a round. */
  readonly readback: number;
  /** storage + uniform + readback: the most the engine holds at once. */
  readonly peak: number;
  /** storage split by role: frozen base weights, adapter with grads and optimiser state, step inputs, the rest. */
  readonly groups: { readonly weights: number; readonly adapter: number; readonly inputs: number; readonly activations: number };
}

/** Bytes of one engine buffer: rounded up to whole 4-byte words, as WebGPU requires of storage buffers. */
export function bufferBytes(b: { readonly elems: number; readonly type: keyof typeof BYTES }): number {
  return Math.ceil((b.elems * BYTES[b.type]) / 4) * 4;
}

export function engineMemory(program: Program, adapterSize: number): EngineMemory {
  const groups = { weights: 0, adapter: 0, inputs: 0, activations: 0 };
  for (const [name, b] of program.buffers) {
    const n = bufferBytes(b);
    if (WEIGHTS.has(name)) groups.weights += n;
    else if (ADAPTER.has(name)) groups.adapter += n;
    else if (INPUTS.has(name)) groups.inputs += n;
    else groups.activations += n;
  }
  const storage = groups.weights + groups.adapter + groups.inputs + groups.activations;
  const uniform = PARAM_SLOT * Math.max(1, program.kernels.length);
  const readback = Math.ceil((adapterSize * 4) / 4) * 4;
  return { storage, uniform, readback, peak: storage + uniform + readback, groups };
}
