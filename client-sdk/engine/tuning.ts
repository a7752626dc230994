// Kernel choices of the step that change speed but not what is computed: which tensor-core tile each product
// uses, whether the forward LoRA term reads a transposed copy of lora_B (coalesced loads, same values in the same
// order, so bit-identical), whether the LoRA side products u = x·Aᵀ and du = s·dy·B split their long K, and
// which attention forward kernel runs, and whether a tensor-core product's epilogue runs as a pass of its own.
// The tc path's defaults are what the H200 measurements chose (DEFAULT_TUNING, bench/RESULTS.md §4d); the f32 and
// f16 paths run none. FEDTUNE_ENGINE_TUNE (JSON) overrides them for benchmarks (bench/engine-profile.ts times
// variants inside the real step) and for the GPU checks.
import type { TcTile } from './matmul-tc-tiled';

export interface EngineTuning {
  /** [label regex, tile name] pairs: the first whose regex matches a tensor-core product's label picks its tile. */
  readonly tiles?: readonly (readonly [string, string])[];
  /** Forward LoRA term from a transposed copy of every lora_B, written at the start of the step. */
  readonly loraT?: boolean;
  /** K elements per split-K slice of the LoRA side products u and du (0 or absent: no split). */
  readonly loraSplitK?: number;
  /** Attention forward tiled over query and key blocks, 8 threads per row (attention-tiled.ts). */
  readonly attnTiled?: boolean;
  /** Tensor-core products store the bare product and run their epilogue as a separate pass (epilogue-pass.ts). */
  readonly epiSplit?: boolean;
  /** Attention tiles as vec4<f32> (backward: attention-backward-vec.ts; the tiled forward's vec form); hd % 32 = 0. */
  readonly attnVec?: boolean;
}

/**
 * What the tc path runs (bench/RESULTS.md §4d: per-kernel GPU timestamps of the GPT-2-small batch-32 step on an
 * H200, each choice against none, `bench/engine-profile.ts`): the epilogue as its own pass with lora_B transposed
 * (133.6 → 111.2 ms a step together; the epilogue pass alone reads lora_B r floats apart and gains little), the
 * LoRA side products split 256 deep (−2.5 ms), the vec4 attention tiles (backward dq 11.5 → 9.4 ms, dk/dv 12.4 →
 * 11.8) and the tiled attention forward in its vec4 form (7.8 → 7.1 ms; its scalar form was slower, 9.9).
 * The f32 and f16 paths, and the Llama family, keep the kernels as they were measured before these choices (NO_TUNING).
 */
export const DEFAULT_TUNING: EngineTuning = { loraT: true, loraSplitK: 256, epiSplit: true, attnTiled: true, attnVec: true };

/** None of the choices: every kernel as it was before tuning.ts. */
export const NO_TUNING: EngineTuning = {};

/** The choices a path runs by default: measured on GPT-2's tc path only, so the Llama family keeps its kernels too. */
export const defaultTuning = (path: 'f32' | 'f16' | 'tc', family: 'gpt2' | 'llama' = 'gpt2'): EngineTuning =>
  path === 'tc' && family === 'gpt2' ? DEFAULT_TUNING : NO_TUNING;

/**
 * A tile from its probe name (bench/tc-matmul-probe-kit.ts): `s{sgm}x{sgn}-t{tm}x{tn}-k{bk}[-db]-p{pad}-v{1|4}`
 * (staged through workgroup memory) or `d{sgm}x{sgn}-t{tm}x{tn}` (straight from storage).
 */
export function parseTcTile(name: string): TcTile {
  const s = /^s(\d)x(\d)-t(\d)x(\d)-k(\d+)(-db)?-p(\d+)-v([14])$/.exec(name);
  if (s) {
    const [sgm, sgn, tm, tn, bk] = [s[1], s[2], s[3], s[4], s[5]].map(Number);
    return { sgm, sgn, tm, tn, bk, mode: 'staged', double: !!s[6], pad: Number(s[7]), vec: s[8] === '4' };
  }
  const d = /^d(\d)x(\d)-t(\d)x(\d)$/.exec(name);
  if (d) {
    const [sgm, sgn, tm, tn] = [d[1], d[2], d[3], d[4]].map(Number);
    return { sgm, sgn, tm, tn, bk: 16, mode: 'direct' };
  }
  throw new Error(`'${name}' is not a tensor-core tile name (e.g. s2x2-t4x4-k32-db-p8-v1, d2x2-t4x4)`);
}

/** Checks a tuning (unknown keys, bad tile names, bad regexes) and returns it. */
export function checkTuning(t: EngineTuning): EngineTuning {
  const known = new Set(['tiles', 'loraT', 'loraSplitK', 'attnTiled', 'epiSplit', 'attnVec']);
  for (const k of Object.keys(t)) if (!known.has(k)) throw new Error(`engine tuning: unknown key '${k}'`);
  for (const [re, tile] of t.tiles ?? []) {
    new RegExp(re);
    parseTcTile(tile);
  }
  if (t.loraSplitK !== undefined && !(Number.isInteger(t.loraSplitK) && t.loraSplitK >= 0)) throw new Error('engine tuning: loraSplitK must be an integer ≥ 0');
  return t;
}

/** The path's defaults with FEDTUNE_ENGINE_TUNE's keys laid over them. */
export function tuningFromEnv(
  env: string | undefined = process.env.FEDTUNE_ENGINE_TUNE,
  path: 'f32' | 'f16' | 'tc' = 'tc',
  family: 'gpt2' | 'llama' = 'gpt2',
): EngineTuning {
  const base = defaultTuning(path, family);
  if (env === undefined || env.trim() === '') return base;
  let parsed: unknown;
  try {
    parsed = JSON.parse(env);
  } catch {
    throw new Error('FEDTUNE_ENGINE_TUNE is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('FEDTUNE_ENGINE_TUNE must be a JSON object');
  return checkTuning({ ...base, ...(parsed as EngineTuning) });
}

/** The tile a tuning names for a product's label, if any. */
export function tileFor(t: EngineTuning | undefined, label: string): TcTile | undefined {
  const hit = t?.tiles?.find(([re]) => new RegExp(re).test(label));
  return hit ? parseTcTile(hit[1]) : undefined;
}
