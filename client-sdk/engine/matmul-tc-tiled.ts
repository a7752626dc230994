// The tiled tensor-core matmul: several subgroups per workgroup. Subgroup-matrix builtins want subgroup-uniform
// offsets; Dawn checks that with workgroup-uniformity analysis under a diagnostic rule that can be turned off
// (UNIFORMITY_OFF). Each subgroup's offsets depend only on its index (local_invocation_index / 32, NVIDIA's warp), so they
// are uniform where the hardware needs them. 'direct': interior blocks load subgroup matrices straight from storage
// (the subgroups of a workgroup share the same A rows / B columns through the L1); 'staged': all threads copy
// BM×BK and BK×BN tiles into workgroup memory (optionally 4 halves per load, two buffers with the next tile's
// loads issued before the current tile's products), and the subgroups load their matrices from there. Rows,
// columns and k beyond the matrix are zero-filled on load and skipped on store, so no shape needs padding.

import { epilogueWgsl } from './epilogue';
import { ceilDiv, header, u32, type Kernel, type StepShape } from './kernel';
import { checkSpec, lda, ldb, matmulBindings, rowLimit, type MatmulSpec } from './matmul';
import { sgOps, stageCode, UNIFORMITY_OFF, vecOk, type StageSide } from './matmul-tc-parts';
import { isPlainEpilogue } from './epilogue-pass';

export interface TcTile {
  /** Subgroups per workgroup along rows and columns. */
  readonly sgm: number;
  readonly sgn: number;
  /** 16×16 result matrices per subgroup along rows and columns. */
  readonly tm: number;
  readonly tn: number;
  /** k depth of one staged tile (a multiple of 16; 'direct' uses 16 for its edge blocks). */
  readonly bk: number;
  readonly mode: 'direct' | 'staged';
  /** Two workgroup buffers: one barrier per tile, the next tile's global loads in flight during the products. */
  readonly double?: boolean;
  /** f16 elements added to each staged row (spreads a subgroup's matrix rows over the memory banks). */
  readonly pad?: number;
  /** Copy 4 halves per global load (used only where offsets and strides are multiples of 4). */
  readonly vec?: boolean;
  /** Workgroup memory available (bytes); the epilogue's staging shrinks to fit. */
  readonly wgBytes?: number;
}

export function tcMatmulTiled(spec: MatmulSpec, t: TcTile, opts: { emulate?: boolean } = {}): Kernel {
  const sg = sgOps(!!opts.emulate);
  checkSpec(spec);
  if (spec.a.type !== 'f16' || spec.b.type !== 'f16') throw new Error(`${spec.label}: tensor-core matmul needs f16 operands`);
  const { M, N, K, a, b } = spec;
  const nsg = t.sgm * t.sgn;
  const threads = 32 * nsg;
  const SM = t.tm * 16;
  const SN = t.tn * 16;
  const BM = t.sgm * SM;
  const BN = t.sgn * SN;
  const direct = t.mode === 'direct';
  const BK = direct ? 16 : t.bk;
  if (BK % 16 !== 0 || BK <= 0) throw new Error(`${spec.label}: bk ${BK} is not a multiple of 16`);
  const dbl = !direct && !!t.double;
  const pad = direct ? 0 : (t.pad ?? 0);
  const S = spec.splitK ?? 1;
  const KC = Math.ceil(K / S / BK) * BK;
  const la = lda(spec);
  const lb = ldb(spec);
  const bindings = matmulBindings(spec);
  const shared = (name: string): boolean => bindings.filter((x) => x.buffer === name).length > 1 || a.buffer === b.buffer;
  const va = !direct && !!t.vec && !shared(a.buffer) && vecOk(a.offset, la, a.trans ? M : K) ? 4 : 1;
  const vb = !direct && !!t.vec && !shared(b.buffer) && vecOk(b.offset, lb, b.trans ? K : N) ? 4 : 1;
  // Stored orientation of each staged tile (A [M,K] or [K,M]; B [K,N] or [N,K]) and its workgroup row stride.
  const A: StageSide = a.trans
    ? {
        name: 'a',
        arr: va === 4 ? `${a.buffer}_4` : a.buffer,
        R: BK,
        C: BM,
        stride: BM + pad,
        r0: 'k0',
        c0: 'm0',
        rLim: 'kEnd',
        cLim: 'mLim',
        off: 'aOff',
        ld: 'ldA',
        v: va,
      }
    : {
        name: 'a',
        arr: va === 4 ? `${a.buffer}_4` : a.buffer,
        R: BM,
        C: BK,
        stride: BK + pad,
        r0: 'm0',
        c0: 'k0',
        rLim: 'mLim',
        cLim: 'kEnd',
        off: 'aOff',
        ld: 'ldA',
        v: va,
      };
  const B: StageSide = b.trans
    ? {
        name: 'b',
        arr: vb === 4 ? `${b.buffer}_4` : b.buffer,
        R: BN,
        C: BK,
        stride: BK + pad,
        r0: 'n0',
        c0: 'k0',
        rLim: 'nLim',
        cLim: 'kEnd',
        off: 'bOff',
        ld: 'ldB',
        v: vb,
      }
    : {
        name: 'b',
        arr: vb === 4 ? `${b.buffer}_4` : b.buffer,
        R: BK,
        C: BN,
        stride: BN + pad,
        r0: 'k0',
        c0: 'n0',
        rLim: 'kEnd',
        cLim: 'nLim',
        off: 'bOff',
        ld: 'ldB',
        v: vb,
      };
  const sizeA = A.R * A.stride;
  const sizeB = B.R * B.stride;
  const nbuf = dbl ? 2 : 1;
  const budget = t.wgBytes ?? 48 * 1024;
  const stageBytes = 2 * nbuf * (sizeA + sizeB);
  // Epilogue staging: a row of tn result matrices per subgroup when it fits, else one matrix.
  const stTiles = stageBytes + 4 * nsg * 256 * t.tn <= budget ? t.tn : 1;
  if (stageBytes + 4 * nsg * 256 * stTiles > budget)
    throw new Error(`${spec.label}: tile ${JSON.stringify(t)} needs more than ${budget} bytes of workgroup memory`);
  const stSize = 256 * stTiles;
  const sa = stageCode(A, threads);
  const sb = stageCode(B, threads);
  // Matrix loads from workgroup memory for k step s of buffer `base`.
  const offA = (i: number): string =>
    a.trans ? `ab + s * ${u32(16 * A.stride)} + mr + ${u32(i * 16)}` : `ab + (mr + ${u32(i * 16)}) * ${u32(A.stride)} + s * 16u`;
  const offB = (j: number): string =>
    b.trans ? `bb + (nc + ${u32(j * 16)}) * ${u32(B.stride)} + s * 16u` : `bb + s * ${u32(16 * B.stride)} + nc + ${u32(j * 16)}`;
  const ld: string[] = [];
  for (let i = 0; i < t.tm; i++) ld.push(`let a${i} = ${sg.load('L', 'wa', offA(i), a.trans, u32(A.stride))};`);
  for (let j = 0; j < t.tn; j++) ld.push(`let b${j} = ${sg.load('R', 'wb', offB(j), b.trans, u32(B.stride))};`);
  const mma: string[] = [];
  for (let i = 0; i < t.tm; i++) for (let j = 0; j < t.tn; j++) mma.push(sg.mma(`a${i}`, `b${j}`, `c${i}${j}`));
  const compute = (buf: string): string => `{
      let ab = ${buf} * ${u32(sizeA)};
      let bb = ${buf} * ${u32(sizeB)};
      for (var s = 0u; s < ${u32(BK / 16)}; s++) {
        ${ld.join('\n        ')}
        ${mma.join('\n        ')}
      }
    }`;
  // Direct loads from storage (interior blocks of 'direct').
  const dl: string[] = [];
  for (let i = 0; i < (direct ? t.tm : 0); i++) {
    const off = a.trans ? `aOff + k0 * ldA + sm0 + ${u32(i * 16)}` : `aOff + (sm0 + ${u32(i * 16)}) * ldA + k0`;
    dl.push(`let a${i} = ${sg.load('L', a.buffer, off, a.trans, 'ldA')};`);
  }
  for (let j = 0; j < (direct ? t.tn : 0); j++) {
    const off = b.trans ? `bOff + (sn0 + ${u32(j * 16)}) * ldB + k0` : `bOff + k0 * ldB + sn0 + ${u32(j * 16)}`;
    dl.push(`let b${j} = ${sg.load('R', b.buffer, off, b.trans, 'ldB')};`);
  }
  const decl: string[] = [];
  for (let i = 0; i < t.tm; i++) for (let j = 0; j < t.tn; j++) decl.push(sg.decl(`c${i}${j}`));
  // A plain f32 store needs no per-element epilogue: interior subgroup blocks store their matrices straight out.
  const e = spec.epi;
  const plain = isPlainEpilogue(e);
  const storeDirect: string[] = [];
  for (let i = 0; i < (plain ? t.tm : 0); i++) {
    for (let j = 0; j < t.tn; j++) {
      storeDirect.push(sg.store(e.out.buffer, `oOff + (sm0 + ${u32(i * 16)}) * ldO + sn0 + ${u32(j * 16)}`, `c${i}${j}`, 'ldO'));
    }
  }
  const storeSt: string[] = [];
  for (let i = 0; i < t.tm; i++) {
    for (let j0 = 0; j0 < t.tn; j0 += stTiles) {
      const js = Array.from({ length: stTiles }, (_, q) => j0 + q);
      storeSt.push(`${js.map((j, q) => sg.store('wst', `sg * ${u32(stSize)} + ${u32(q * 16)}`, `c${i}${j}`, u32(16 * stTiles))).join('\n  ')}
  workgroupBarrier();
  for (var e = 0u; e < ${u32(stSize / 32)}; e++) {
    let idx = lane + e * 32u;
    let m = sm0 + ${u32(i * 16)} + idx / ${u32(16 * stTiles)};
    let n = sn0 + ${u32(j0 * 16)} + idx % ${u32(16 * stTiles)};
    if (m < mLim && n < nLim) { epi(m, n, wst[sg * ${u32(stSize)} + idx], zo); }
  }
  workgroupBarrier();`);
    }
  }
  const vecDecl = (side: StageSide, o: typeof a): string =>
    side.v === 4 ? `\n@group(0) @binding(${bindings.findIndex((x) => x.buffer === o.buffer)}) var<storage, read> ${side.arr}: array<vec4<f16>>;` : '';
  // A 4-wide operand is declared once, as vec4<f16>, in place of its f16 declaration.
  const em = !!opts.emulate;
  let head = em
    ? header(bindings, { f16: true })
    : header(bindings, { f16: true, subgroupMatrix: true }).replace(
        'enable chromium_experimental_subgroup_matrix;',
        `enable chromium_experimental_subgroup_matrix;\n${UNIFORMITY_OFF}`,
      );
  for (const [side, o] of [
    [A, a],
    [B, b],
  ] as const) {
    if (side.v === 4)
      head =
        head
          .split('\n')
          .filter((l) => !l.includes(` ${o.buffer}: array<f16>;`))
          .join('\n') + vecDecl(side, o);
  }
  const stagedLoop = dbl
    ? `if (nk > 0u) {
    ${sa.fetch.replaceAll('k0', 'kS')}
    ${sb.fetch.replaceAll('k0', 'kS')}
    ${sa.put('0u')}
    ${sb.put('0u')}
  }
  workgroupBarrier();
  for (var t = 0u; t < nk; t++) {
    let cur = t % 2u;
    let more = t + 1u < nk;
    let k0 = kS + (t + 1u) * ${u32(BK)};
    if (more) {
    ${sa.fetch}
    ${sb.fetch}
    }
    ${compute('cur')}
    if (more) {
    ${sa.put(`(1u - cur) * ${u32(sizeA)}`)}
    ${sb.put(`(1u - cur) * ${u32(sizeB)}`)}
    }
    workgroupBarrier();
  }`
    : `for (var t = 0u; t < nk; t++) {
    let k0 = kS + t * ${u32(BK)};
    ${sa.fetch}
    ${sb.fetch}
    ${sa.put('0u')}
    ${sb.put('0u')}
    workgroupBarrier();
    ${compute('0u')}
    workgroupBarrier();
  }`;
  const code = `${head}
${epilogueWgsl(spec.epi, N)}
${sg.helpers()}
var<workgroup> wa: array<f16, ${nbuf * sizeA}>;
var<workgroup> wb: array<f16, ${nbuf * sizeB}>;
var<workgroup> wst: array<f32, ${nsg * stSize}>;
@compute @workgroup_size(${threads}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let mLim = ${rowLimit(spec)};
  let m0 = wg.y * ${u32(BM)};
  let n0 = wg.x * ${u32(BN)};
  if (m0 >= mLim) { return; }
  let sg = li / 32u; // NVIDIA's subgroups are the workgroup's consecutive runs of 32 invocations
  let lane = li % 32u;
  let mr = (sg / ${u32(t.sgn)}) * ${u32(SM)};
  let nc = (sg % ${u32(t.sgn)}) * ${u32(SN)};
  let sm0 = m0 + mr;
  let sn0 = n0 + nc;
  // Each constant that differs between layers appears once (dedupe.ts turns those into uniform reads).
  let aOff = ${u32(a.offset)};
  let bOff = ${u32(b.offset)};
  let ldA = ${u32(la)};
  let ldB = ${u32(lb)};
  let ldO = ${u32(e.out.ld)};
  let nLim = ${u32(N)};
  let zo = wg.z * ${u32(M * N)};
  let oOff = zo + ${u32(e.out.offset)};
  let kBegin = wg.z * ${u32(KC)};
  let kEnd = max(kBegin, min(${u32(K)}, kBegin + ${u32(KC)}));
  ${sa.regs}
  ${sb.regs}
  ${decl.join('\n  ')}
  var kS = kBegin;
  ${
    direct
      ? `if (m0 + ${u32(BM)} <= mLim && n0 + ${u32(BN)} <= nLim) {
    let kFull = kBegin + (kEnd - kBegin) / 16u * 16u;
    for (var k0 = kBegin; k0 < kFull; k0 += 16u) {
      ${dl.join('\n      ')}
      ${mma.join('\n      ')}
    }
    kS = kFull;
  }`
      : ''
  }
  let nk = (kEnd - kS + ${u32(BK - 1)}) / ${u32(BK)};
  ${stagedLoop}
  ${
    plain
      ? `if (m0 + ${u32(BM)} <= mLim && n0 + ${u32(BN)} <= nLim) {
    ${storeDirect.join('\n    ')}
    return;
  }
  `
      : ''
  }${storeSt.join('\n  ')}
}`;
  const rows = (r: number): [number, number, number] => [ceilDiv(N, BN), ceilDiv(r, BM), S];
  const grid = spec.rowsArePairs ? (s: StepShape) => rows(Math.min(s.pairs, M)) : rows(M);
  return { label: spec.label, code, bindings, grid, f16: true, subgroupMatrix: !em };
}
