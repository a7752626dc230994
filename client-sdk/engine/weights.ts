// The frozen base in the engine's buffers: packing the HF-named weights into `w` (projection matrices, [in, out] each),
// `vec`, the embeddings and the rotary tables, rounded to f16 once on the f16 paths. One home for that upload, so the
// FLoRA merge (merge.ts) reads W0 exactly as construction packed it and putting W0 back (restoreW0, the merged modules
// only) writes the very bytes a fresh engine holds; and where a FLoRA stack's modules sit in `w`, checked against the
// model (stackModules).
import type { Gpt2Config } from '../../proto/model/gpt2-config';
import type { LlamaConfig } from '../../proto/model/llama-config';
import { isLlamaConfig } from '../../proto/model/model-config';
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { canonicalAdapter } from '../../proto/model/lora-layout';
import { loraModules } from '../../proto/model/lora-stack';
import { ropeTables } from '../model/rope';
import { toHalfBits } from './half';
import { packWeights, type ModelLayout } from './layout';
import { packLlamaWeights, transposeInto, type LlamaModelLayout } from './layout-llama';
import type { EnginePath } from './program';

/** What the upload needs of the engine's options. */
export interface BaseSource {
  readonly config: Gpt2Config | LlamaConfig;
  readonly weights: readonly NamedTensor[];
  readonly path: EnginePath;
  readonly seq: number;
}

export type WriteBuffer = (name: string, data: ArrayBufferView) => void;

/** The projection matrices as `w` holds them before any f16 rounding: f32, [in, out] per projection at its offset. */
export function packedProjections(src: BaseSource, layout: ModelLayout | LlamaModelLayout): Float32Array {
  return packBase(src, layout).w;
}

/** A projection of the model by module path, and its shape ([in, out] as `w` holds it). */
export interface ProjectionRef {
  readonly path: string;
  readonly inF: number;
  readonly outF: number;
}

/**
 * W0 of each module as `w` holds it before any f16 rounding, [in, out] f32, as packBase packs it (GPT-2's Conv1D weight
 * itself, not a copy; a Llama nn.Linear transposed), for those modules only: a FLoRA merge, and W0 put back after it,
 * pack no other weight. Each entry packs its module when called, so a merge that uploads module by module holds one
 * module's transposed copy at a time, not the stack's; a missing or misshapen weight is refused here, before any
 * module is packed or merged.
 */
export function stackW0(src: BaseSource, mods: readonly ProjectionRef[]): (() => Float32Array)[] {
  const llama = isLlamaConfig(src.config);
  const prefix = llama ? 'model.' : 'transformer.';
  const byName = new Map(src.weights.map((t) => [t.name.startsWith(prefix) ? t.name.slice(prefix.length) : t.name, t.data]));
  return mods.map((m) => {
    const t = byName.get(`${m.path}.weight`);
    if (!t || t.length !== m.inF * m.outF) throw new Error(`weight ${m.path}.weight missing or not [${m.inF}, ${m.outF}]`);
    if (!llama) return () => t;
    return () => {
      const w = new Float32Array(t.length);
      transposeInto(w, 0, t, m.outF, m.inF);
      return w;
    };
  });
}

function packBase(
  src: BaseSource,
  layout: ModelLayout | LlamaModelLayout,
): { w: Float32Array; vec: Float32Array; embed: Float32Array; head: Float32Array; wpe?: Float32Array } {
  const cfg = src.config;
  if (isLlamaConfig(cfg)) return packLlamaWeights(cfg, layout as LlamaModelLayout, src.weights);
  const byName = new Map<string, Float32Array>();
  for (const t of src.weights) byName.set(t.name.startsWith('transformer.') ? t.name.slice(12) : t.name, t.data);
  const { w, vec } = packWeights(cfg, layout as ModelLayout, byName);
  const wte = byName.get('wte.weight');
  const wpe = byName.get('wpe.weight');
  if (!wte || !wpe) throw new Error('wte/wpe missing');
  if (!cfg.tieWordEmbeddings) throw new Error('the engine supports tied LM heads only (GPT-2 ties them)');
  return { w, vec, embed: wte, head: wte, wpe };
}

/** Writes the frozen base into the engine's buffers (at construction). */
export function uploadBase(src: BaseSource, layout: ModelLayout | LlamaModelLayout, write: WriteBuffer): void {
  const cfg = src.config;
  const { w, vec, embed, head, wpe } = packBase(src, layout);
  write('w', src.path === 'f32' ? w : toHalfBits(w));
  write('wte', embed);
  write('vec', vec);
  if (wpe) write('wpe', wpe);
  if (isLlamaConfig(cfg)) {
    write('rope', llamaRopeTables(cfg, src.seq));
    if (src.path === 'f32' && !cfg.tieWordEmbeddings) write('lmhead', head);
  }
  if (src.path !== 'f32') write('wte16', toHalfBits(head));
}

/**
 * The rotary tables of model/rope.ts, the very numbers the tfjs model rotates by: cos then sin, [seq, head_dim] each;
 * for Gemma 3 a second pair follows for its local layers (rope_local_base_freq, default rope, as model/llama.ts's
 * tablesFor builds them), read from element 2·seq·head_dim on.
 */
export function llamaRopeTables(cfg: LlamaConfig, seq: number): Float32Array {
  const g = cfg.gemma3;
  const sets = [ropeTables(cfg, seq), ...(g ? [ropeTables({ ...cfg, ropeTheta: g.localRopeTheta, rope: { type: 'default' } }, seq)] : [])];
  const out = new Float32Array(sets.length * 2 * seq * cfg.headDim);
  sets.forEach(({ cos, sin }, k) => {
    out.set(cos, 2 * k * cos.length);
    out.set(sin, (2 * k + 1) * cos.length);
  });
  return out;
}

/** Where a projection lives in `w` ([in, out] at `w`), by module path (`h.3.attn.c_attn`, `layers.0.self_attn.q_proj`). */
export function projectionAt(layout: ModelLayout | LlamaModelLayout, path: string): { readonly w: number; readonly inF: number; readonly outF: number } {
  // GPT-2 paths start `h.`, the Llama family's `layers.`: a path of the other family names nothing here.
  const m = ('family' in layout ? /^layers\.(\d+)\.(.+)$/ : /^h\.(\d+)\.(.+)$/).exec(path);
  const layer = m ? layout.layers[Number(m[1])] : undefined;
  const projs = layer?.proj as Readonly<Record<string, { w: number; inF: number; outF: number }>> | undefined;
  const proj = m && projs && Object.hasOwn(projs, m[2]) ? projs[m[2]] : undefined;
  if (!proj) throw new Error(`the engine's model has no projection ${path}`);
  return proj;
}

/** One module of a FLoRA stack, checked against the engine's model: where its W sits in `w`, its rank and factors. */
export interface StackModule {
  readonly path: string;
  readonly offset: number;
  readonly inF: number;
  readonly outF: number;
  readonly r: number;
  readonly a: Float32Array;
  readonly b: Float32Array;
}

/**
 * The stack's modules placed in `w`, or an error naming the first that does not fit the model: a shape other than the
 * projection's, or a rank above K, the largest min(d_in, d_out) of the model's projections (the coordinator keeps a
 * version at rank K at most, in dense form past it), checked before anything is packed or allocated.
 */
export function stackModules(layout: ModelLayout | LlamaModelLayout, stack: TensorList): StackModule[] {
  let k = 0;
  for (const L of layout.layers) for (const P of Object.values(L.proj) as { inF: number; outF: number }[]) k = Math.max(k, Math.min(P.inF, P.outF));
  return loraModules(canonicalAdapter(stack)).map((m) => {
    const P = projectionAt(layout, m.path);
    const [r, inF] = m.a.shape;
    if (inF !== P.inF || m.b.shape[0] !== P.outF) throw new Error(`the stack's ${m.path} is [${m.b.shape[0]}, ${inF}]; the model's is [${P.outF}, ${P.inF}]`);
    if (r > k) throw new Error(`the stack's ${m.path} has rank ${r}, above ${k}, the largest min(d_in, d_out) of the model: no version has more`);
    return { path: m.path, offset: P.w, inF, outF: P.outF, r, a: m.a.data, b: m.b.data };
  });
}

/** Every projection of the model with its module path (`h.3.attn.c_attn`, `layers.0.mlp.down_proj`) and place in `w`. */
function projections(layout: ModelLayout | LlamaModelLayout): (ProjectionRef & { readonly w: number })[] {
  const prefix = 'family' in layout ? 'layers' : 'h';
  return layout.layers.flatMap((L, l) =>
    Object.entries(L.proj as Readonly<Record<string, { w: number; inF: number; outF: number }>>).map(([p, P]) => ({ ...P, path: `${prefix}.${l}.${p}` })),
  );
}

/**
 * Puts W0 back into the modules `paths` of `w` (those a FLoRA merge changed) and nowhere else, one module packed at a
 * time (stackW0) and rounded as construction rounds it (half.ts), so those bytes are again the ones construction wrote;
 * the rest of the model is neither packed nor rewritten. `write(data, byteOffset)` writes into `w`. On the f16 paths a
 * region starting or ending mid-way through a 4-byte word (writeBuffer writes whole words; a model with an odd
 * projection size) takes the neighbouring element along, written with its own W0 (0 past the end: construction's pad).
 */
export function restoreW0(
  src: BaseSource,
  layout: ModelLayout | LlamaModelLayout,
  paths: Iterable<string>,
  write: (data: ArrayBufferView, byteOffset: number) => void,
): void {
  const half = src.path !== 'f32';
  let all: (ProjectionRef & { readonly w: number })[] | undefined;
  // Element j of the packed W0, as a one-value array (a typed-array copy keeps its bits).
  const w0At = (j: number): Float32Array => {
    all ??= projections(layout);
    const P = all.find((p) => j >= p.w && j < p.w + p.inF * p.outF);
    return P ? stackW0(src, [P])[0]().subarray(j - P.w, j - P.w + 1) : new Float32Array(1);
  };
  for (const path of paths) {
    const P = projectionAt(layout, path);
    const w0 = stackW0(src, [{ path, inF: P.inF, outF: P.outF }])[0]();
    if (!half) {
      write(w0, 4 * P.w);
      continue;
    }
    const head = P.w & 1;
    const tail = (P.w + w0.length) & 1;
    let vals = w0;
    if (head || tail) {
      vals = new Float32Array(head + w0.length + tail);
      if (head) vals.set(w0At(P.w - 1));
      vals.set(w0, head);
      if (tail) vals.set(w0At(P.w + w0.length), head + w0.length);
    }
    write(toHalfBits(vals), 2 * (P.w - head));
  }
}
