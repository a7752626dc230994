// Where everything lives: the frozen weights packed into two buffers (matrices `w`, vectors `vec`), the flat
// adapter's per-tensor offsets (PEFT keys sorted, as sft/flat-adapter.ts lays them out), and the sizes of every
// activation buffer for one (model, batch, seq). Pure arithmetic, so CI checks it without a GPU.
import type { NamedTensor } from '../../proto/tensors';
import type { Gpt2Config } from '../../proto/model/gpt2-config';
import { BLOCK_PROJECTIONS } from '../../proto/model/gpt2-config';
import { parsePeftKey } from '../../proto/model/lora-layout';

export type Projection = (typeof BLOCK_PROJECTIONS)[number];

export interface ProjLayout {
  readonly layer: number;
  readonly proj: Projection;
  readonly inF: number;
  readonly outF: number;
  /** Element offsets of W [in, out] in `w`, of the bias in `vec`. */
  readonly w: number;
  readonly bias: number;
  /** LoRA: offsets of A [r, in] and B [out, r] in the flat adapter, and of its low-rank input in `low`. */
  readonly lora?: { readonly a: number; readonly b: number; readonly low: number };
}

export interface LayerLayout {
  readonly ln1: { readonly gamma: number; readonly beta: number };
  readonly ln2: { readonly gamma: number; readonly beta: number };
  readonly proj: Readonly<Record<Projection, ProjLayout>>;
}

export interface ModelLayout {
  readonly layers: readonly LayerLayout[];
  readonly lnf: { readonly gamma: number; readonly beta: number };
  /** Elements of `w` and `vec`. */
  readonly wSize: number;
  readonly vecSize: number;
  /** Flat adapter length and the number of LoRA modules (each has a [rows, r] low-rank input slot). */
  readonly adapterSize: number;
  readonly loraModules: number;
  readonly r: number;
}

/** Tensor offsets of a sorted, canonical adapter, keyed `path:A` / `path:B`. */
export function adapterOffsets(adapter: readonly NamedTensor[]): Map<string, { offset: number; shape: readonly number[] }> {
  const out = new Map<string, { offset: number; shape: readonly number[] }>();
  let off = 0;
  for (const t of adapter) {
    const k = parsePeftKey(t.name);
    if (!k) throw new Error(`'${t.name}' is not a LoRA tensor`);
    out.set(`${k.path}:${k.which}`, { offset: off, shape: t.shape });
    off += t.data.length;
  }
  return out;
}

export function modelLayout(cfg: Gpt2Config, adapter: readonly NamedTensor[], rows: number): ModelLayout {
  const D = cfg.nEmbd;
  const F = cfg.nInner;
  const offs = adapterOffsets(adapter);
  // Every module has the same rank (assertAdapterLayout checked the adapter against the LoRA config).
  const firstA = [...offs].find(([k]) => k.endsWith(':A'));
  const r = firstA ? firstA[1].shape[0] : 0;
  let w = 0;
  let vec = 0;
  let mods = 0;
  const dims: Record<Projection, [number, number]> = {
    'attn.c_attn': [D, 3 * D],
    'attn.c_proj': [D, D],
    'mlp.c_fc': [D, F],
    'mlp.c_proj': [F, D],
  };
  const layers: LayerLayout[] = [];
  for (let l = 0; l < cfg.nLayer; l++) {
    const ln1 = { gamma: vec, beta: vec + D };
    const ln2 = { gamma: vec + 2 * D, beta: vec + 3 * D };
    vec += 4 * D;
    const proj = {} as Record<Projection, ProjLayout>;
    for (const p of BLOCK_PROJECTIONS) {
      const [inF, outF] = dims[p];
      const a = offs.get(`h.${l}.${p}:A`);
      const b = offs.get(`h.${l}.${p}:B`);
      if ((a === undefined) !== (b === undefined)) throw new Error(`LoRA module h.${l}.${p} lacks A or B`);
      const lora = a && b ? { a: a.offset, b: b.offset, low: mods++ * rows * r } : undefined;
      proj[p] = { layer: l, proj: p, inF, outF, w, bias: vec, lora };
      w += inF * outF;
      vec += outF;
    }
    layers.push({ ln1, ln2, proj });
  }
  const lnf = { gamma: vec, beta: vec + D };
  vec += 2 * D;
  const adapterSize = adapter.reduce((s, t) => s + t.data.length, 0);
  return { layers, lnf, wSize: w, vecSize: vec, adapterSize, loraModules: mods, r };
}

/** Fills the `w` and `vec` host arrays from HF-named weights (names without the `transformer.` prefix). */
export function packWeights(cfg: Gpt2Config, layout: ModelLayout, weights: ReadonlyMap<string, Float32Array>): { w: Float32Array; vec: Float32Array } {
  const w = new Float32Array(layout.wSize);
  const vec = new Float32Array(layout.vecSize);
  const get = (name: string): Float32Array => {
    const t = weights.get(name);
    if (!t) throw new Error(`weight ${name} missing`);
    return t;
  };
  layout.layers.forEach((L, l) => {
    vec.set(get(`h.${l}.ln_1.weight`), L.ln1.gamma);
    vec.set(get(`h.${l}.ln_1.bias`), L.ln1.beta);
    vec.set(get(`h.${l}.ln_2.weight`), L.ln2.gamma);
    vec.set(get(`h.${l}.ln_2.bias`), L.ln2.beta);
    for (const p of BLOCK_PROJECTIONS) {
      w.set(get(`h.${l}.${p}.weight`), L.proj[p].w);
      vec.set(get(`h.${l}.${p}.bias`), L.proj[p].bias);
    }
  });
  vec.set(get('ln_f.weight'), layout.lnf.gamma);
  vec.set(get('ln_f.bias'), layout.lnf.beta);
  if (cfg.nLayer !== layout.layers.length) throw new Error('layout does not match the config');
  return { w, vec };
}
