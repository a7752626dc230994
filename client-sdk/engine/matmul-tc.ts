// The tensor-core matmul: f16 operands, f32 accumulation on Dawn's subgroup matrices (16×16×16), same MatmulSpec
// and epilogue as the register-tiled kernel. tcMatmul picks the tiled kernel's shape (matmul-tc-tiled.ts) from
// what bench/tc-matmul-probe.ts measured on the H200 (bench/RESULTS.md §4c): 128×128 blocks of four subgroups,
// A and B staged through workgroup memory 32 deep with two buffers, except split-K products (the LM head's dhs,
// K = vocabulary) where the subgroups load straight from storage. Every shape accumulates each output over k in
// the same increasing order, so results are deterministic and equal across tile shapes.
//
// tcMatmulSimple is the first kernel (kept as the probe's baseline and as the fallback when the workgroup memory is
// too small): one 32-thread subgroup per workgroup computes a 64×64 block as 4×4 result matrices. Subgroup-matrix
// loads and stores must take workgroup-uniform offsets under Dawn's default uniformity rule, so a workgroup holds
// exactly one subgroup. Interior blocks load straight from storage (col_major covers transposed storage); edge
// blocks and the K tail go through bounds-checked, zero-filled staging tiles in workgroup memory.
// Assumes subgroup size 32 (NVIDIA); capabilities.ts only selects this path when the adapter reports it.
import { epilogueWgsl } from './epilogue';
import { ceilDiv, header, u32, type Kernel, type StepShape } from './kernel';
import { checkSpec, lda, ldb, matmulBindings, rowLimit, type MatmulSpec } from './matmul';
import { tcMatmulTiled, type TcTile } from './matmul-tc-tiled';

const TM = 4;
const TN = 4;
const BM = TM * 16;
const BN = TN * 16;

/** The measured best tile for a product (bench/tc-matmul-probe.ts on the H200, 2026-11-29). */
export function chooseTcTile(spec: MatmulSpec): TcTile {
  // dhs (K = 50,257, split 25 ways): 99.5 TFLOP/s direct against 65.4 staged.
  if (spec.splitK) return { sgm: 2, sgn: 2, tm: 4, tn: 4, bk: 16, mode: 'direct' };
  // Everything else: 45–83 TFLOP/s at 8,192 rows where the first kernel did 13–49. Scalar f16 copies: the
  // same tile with 4-wide vec4<f16> copies measured 3–4× slower.
  return { sgm: 2, sgn: 2, tm: 4, tn: 4, bk: 32, mode: 'staged', double: true, pad: 8, vec: false };
}

/**
 * The tensor-core kernel for a product. wgBytes is the device's workgroup memory (48 KiB on NVIDIA's Vulkan, the
 * only adapters this path runs on today); where the chosen tile does not fit, one buffer, then the first kernel.
 */
export function tcMatmul(spec: MatmulSpec, wgBytes = 48 * 1024, tile?: TcTile): Kernel {
  const t = tile ?? chooseTcTile(spec);
  for (const tile of [t, { ...t, double: false }]) {
    try {
      return tcMatmulTiled(spec, { ...tile, wgBytes });
    } catch (e) {
      if (!/workgroup memory/.test((e as Error).message)) throw e;
    }
  }
  return tcMatmulSimple(spec);
}

export function tcMatmulSimple(spec: MatmulSpec): Kernel {
  checkSpec(spec);
  if (spec.a.type !== 'f16' || spec.b.type !== 'f16') throw new Error(`${spec.label}: tensor-core matmul needs f16 operands`);
  const { M, N, K, a, b } = spec;
  const S = spec.splitK ?? 1;
  const KC = Math.ceil(K / S / 16) * 16; // each z-slice's k range, whole 16-steps except the last slice's tail
  const la = lda(spec);
  const lb = ldb(spec);
  const bindings = matmulBindings(spec);
  const L = 'subgroup_matrix_left<f16, 16, 16>';
  const R = 'subgroup_matrix_right<f16, 16, 16>';
  // Direct loads from storage at k0 (interior blocks).
  const direct: string[] = [];
  for (let i = 0; i < TM; i++) {
    const off = a.trans ? `${u32(a.offset)} + k0 * ${u32(la)} + m0 + ${i * 16}u` : `${u32(a.offset)} + (m0 + ${i * 16}u) * ${u32(la)} + k0`;
    direct.push(`let a${i} = subgroupMatrixLoad<${L}>(&${a.buffer}, ${off}, ${a.trans}, ${u32(la)});`);
  }
  for (let j = 0; j < TN; j++) {
    const off = b.trans ? `${u32(b.offset)} + (n0 + ${j * 16}u) * ${u32(lb)} + k0` : `${u32(b.offset)} + k0 * ${u32(lb)} + n0 + ${j * 16}u`;
    direct.push(`let b${j} = subgroupMatrixLoad<${R}>(&${b.buffer}, ${off}, ${b.trans}, ${u32(lb)});`);
  }
  // Loads from the staging tiles (As [64][16] by rows, Bs [16][64] by rows).
  const staged: string[] = [];
  for (let i = 0; i < TM; i++) staged.push(`let a${i} = subgroupMatrixLoad<${L}>(&As, ${i * 256}u, false, 16u);`);
  for (let j = 0; j < TN; j++) staged.push(`let b${j} = subgroupMatrixLoad<${R}>(&Bs, ${j * 16}u, false, ${u32(BN)});`);
  const mma: string[] = [];
  for (let i = 0; i < TM; i++) for (let j = 0; j < TN; j++) mma.push(`c${i}${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}${j});`);
  const decl: string[] = [];
  for (let i = 0; i < TM; i++) for (let j = 0; j < TN; j++) decl.push(`var c${i}${j}: subgroup_matrix_result<f32, 16, 16>;`);
  const idxA = a.trans ? `(k0 + kk) * ${u32(la)} + m0 + mm` : `(m0 + mm) * ${u32(la)} + k0 + kk`;
  const idxB = b.trans ? `(n0 + nn) * ${u32(lb)} + k0 + kk` : `(k0 + kk) * ${u32(lb)} + n0 + nn`;
  const store: string[] = [];
  for (let i = 0; i < TM; i++) {
    for (let j = 0; j < TN; j++) {
      store.push(`subgroupMatrixStore(&St, 0u, c${i}${j}, false, 16u);
  workgroupBarrier();
  for (var e = 0u; e < 8u; e++) {
    let idx = li + e * 32u;
    let m = m0 + ${i * 16}u + idx / 16u;
    let n = n0 + ${j * 16}u + idx % 16u;
    if (m < mLim && n < ${u32(N)}) { epi(m, n, St[idx], wg.z * ${u32(M * N)}); }
  }
  workgroupBarrier();`);
    }
  }
  const code = `${header(bindings, { f16: true, subgroupMatrix: true })}
${epilogueWgsl(spec.epi, N)}
var<workgroup> As: array<f16, ${BM * 16}>;
var<workgroup> Bs: array<f16, ${16 * BN}>;
var<workgroup> St: array<f32, 256>;
fn stage(k0: u32, m0: u32, n0: u32, mLim: u32, li: u32) {
  for (var r = 0u; r < ${u32((BM * 16) / 32)}; r++) {
    let i = li + r * 32u;
    ${a.trans ? `let mm = i % ${u32(BM)}; let kk = i / ${u32(BM)};` : 'let kk = i % 16u; let mm = i / 16u;'}
    var x = f16(0.0);
    if (m0 + mm < mLim && k0 + kk < ${u32(K)}) { x = ${a.buffer}[${u32(a.offset)} + ${idxA}]; }
    As[mm * 16u + kk] = x;
  }
  for (var r = 0u; r < ${u32((BN * 16) / 32)}; r++) {
    let i = li + r * 32u;
    ${b.trans ? 'let kk = i % 16u; let nn = i / 16u;' : `let nn = i % ${u32(BN)}; let kk = i / ${u32(BN)};`}
    var x = f16(0.0);
    if (n0 + nn < ${u32(N)} && k0 + kk < ${u32(K)}) { x = ${b.buffer}[${u32(b.offset)} + ${idxB}]; }
    Bs[kk * ${u32(BN)} + nn] = x;
  }
}
@compute @workgroup_size(32, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let mLim = ${rowLimit(spec)};
  let m0 = wg.y * ${u32(BM)};
  let n0 = wg.x * ${u32(BN)};
  if (m0 >= mLim) { return; }
  let kBegin = wg.z * ${u32(KC)};
  let kEnd = min(${u32(K)}, kBegin + ${u32(KC)});
  let kFull = kBegin + (max(kEnd, kBegin) - kBegin) / 16u * 16u;
  ${decl.join('\n  ')}
  if (m0 + ${u32(BM)} <= mLim && n0 + ${u32(BN)} <= ${u32(N)}) {
    for (var k0 = kBegin; k0 < kFull; k0 += 16u) {
      ${direct.join('\n      ')}
      ${mma.join('\n      ')}
    }
  } else {
    for (var k0 = kBegin; k0 < kFull; k0 += 16u) {
      stage(k0, m0, n0, mLim, li);
      workgroupBarrier();
      ${staged.join('\n      ')}
      ${mma.join('\n      ')}
      workgroupBarrier();
    }
  }
  ${
    K % 16 !== 0
      ? `if (kFull < kEnd) {
    let k0 = kFull;
    stage(k0, m0, n0, mLim, li);
    workgroupBarrier();
    ${staged.join('\n    ')}
    ${mma.join('\n    ')}
    workgroupBarrier();
  }`
      : ''
  }
  ${store.join('\n  ')}
}`;
  const rows = (r: number): [number, number, number] => [ceilDiv(N, BN), ceilDiv(r, BM), S];
  const grid = spec.rowsArePairs ? (s: StepShape) => rows(Math.min(s.pairs, M)) : rows(M);
  return { label: spec.label, code, bindings, grid, f16: true, subgroupMatrix: true };
}
