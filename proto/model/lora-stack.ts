// LoRA adapters as stacks of rank components, which FLoRA (lora.aggregation 'flora') builds and both sides read:
// component j of a module is row j of lora_A with column j of lora_B, and the module's product B·A is the sum of
// its components' products. Concatenating two adapters' components (A's rows, B's columns) adds their products;
// zero components add nothing. Nothing here scales: a stack's adapter_config has lora_alpha = r (scaling 1), the
// scalings having been folded into lora_B where the components were made (the sites, coordinator/flora-stack.ts).
import type { NamedTensor, TensorList } from '../tensors';
import { sortByName } from '../tensors';
import { parsePeftKey } from './lora-layout';

export interface LoraModule {
  readonly path: string;
  /** [r, in] */
  readonly a: NamedTensor;
  /** [out, r] */
  readonly b: NamedTensor;
}

/** An adapter's modules, by path (sorted); every module needs both factors of one rank. */
export function loraModules(adapter: TensorList): LoraModule[] {
  const by = new Map<string, { a?: NamedTensor; b?: NamedTensor }>();
  for (const t of adapter) {
    const k = parsePeftKey(t.name);
    if (!k) throw new Error(`'${t.name}' is not a LoRA tensor`);
    if (t.shape.length !== 2) throw new Error(`LoRA tensor ${t.name} must be 2-D`);
    const e = by.get(k.path) ?? {};
    if (e[k.which === 'A' ? 'a' : 'b']) throw new Error(`LoRA tensor ${t.name} appears twice`);
    e[k.which === 'A' ? 'a' : 'b'] = t;
    by.set(k.path, e);
  }
  return [...by.entries()]
    .sort(([p], [q]) => (p < q ? -1 : p > q ? 1 : 0))
    .map(([path, { a, b }]) => {
      if (!a || !b) throw new Error(`LoRA module ${path} lacks lora_${a ? 'B' : 'A'}`);
      if (a.shape[0] !== b.shape[1]) throw new Error(`LoRA module ${path} has rank ${a.shape[0]} in lora_A and ${b.shape[1]} in lora_B`);
      return { path, a, b };
    });
}

/** The rank every module of `adapter` has (a stack's R); an error when modules differ. */
export function uniformRank(adapter: TensorList): number {
  let r: number | undefined;
  for (const m of loraModules(adapter)) {
    if (r !== undefined && m.a.shape[0] !== r) throw new Error(`the adapter mixes ranks ${r} and ${m.a.shape[0]} (${m.path})`);
    r = m.a.shape[0];
  }
  if (r === undefined) throw new Error('the adapter has no LoRA module');
  return r;
}

/** Every lora_B value is zero: the adapter's product is zero whatever lora_A holds (a version 0's seeded init). */
export function productIsZero(adapter: TensorList): boolean {
  return loraModules(adapter).every((m) => m.b.data.every((v) => v === 0));
}

/** The adapter's modules at rank `rank`, every value zero, named as `like` names them (FLoRA's upload layout). */
export function zeroAdapter(like: TensorList, rank: number): NamedTensor[] {
  const out: NamedTensor[] = [];
  for (const m of loraModules(like)) {
    const [, n] = m.a.shape;
    const [o] = m.b.shape;
    out.push({ name: m.a.name, dtype: 'float32', shape: [rank, n], data: new Float32Array(rank * n) });
    out.push({ name: m.b.name, dtype: 'float32', shape: [o, rank], data: new Float32Array(o * rank) });
  }
  return sortByName(out);
}

/** The components of `first` then those of `second`, module by module (same modules, names from `first`). */
export function concatComponents(first: TensorList, second: TensorList): NamedTensor[] {
  const f = loraModules(first);
  const s = loraModules(second);
  if (f.length !== s.length || f.some((m, i) => m.path !== s[i].path)) throw new Error('concatComponents: the two adapters target different modules');
  const out: NamedTensor[] = [];
  f.forEach((m, i) => {
    const x = s[i];
    const [r1, n] = m.a.shape;
    const [o, r2] = x.b.shape;
    if (x.a.shape[1] !== n || m.b.shape[0] !== o)
      throw new Error(`concatComponents: ${m.path} is [${m.b.shape}]·[${m.a.shape}] against [${x.b.shape}]·[${x.a.shape}]`);
    const a = new Float32Array((r1 + r2) * n);
    a.set(m.a.data, 0);
    a.set(x.a.data, r1 * n);
    const b = new Float32Array(o * (r1 + r2));
    for (let row = 0; row < o; row++) {
      b.set(m.b.data.subarray(row * r1, (row + 1) * r1), row * (r1 + r2));
      b.set(x.b.data.subarray(row * r2, (row + 1) * r2), row * (r1 + r2) + r1);
    }
    out.push({ name: m.a.name, dtype: 'float32', shape: [r1 + r2, n], data: a });
    out.push({ name: m.b.name, dtype: 'float32', shape: [o, r1 + r2], data: b });
  });
  return sortByName(out);
}

/** The first `rank` components of every module (A's leading rows, B's leading columns). */
export function leadingComponents(adapter: TensorList, rank: number): NamedTensor[] {
  const out: NamedTensor[] = [];
  for (const m of loraModules(adapter)) {
    const [r, n] = m.a.shape;
    const [o] = m.b.shape;
    if (rank > r) throw new RangeError(`${m.path} has rank ${r}, fewer than ${rank}`);
    const b = new Float32Array(o * rank);
    for (let row = 0; row < o; row++) b.set(m.b.data.subarray(row * r, row * r + rank), row * rank);
    out.push({ name: m.a.name, dtype: 'float32', shape: [rank, n], data: m.a.data.slice(0, rank * n) });
    out.push({ name: m.b.name, dtype: 'float32', shape: [o, rank], data: b });
  }
  return sortByName(out);
}

/** Zero components appended up to `rank` (the product is unchanged). */
export function padComponents(adapter: TensorList, rank: number): NamedTensor[] {
  const r = uniformRank(adapter);
  if (rank < r) throw new RangeError(`padComponents: rank ${r} is above ${rank}`);
  return rank === r ? sortByName([...adapter]) : concatComponents(adapter, zeroAdapter(adapter, rank - r));
}

/** Whether every component from `rank` on is zero in both factors of every module. */
export function zeroBeyond(adapter: TensorList, rank: number): boolean {
  return loraModules(adapter).every((m) => {
    const [r, n] = m.a.shape;
    if (rank >= r) return true;
    if (!m.a.data.subarray(rank * n).every((v) => v === 0)) return false;
    const [o] = m.b.shape;
    for (let row = 0; row < o; row++) for (let j = rank; j < r; j++) if (m.b.data[row * r + j] !== 0) return false;
    return true;
  });
}

/** The rank past which a stack is no smaller than a dense delta in every module: max over modules of min(d_in, d_out). */
export function denseRank(adapter: TensorList): number {
  return Math.max(...loraModules(adapter).map((m) => Math.min(m.a.shape[1], m.b.shape[0])));
}

/**
 * The same products at rank `rank` (≥ every module's min(d_in, d_out)) in dense factored form: per module the
 * product ΔW = B·A (accumulated in float64, rounded once to float32) with the identity as the other factor, zero
 * components after. For d_in ≤ d_out: A = [I; 0], B = [ΔW, 0]; else B = [I, 0], A = [ΔW; 0]. Still a PEFT adapter
 * (one rank for every module) whose product is ΔW up to that one rounding.
 */
export function compactComponents(adapter: TensorList, rank: number): NamedTensor[] {
  const out: NamedTensor[] = [];
  for (const m of loraModules(adapter)) {
    const [r, n] = m.a.shape;
    const [o] = m.b.shape;
    if (rank < Math.min(n, o)) throw new RangeError(`compactComponents: rank ${rank} is below min(d_in, d_out) = ${Math.min(n, o)} of ${m.path}`);
    // A version already in this form has an identity factor: a sparse row of A (an identity row holds one value) is
    // visited at its non-zero entries only, and zero B entries are skipped, so compacting again costs
    // O((d_in + d_out)·K + d_out·d_in·r_round) rather than d_out·d_in·K. Dense rows take the plain contiguous loop.
    const sparse = Array.from({ length: r }, (_, j) => {
      const idx: number[] = [];
      for (let i = 0; i < n; i++) if (m.a.data[j * n + i] !== 0) idx.push(i);
      return idx.length * 8 < n ? Int32Array.from(idx) : null;
    });
    const dw = new Float64Array(o * n);
    const ad = m.a.data;
    for (let row = 0; row < o; row++) {
      const at = row * n;
      for (let j = 0; j < r; j++) {
        const b = m.b.data[row * r + j];
        if (b === 0) continue;
        const sp = sparse[j];
        const from = j * n;
        if (sp) for (let k = 0; k < sp.length; k++) dw[at + sp[k]] += b * ad[from + sp[k]];
        else for (let i = 0; i < n; i++) dw[at + i] += b * ad[from + i];
      }
    }
    const a = new Float32Array(rank * n);
    const b = new Float32Array(o * rank);
    if (n <= o) {
      for (let i = 0; i < n; i++) a[i * n + i] = 1;
      for (let row = 0; row < o; row++) for (let i = 0; i < n; i++) b[row * rank + i] = dw[row * n + i];
    } else {
      for (let row = 0; row < o; row++) b[row * rank + row] = 1;
      a.set(dw, 0); // rows 0..o-1 of A are ΔW's rows
    }
    out.push({ name: m.a.name, dtype: 'float32', shape: [rank, n], data: a });
    out.push({ name: m.b.name, dtype: 'float32', shape: [o, rank], data: b });
  }
  return sortByName(out);
}
