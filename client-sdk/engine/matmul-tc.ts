// The tensor-core matmul: f16 operands, f32 accumulation on Dawn's subgroup matrices (16×16×16), same MatmulSpec
// and epilogue as the register-tiled kernel. A 256-thread workgroup (8 subgroups of 32) computes a 128×128
// block; each subgroup owns 32×64 of it (2×4 result matrices). Operand tiles are staged in workgroup memory with
// bounds-checked, transposing loads, so any shape and either storage order works without padding. Each finished
// 16×16 result is stored to a per-subgroup staging tile and the epilogue runs per element from there.
// Assumes subgroup size 32 (NVIDIA); capabilities.ts only selects this path when the adapter reports it.
import { epilogueWgsl } from './epilogue';
import { ceilDiv, header, u32, type Kernel, type StepShape } from './kernel';
import { checkSpec, matmulBindings, rowLimit, type MatmulSpec } from './matmul';

const BM = 128;
const BN = 128;
const BK = 32;
const THREADS = 256;
const SG = 32;

export function tcMatmul(spec: MatmulSpec): Kernel {
  checkSpec(spec);
  if (spec.a.type !== 'f16' || spec.b.type !== 'f16') throw new Error(`${spec.label}: tensor-core matmul needs f16 operands`);
  if (spec.splitK) throw new Error(`${spec.label}: tensor-core matmul has no split-K`);
  const { M, N, K, a, b } = spec;
  const bindings = matmulBindings(spec);
  const loadA = a.trans ? `let mm = i % ${u32(BM)}; let kk = i / ${u32(BM)};` : `let kk = i % ${u32(BK)}; let mm = i / ${u32(BK)};`;
  const idxA = a.trans ? `(k0 + kk) * ${u32(M)} + m0 + mm` : `(m0 + mm) * ${u32(K)} + k0 + kk`;
  const loadB = b.trans ? `let kk = i % ${u32(BK)}; let nn = i / ${u32(BK)};` : `let nn = i % ${u32(BN)}; let kk = i / ${u32(BN)};`;
  const idxB = b.trans ? `(n0 + nn) * ${u32(K)} + k0 + kk` : `(k0 + kk) * ${u32(N)} + n0 + nn`;
  const decl: string[] = [];
  const mma: string[] = [];
  for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) decl.push(`var c${i}${j}: subgroup_matrix_result<f32, 16, 16>;`);
  for (let i = 0; i < 2; i++) {
    mma.push(`let a${i} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&As, (sm * 32u + ${i * 16}u) * ${u32(BK)} + kk, false, ${u32(BK)});`);
  }
  for (let j = 0; j < 4; j++) {
    mma.push(`let b${j} = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&Bs, kk * ${u32(BN)} + sn * 64u + ${j * 16}u, false, ${u32(BN)});`);
  }
  for (let i = 0; i < 2; i++) for (let j = 0; j < 4; j++) mma.push(`c${i}${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}${j});`);
  const store: string[] = [];
  for (let i = 0; i < 2; i++) {
    for (let j = 0; j < 4; j++) {
      store.push(`subgroupMatrixStore(&St, sg * 256u, c${i}${j}, false, 16u);
  workgroupBarrier();
  for (var e = 0u; e < 8u; e++) {
    let idx = lane + e * 32u;
    let m = m0 + sm * 32u + ${i * 16}u + idx / 16u;
    let n = n0 + sn * 64u + ${j * 16}u + idx % 16u;
    if (m < mLim && n < ${u32(N)}) { epi(m, n, St[sg * 256u + idx], 0u); }
  }
  workgroupBarrier();`);
    }
  }
  const code = `${header(bindings, { f16: true, subgroupMatrix: true })}
${epilogueWgsl(spec.epi, N)}
var<workgroup> As: array<f16, ${BM * BK}>;
var<workgroup> Bs: array<f16, ${BK * BN}>;
var<workgroup> St: array<f32, ${(THREADS / SG) * 256}>;
@compute @workgroup_size(${THREADS}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let mLim = ${rowLimit(spec)};
  let m0 = wg.y * ${u32(BM)};
  let n0 = wg.x * ${u32(BN)};
  if (m0 >= mLim) { return; }
  let sg = li / ${u32(SG)};
  let lane = li % ${u32(SG)};
  let sm = sg / 2u;
  let sn = sg % 2u;
  ${decl.join('\n  ')}
  for (var k0 = 0u; k0 < ${u32(K)}; k0 += ${u32(BK)}) {
    for (var r = 0u; r < ${u32((BM * BK) / THREADS)}; r++) {
      let i = li + r * ${u32(THREADS)};
      ${loadA}
      var x = f16(0.0);
      if (m0 + mm < mLim && k0 + kk < ${u32(K)}) { x = ${a.buffer}[${u32(a.offset)} + ${idxA}]; }
      As[mm * ${u32(BK)} + kk] = x;
    }
    for (var r = 0u; r < ${u32((BN * BK) / THREADS)}; r++) {
      let i = li + r * ${u32(THREADS)};
      ${loadB}
      var x = f16(0.0);
      if (n0 + nn < ${u32(N)} && k0 + kk < ${u32(K)}) { x = ${b.buffer}[${u32(b.offset)} + ${idxB}]; }
      Bs[kk * ${u32(BN)} + nn] = x;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${u32(BK)}; kk += 16u) {
      ${mma.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${store.join('\n  ')}
}`;
  const rows = (r: number): [number, number, number] => [ceilDiv(N, BN), ceilDiv(r, BM), 1];
  const grid = spec.rowsArePairs ? (s: StepShape) => rows(Math.min(s.pairs, M)) : rows(M);
  return { label: spec.label, code, bindings, grid, f16: true, subgroupMatrix: true };
}
