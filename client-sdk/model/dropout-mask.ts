// LoRA dropout's mask, defined once for both trainers: the tfjs model (gpt2.ts, llama.ts) fills its masks with the
// CPU function here, and the WebGPU engine (engine/dropout.ts) evaluates the same integer hash in WGSL, so the two
// train the very same thing (test/engine-dropout.test.ts checks the CPU side, test/gpu-engine-dropout.ts the GPU
// side bit for bit). The mask is counter-based: each element is a pure function of (plan seed, local step, layer,
// module, token (sequence b, position t), feature), with no state carried between steps or modules, so a rerun is
// bit-identical, a kernel can recompute any element wherever it needs it, and no GPU buffer holds a mask.
// PEFT draws an independent mask per module (modules that share an input, like Llama's q/k/v, still get their own).
// Element: dropped when mix32(rowKey ^ colKey(j)) < threshold(p), else kept and scaled by 1/(1 − p) (inverted
// dropout); rowKey = mix32(mix32(moduleKey ^ b) + t), colKey(j) = mix32(j + 0x9e3779b9). Token rows use (b, t),
// not a flat row index, so the engine's padded window and tfjs's packed one give the same mask.
import { hashString } from '../../proto/prng';

/** Chris Wellons' "lowbias32": a bijective 32-bit integer hash with very low bias (u32 in, u32 out). */
export function mix32(v: number): number {
  let x = v;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

const GOLDEN = 0x9e3779b9;
/** Separates the dropout keys from any other use of the plan seed. */
const DROPOUT_SALT = 0x6c6f7261; // "lora"

/** The key of one local optimiser step (0-based, counted as the trainers' step loops count) of a plan seed. */
export function dropoutStepKey(seed: number, step: number): number {
  const s = Math.floor(seed);
  const lo = s >>> 0;
  const hi = Math.floor(s / 4294967296) >>> 0;
  return mix32(mix32(mix32(lo ^ DROPOUT_SALT) ^ hi) + (step >>> 0));
}

/** The key of one LoRA module at one step: `proj` is its name within the block ('attn.c_attn', 'self_attn.q_proj'). */
export function dropoutModuleKey(stepKey: number, layer: number, proj: string): number {
  return mix32(stepKey ^ mix32(hashString(proj) + layer));
}

/** A module path as the tfjs models name it ('h.3.attn.c_attn', 'layers.0.mlp.up_proj') → its layer and proj. */
export function modulePathParts(path: string): { layer: number; proj: string } {
  const m = /(?:^|\.)(\d+)\.(.+)$/.exec(path);
  if (!m) throw new Error(`no layer index in module path ${path}`);
  return { layer: Number(m[1]), proj: m[2] };
}

/** Hash values below this are dropped: p of the 2³² values (to within 2⁻³²). */
export function dropoutThreshold(p: number): number {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout ${p} outside [0, 1)`);
  return Math.min(0xffffffff, Math.floor(p * 4294967296));
}

/** What a kept element is multiplied by: 1/(1 − p) rounded to f32, as both trainers multiply in f32. */
export function dropoutKeepScale(p: number): number {
  return Math.fround(1 / (1 - p));
}

/** The hash bits of element (b, t, j) of a module's mask; dropped iff below dropoutThreshold(p). */
export function dropoutBits(moduleKey: number, b: number, t: number, j: number): number {
  return mix32(mix32(mix32(moduleKey ^ b) + t) ^ mix32(j + GOLDEN));
}

/**
 * The inverted-dropout mask of one module's input x [rows, cols] whose rows are b·seq + t: 0 where dropped, else
 * 1/(1 − p). One hash per element (the row and column keys are computed once per row and column).
 */
export function fillDropoutMask(out: Float32Array, moduleKey: number, rows: number, cols: number, seq: number, p: number): Float32Array {
  if (out.length !== rows * cols) throw new Error(`mask of ${out.length} values for [${rows}, ${cols}]`);
  const thr = dropoutThreshold(p);
  const keep = dropoutKeepScale(p);
  const colKey = new Uint32Array(cols);
  for (let j = 0; j < cols; j++) colKey[j] = mix32(j + GOLDEN);
  for (let m = 0; m < rows; m++) {
    const rk = mix32(mix32(moduleKey ^ Math.floor(m / seq)) + (m % seq));
    const o = m * cols;
    for (let j = 0; j < cols; j++) out[o + j] = mix32(rk ^ colKey[j]) < thr ? 0 : keep;
  }
  return out;
}

/**
 * The same mask element in WGSL: `fn lora_keep(key: u32, m: u32, j: u32) -> f32` for row m = b·seq + t and
 * feature j, with seq, the threshold and the keep scale baked in (one dropout setting per step program).
 */
export function dropoutMaskWgsl(seq: number, p: number): string {
  const thr = dropoutThreshold(p);
  const keep = dropoutKeepScale(p).toPrecision(9);
  return `
fn mix32(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u;
  x *= ${0x7feb352d}u;
  x ^= x >> 15u;
  x *= ${0x846ca68b}u;
  x ^= x >> 16u;
  return x;
}
fn lora_keep(key: u32, m: u32, j: u32) -> f32 {
  let rk = mix32(mix32(key ^ (m / ${seq}u)) + m % ${seq}u);
  return select(${/[.e]/.test(keep) ? keep : keep + '.0'}, 0.0, mix32(rk ^ mix32(j + ${GOLDEN}u)) < ${thr}u);
}`;
}
