// C = op(A)·op(B) with a fused epilogue: the spec every matmul of the step is written in, and its register-tiled
// kernel (the f32 path, and the fallback for f16 operands without subgroup matrices). Each thread accumulates
// TM×TN outputs in registers from BK-deep tiles staged in workgroup memory; operands may be f32 or f16 (f16 is
// widened on load, so the f16 data path can be checked on adapters without tensor cores). Out-of-range rows,
// columns and k are zero-filled on load and skipped on store, so no shape needs padding.
// Split-K writes S partial [M, N] blocks that reduce.ts sums in a fixed order: deterministic, no float atomics.
import { epilogueBindings, epilogueWgsl, type Epilogue, type Ref } from './epilogue';
import { ceilDiv, header, mergeBindings, u32, type Binding, type Kernel, type StepShape } from './kernel';
import { dropoutBinding, dropoutWgsl, keepExpr, type DropoutSpec } from './dropout';

export interface Operand extends Ref {
  readonly type: 'f32' | 'f16';
  /** A stored [K, M] instead of [M, K]; B stored [N, K] instead of [K, N]. */
  readonly trans: boolean;
  /** Row stride of the stored matrix when it is not the natural one (e.g. logits padded to a multiple of 8). */
  readonly ld?: number;
  /**
   * LoRA dropout on this operand (dropout.ts): each element read is multiplied by the module's mask at (token row,
   * feature), i.e. (m, k) of A or (k, n) of B; stored untransposed only. The register-tiled kernel only.
   */
  readonly dropout?: DropoutSpec;
}

export interface MatmulSpec {
  readonly label: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  /** Rows actually present this step are the step's scored pairs (M is then their upper bound). */
  readonly rowsArePairs?: boolean;
  readonly a: Operand;
  readonly b: Operand;
  /** Split K into this many chunks (≥ 2): out receives S blocks of [M, N] at out.offset + s·M·N. */
  readonly splitK?: number;
  readonly epi: Epilogue;
}

export interface TileShape {
  /** Threads per workgroup in x (columns) and y (rows). */
  readonly wx: number;
  readonly wy: number;
  /** Outputs per thread in rows (tm) and columns (tn). */
  readonly tm: number;
  readonly tn: number;
  readonly bk: number;
}

/** A tile shape for a problem: wide tiles for big outputs, narrow ones for rank-r outputs. */
export function chooseTile(M: number, N: number): TileShape {
  if (N <= 16) return { wx: 16, wy: 16, tm: 4, tn: 1, bk: 16 };
  if (M <= 16) return { wx: 16, wy: 16, tm: 1, tn: 4, bk: 16 };
  // 8×8 outputs per thread measured 2 TFLOP/s on the H200 (register spills), 4×4 about 15 (bench/RESULTS.md).
  return { wx: 16, wy: 16, tm: 4, tn: 4, bk: 16 };
}

export function matmulGrid(spec: MatmulSpec, t: TileShape, rows: number): [number, number, number] {
  return [ceilDiv(spec.N, t.wx * t.tn), ceilDiv(rows, t.wy * t.tm), spec.splitK ?? 1];
}

/** Row strides of the stored operands. */
export const lda = (s: MatmulSpec): number => s.a.ld ?? (s.a.trans ? s.M : s.K);
export const ldb = (s: MatmulSpec): number => s.b.ld ?? (s.b.trans ? s.K : s.N);

/** Bindings of a matmul: A, B, then the epilogue's (deduplicated), then `step` when rows are per-step. */
export function matmulBindings(spec: MatmulSpec): Binding[] {
  const bs: Binding[] = [
    { buffer: spec.a.buffer, type: spec.a.type, write: false },
    { buffer: spec.b.buffer, type: spec.b.type, write: false },
    ...epilogueBindings(spec.epi),
  ];
  if (spec.rowsArePairs) bs.push({ buffer: 'step', type: 'u32', write: false });
  if (spec.a.dropout || spec.b.dropout) bs.push(dropoutBinding);
  return mergeBindings(bs);
}

/** The row limit expression: a constant, or the step's pair count (step[0]). */
export function rowLimit(spec: MatmulSpec): string {
  return spec.rowsArePairs ? `min(step[0], ${u32(spec.M)})` : u32(spec.M);
}

export function checkSpec(spec: MatmulSpec): void {
  for (const [k, v] of [
    ['M', spec.M],
    ['N', spec.N],
    ['K', spec.K],
  ] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`${spec.label}: ${k} = ${v}`);
  }
  if (spec.splitK !== undefined && spec.splitK < 2) throw new Error(`${spec.label}: bad splitK`);
  if ((spec.a.dropout && spec.a.trans) || (spec.b.dropout && spec.b.trans)) throw new Error(`${spec.label}: dropout on a transposed operand`);
}

export function tiledMatmul(spec: MatmulSpec, tile: TileShape = chooseTile(spec.M, spec.N)): Kernel {
  checkSpec(spec);
  const { M, N, K, a, b } = spec;
  const { wx, wy, tm, tn, bk } = tile;
  const BM = wy * tm;
  const BN = wx * tn;
  const threads = wx * wy;
  if ((BM * bk) % threads || (BN * bk) % threads) throw new Error(`${spec.label}: tile ${JSON.stringify(tile)} does not split evenly`);
  const S = spec.splitK ?? 1;
  const kChunk = Math.ceil(K / S / bk) * bk;
  const bindings = matmulBindings(spec);
  const w = (x: string, t: 'f32' | 'f16'): string => (t === 'f16' ? `f32(${x})` : x);
  // A tile element i → (mm, kk): along k for [M, K] storage (coalesced reads), along m for [K, M].
  const loadA = a.trans ? `let mm = i % ${u32(BM)}; let kk = i / ${u32(BM)};` : `let kk = i % ${u32(bk)}; let mm = i / ${u32(bk)};`;
  const idxA = a.trans ? `(k0 + kk) * ${u32(lda(spec))} + m0 + mm` : `(m0 + mm) * ${u32(lda(spec))} + k0 + kk`;
  const loadB = b.trans ? `let kk = i % ${u32(bk)}; let nn = i / ${u32(bk)};` : `let nn = i % ${u32(BN)}; let kk = i / ${u32(BN)};`;
  const idxB = b.trans ? `(n0 + nn) * ${u32(ldb(spec))} + k0 + kk` : `(k0 + kk) * ${u32(ldb(spec))} + n0 + nn`;
  // Dropout fused into the loads: the element is multiplied by its mask value as it is staged (dropout.ts).
  const dropA = a.dropout ? ` * ${keepExpr(a.dropout, 'm0 + mm', 'k0 + kk')}` : '';
  const dropB = b.dropout ? ` * ${keepExpr(b.dropout, 'k0 + kk', 'n0 + nn')}` : '';
  const drop = a.dropout ?? b.dropout;
  const dropFns = drop && !spec.epi.lora?.dropout ? dropoutWgsl(drop) : '';
  const code = `${header(bindings)}
${epilogueWgsl(spec.epi, N)}${dropFns}
var<workgroup> As: array<f32, ${BM * bk}>;
var<workgroup> Bs: array<f32, ${BN * bk}>;
@compute @workgroup_size(${wx}, ${wy}, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_id) lid: vec3u, @builtin(local_invocation_index) li: u32) {
  let mLim = ${rowLimit(spec)};
  let m0 = wg.y * ${u32(BM)};
  let n0 = wg.x * ${u32(BN)};
  if (m0 >= mLim) { return; }
  let kBegin = wg.z * ${u32(kChunk)};
  let kEnd = min(${u32(K)}, kBegin + ${u32(kChunk)});
  var acc: array<array<f32, ${tn}>, ${tm}>;
  for (var k0 = kBegin; k0 < kEnd; k0 += ${u32(bk)}) {
    for (var r = 0u; r < ${u32((BM * bk) / threads)}; r++) {
      let i = li + r * ${u32(threads)};
      ${loadA}
      var x = 0.0;
      if (m0 + mm < mLim && k0 + kk < kEnd) { x = ${w(`${a.buffer}[${u32(a.offset)} + ${idxA}]`, a.type)}${dropA}; }
      As[kk * ${u32(BM)} + mm] = x;
    }
    for (var r = 0u; r < ${u32((BN * bk) / threads)}; r++) {
      let i = li + r * ${u32(threads)};
      ${loadB}
      var x = 0.0;
      if (n0 + nn < ${u32(N)} && k0 + kk < kEnd) { x = ${w(`${b.buffer}[${u32(b.offset)} + ${idxB}]`, b.type)}${dropB}; }
      Bs[kk * ${u32(BN)} + nn] = x;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${u32(bk)}; kk++) {
      var av: array<f32, ${tm}>;
      var bv: array<f32, ${tn}>;
      for (var i = 0u; i < ${u32(tm)}; i++) { av[i] = As[kk * ${u32(BM)} + lid.y + i * ${u32(wy)}]; }
      for (var j = 0u; j < ${u32(tn)}; j++) { bv[j] = Bs[kk * ${u32(BN)} + lid.x + j * ${u32(wx)}]; }
      for (var i = 0u; i < ${u32(tm)}; i++) {
        for (var j = 0u; j < ${u32(tn)}; j++) { acc[i][j] = fma(av[i], bv[j], acc[i][j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${u32(tm)}; i++) {
    let m = m0 + lid.y + i * ${u32(wy)};
    if (m >= mLim) { continue; }
    for (var j = 0u; j < ${u32(tn)}; j++) {
      let n = n0 + lid.x + j * ${u32(wx)};
      if (n < ${u32(N)}) { epi(m, n, acc[i][j], wg.z * ${u32(M * N)}); }
    }
  }
}`;
  const grid = spec.rowsArePairs ? (s: StepShape) => matmulGrid(spec, tile, Math.min(s.pairs, M)) : matmulGrid(spec, tile, M);
  return { label: spec.label, code, bindings, grid };
}
