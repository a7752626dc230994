// Pieces of the tiled tensor-core matmul (matmul-tc-tiled.ts): the diagnostic that lets subgroup-matrix offsets
// vary by subgroup, the cooperative copy of a tile into workgroup memory, and the subgroup-matrix calls (or their
// plain-WGSL emulation, which runs the kernel's indexing on adapters without tensor cores).
import { u32 } from './kernel';

// Dawn in npm webgpu 0.6.2 names the rule `chromium.…`; its design doc `chromium_experimental.…`. An unknown rule
// name is only a warning, so both are given.
export const UNIFORMITY_OFF = 'diagnostic(off, chromium.subgroup_matrix_uniformity);\ndiagnostic(off, chromium_experimental.subgroup_matrix_uniformity);';

/** One operand's staged tile: stored orientation R×C (rows, cols) with bounds and indexing expressions. */
export interface StageSide {
  readonly name: string;
  readonly arr: string;
  readonly R: number;
  readonly C: number;
  readonly stride: number;
  readonly r0: string;
  readonly c0: string;
  readonly rLim: string;
  readonly cLim: string;
  /** WGSL name of the operand's element offset (a `let` set once, so dedupe.ts sees one literal per operand). */
  readonly off: string;
  /** WGSL name of its row stride. */
  readonly ld: string;
  readonly v: number;
}

export function stageCode(s: StageSide, threads: number): { regs: string; fetch: string; put: (base: string) => string } {
  const per = s.C / s.v;
  const chunks = s.R * per;
  const it = Math.ceil(chunks / threads);
  const guard = chunks % threads !== 0;
  const ty = s.v === 4 ? 'vec4<f16>' : 'f16';
  const fetch: string[] = [];
  const put: string[] = [];
  for (let t = 0; t < it; t++) {
    const head = `let i = li + ${u32(t * threads)}; let r = i / ${u32(per)}; let c = (i % ${u32(per)}) * ${u32(s.v)};`;
    let body: string;
    if (s.v === 4) {
      const el = (e: number): string => `if (gc + ${e}u < ${s.cLim}) { let q = ${s.off} + gr * ${s.ld} + gc + ${e}u; v[${e}] = ${s.arr}[q / 4u][q % 4u]; }`;
      body = `var v = vec4<f16>();
      let gr = ${s.r0} + r; let gc = ${s.c0} + c;
      if (gr < ${s.rLim}) {
        if (gc + 4u <= ${s.cLim}) { v = ${s.arr}[(${s.off} + gr * ${s.ld} + gc) / 4u]; }
        else { ${[0, 1, 2, 3].map(el).join(' ')} }
      }
      ${s.name}r[${t}] = v;`;
    } else {
      body = `var v = f16(0.0);
      let gr = ${s.r0} + r; let gc = ${s.c0} + c;
      if (gr < ${s.rLim} && gc < ${s.cLim}) { v = ${s.arr}[${s.off} + gr * ${s.ld} + gc]; }
      ${s.name}r[${t}] = v;`;
    }
    const w = guard ? `if (i < ${u32(chunks)}) ` : '';
    fetch.push(`{ ${head} ${w}{ ${body} } }`);
    const st =
      s.v === 4
        ? [0, 1, 2, 3].map((e) => `w${s.name}[BASE + r * ${u32(s.stride)} + c + ${e}u] = ${s.name}r[${t}][${e}];`).join(' ')
        : `w${s.name}[BASE + r * ${u32(s.stride)} + c] = ${s.name}r[${t}];`;
    put.push(`{ ${head} ${w}{ ${st} } }`);
  }
  return {
    regs: `var ${s.name}r: array<${ty}, ${it}>;`,
    fetch: fetch.join('\n    '),
    put: (base) => put.join('\n    ').replaceAll('BASE', base),
  };
}

/**
 * The subgroup-matrix calls, or (emulate) plain WGSL in which every invocation holds whole 16×16 matrices in f32:
 * very slow, but it runs the kernel's own tiling and indexing on any adapter (Mesa's lavapipe has no subgroup
 * matrices), which is how the tiling is checked without a GPU. Both read f16 and write f32 the same elements.
 */
export function sgOps(emulate: boolean): {
  decl: (v: string) => string;
  load: (kind: 'L' | 'R', ptr: string, off: string, cm: boolean, stride: string) => string;
  mma: (a: string, b: string, c: string) => string;
  store: (ptr: string, off: string, v: string, stride: string) => string;
  helpers: () => string;
} {
  const L = 'subgroup_matrix_left<f16, 16, 16>';
  const R = 'subgroup_matrix_right<f16, 16, 16>';
  if (!emulate) {
    return {
      decl: (v) => `var ${v}: subgroup_matrix_result<f32, 16, 16>;`,
      load: (kind, ptr, off, cm, stride) => `subgroupMatrixLoad<${kind === 'L' ? L : R}>(&${ptr}, ${off}, ${cm}, ${stride})`,
      mma: (a, b, c) => `${c} = subgroupMatrixMultiplyAccumulate(${a}, ${b}, ${c});`,
      store: (ptr, off, v, stride) => `subgroupMatrixStore(&${ptr}, ${off}, ${v}, false, ${stride});`,
      helpers: () => '',
    };
  }
  const loads = new Set<string>();
  const stores = new Set<string>();
  return {
    decl: (v) => `var ${v} = array<f32, 256>();`,
    load: (_kind, ptr, off, cm, stride) => (loads.add(ptr), `emuLoad_${ptr}(${off}, ${cm}, ${stride})`),
    mma: (a, b, c) => `${c} = emuMma(${a}, ${b}, ${c});`,
    store: (ptr, off, v, stride) => (stores.add(ptr), `emuStore_${ptr}(${off}, ${v}, ${stride});`),
    helpers: () =>
      [
        `fn emuMma(a: array<f32, 256>, b: array<f32, 256>, c: array<f32, 256>) -> array<f32, 256> {
  var o = c;
  for (var q = 0u; q < 256u; q++) { for (var k = 0u; k < 16u; k++) { o[q] = fma(a[q / 16u * 16u + k], b[k * 16u + q % 16u], o[q]); } }
  return o;
}`,
        ...[...loads].map(
          (p) => `fn emuLoad_${p}(off: u32, cm: bool, stride: u32) -> array<f32, 256> {
  var o = array<f32, 256>();
  for (var q = 0u; q < 256u; q++) { o[q] = f32(${p}[off + select(q / 16u * stride + q % 16u, q % 16u * stride + q / 16u, cm)]); }
  return o;
}`,
        ),
        ...[...stores].map(
          (p) => `fn emuStore_${p}(off: u32, v: array<f32, 256>, stride: u32) {
  for (var q = 0u; q < 256u; q++) { ${p}[off + q / 16u * stride + q % 16u] = v[q]; }
}`,
        ),
      ].join('\n'),
  };
}

/** Whether 4-wide loads are safe: aligned offset and stride, and no row's last vector reaching past the rows. */
export const vecOk = (off: number, ld: number, cols: number): boolean => off % 4 === 0 && ld % 4 === 0 && (cols % 4 === 0 || ld > cols);
