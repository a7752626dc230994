// Sliding-window attention, the one home of the window in the engine: which layers have one (layerWindow), when a
// kernel applies it (activeWindow), and the WGSL every attention kernel (attention.ts, attention-tiled.ts,
// attention-backward.ts, attention-backward-vec.ts) splices in. A query at position i sees keys j with
// i − w < j ≤ i, HF's rule and model/llama.ts's llamaMask (masked where i − j ≥ w). The kernels walk key (or query)
// tiles; with a window they start (or stop) at the first (last) tile that holds any pair inside it, so a windowed
// layer costs about w/T of a full one at long sequences. A pair outside the window contributes exactly nothing
// (the online softmax skips it, p = ds = 0), so skipping whole tiles changes no bit. Without an active window
// every kernel's WGSL is, character for character, what it was before windows existed (test/engine-window.test.ts
// pins it), so full-causal layers are bit-identical to before.
import type { LlamaConfig } from '../../proto/model/llama-config';
import { u32 } from './kernel';

/**
 * The sliding window of decoder layer `layer`, or undefined for full causal attention: Gemma 3's window on its local
 * layers only (its global layers see every earlier key), Mistral's one `sliding_window` on every layer.
 */
export function layerWindow(cfg: LlamaConfig, layer: number): number | undefined {
  if (cfg.gemma3) return cfg.gemma3.slidingLayers[layer] ? cfg.gemma3.slidingWindow : undefined;
  return cfg.slidingWindow;
}

/** The window a kernel over T positions applies: undefined (0 too) or ≥ T is full causal, and compiled as such. */
export function activeWindow(window: number | undefined, T: number): number | undefined {
  if (window === undefined || window === 0 || window >= T) return undefined;
  if (!Number.isInteger(window) || window < 0) throw new Error(`attention: sliding window ${window} is not a positive integer`);
  return window;
}

/**
 * WGSL (u32) of the first tile-aligned key row a block of queries starting at row `i0` can see: its lowest query's
 * lowest key i0 + 1 − w, rounded down to a multiple of `tile`, or 0. `i0`, `tile` are WGSL u32 expressions.
 */
export const firstKeyRow = (w: number, i0: string, tile: string): string => `select(0u, (${i0} + 1u - ${u32(w)}) / ${tile} * ${tile}, ${i0} + 1u > ${u32(w)})`;

/** WGSL (u32) of one past the last query row that sees any key of a block whose last key row is `jLast`. */
export const queryRowsEnd = (w: number, jLast: string): string => `${jLast} + ${u32(w)}`;

/** WGSL condition: key j is inside query i's window (with j ≤ i checked beside it). */
export const inWindow = (w: number, j: string, i: string): string => `${j} + ${u32(w)} > ${i}`;
