// LoRA dropout in the engine, PEFT's semantics: the LoRA path is s·B(A(dropout(x))), so only the LoRA branch's
// input is dropped (the frozen base product reads x as is), with inverted dropout (kept values × 1/(1 − p)). The
// mask is model/dropout-mask.ts's counter-based hash, the very function the tfjs trainer fills its masks with.
// Nothing is stored: the mask is recomputed wherever it is needed — in the A-operand load of u = x·Aᵀ (forward),
// in the B-operand load of dA = duᵀ·x, and in the epilogue that adds the LoRA term du·A of dx (backward). A hash
// is ~20 integer operations per element read; a stored bit-packed mask would cost a buffer of rows·in/8 bytes per
// module, its writes in forward and its reads in backward, plus state to keep right between steps. So the fused
// loads and epilogue add no dispatch and no activation-sized buffer: one u32 key per LoRA module ('dropKey', written
// with the step's inputs) is all the step gains.
import { dropoutMaskWgsl } from '../model/dropout-mask';
import type { Binding } from './kernel';

/** The step program's dropout: p, and the padded sequence length that splits a row m into (b, t) = (m / seq, m % seq). */
export interface StepDropout {
  readonly p: number;
  readonly seq: number;
}

/** Dropout on one LoRA module's input: its key is dropKey[key] (a module index), the rest is the step's setting. */
export interface DropoutSpec extends StepDropout {
  readonly key: number;
}

/** The buffer of per-module keys, one u32 per LoRA module, rewritten each step (engine.ts). */
export const DROP_KEY_BUFFER = 'dropKey';

export const dropoutBinding: Binding = { buffer: DROP_KEY_BUFFER, type: 'u32', write: false };

/** `fn lora_keep(key, m, j) -> f32` (0 or 1/(1 − p)) and its hash, for one kernel. */
export function dropoutWgsl(d: StepDropout): string {
  return dropoutMaskWgsl(d.seq, d.p);
}

/** The WGSL expression of the mask value at row `m`, feature `j` for a module. */
export function keepExpr(d: DropoutSpec, m: string, j: string): string {
  return `lora_keep(${DROP_KEY_BUFFER}[${d.key}u], ${m}, ${j})`;
}
