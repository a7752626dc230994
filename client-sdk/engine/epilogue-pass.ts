// A product's epilogue as its own pass (tuning.epiSplit): the tensor-core kernel stores the bare f32 product into
// `mmOut` straight from its subgroup matrices (the fast path a plain store gets), then this kernel applies the
// product's epilogue (bias, LoRA term, GELU, residual, output types: epilogue.ts's very function) one element per
// thread. The accumulators and the epilogue arithmetic are unchanged, so results are bit-identical to the fused
// kernel; what changes is that the epilogue no longer runs in the matmul's workgroups, behind their barriers.
import { epilogueBindings, epilogueWgsl } from './epilogue';
import { ceilDiv, header, mergeBindings, u32, type Binding, type Kernel, type StepShape } from './kernel';
import { rowLimit, type MatmulSpec } from './matmul';

/** Whether an epilogue is a bare f32 store (which the tensor-core kernel writes straight from its matrices). */
export function isPlainEpilogue(e: MatmulSpec['epi']): boolean {
  return (
    e.scale === undefined &&
    !e.bias &&
    !e.lora &&
    !e.gelu &&
    !e.geluGrad &&
    !e.swiglu &&
    !e.swigluGrad &&
    !e.residual &&
    !e.out16 &&
    e.out.mode === 'store' &&
    (e.out.type ?? 'f32') === 'f32'
  );
}

/** Elements of `mmOut` the plain product of `spec` needs. */
export const mmOutElems = (spec: MatmulSpec): number => spec.M * spec.N;

/** The plain-store product that feeds the epilogue pass. */
export function plainProduct(spec: MatmulSpec): MatmulSpec {
  if (spec.splitK) throw new Error(`${spec.label}: split-K products keep their epilogue`);
  return { ...spec, epi: { out: { buffer: 'mmOut', offset: 0, ld: spec.N, mode: 'store' } } };
}

const WG = 256;
const GX = 32768;

export function epiloguePass(spec: MatmulSpec): Kernel {
  const { M, N } = spec;
  const bindings: Binding[] = mergeBindings([
    { buffer: 'mmOut', type: 'f32', write: false },
    ...epilogueBindings(spec.epi),
    ...(spec.rowsArePairs ? [{ buffer: 'step', type: 'u32' as const, write: false }] : []),
  ]);
  const code = `${header(bindings)}
${epilogueWgsl(spec.epi, N)}
@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let i = (wg.y * ${u32(GX)} + wg.x) * ${u32(WG)} + li;
  let m = i / ${u32(N)};
  if (m >= ${rowLimit(spec)}) { return; }
  epi(m, i % ${u32(N)}, mmOut[i], 0u);
}`;
  const grid = (rows: number): [number, number, number] => {
    const w = ceilDiv(rows * N, WG);
    return [Math.min(w, GX), ceilDiv(w, GX), 1];
  };
  return { label: `epi ${spec.label}`, code, bindings, grid: spec.rowsArePairs ? (s: StepShape) => grid(Math.min(s.pairs, M)) : grid(M) };
}
