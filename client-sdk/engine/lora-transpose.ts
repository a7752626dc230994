// lora_B [out, r] copied as [r, out] into `loraBT` at the start of every step (tuning.loraT), so the forward
// epilogue's LoRA term reads B along the output column n, as neighbouring threads do (coalesced), instead of r
// floats apart. The values and the order of the r-term sum are unchanged, so the step's results are bit-identical.
// At the start, not after the update: the adapter can also change between steps (setAdapter, writeTheta).
import { ceilDiv, header, u32, type Binding, type Kernel } from './kernel';

export interface LoraTModule {
  /** Offset of lora_B [outF, r] in theta. */
  readonly b: number;
  readonly outF: number;
  /** Offset of its [r, outF] copy in loraBT. */
  readonly bt: number;
}

/** One dispatch for every module: workgroup row y copies module y. */
export function loraTranspose(mods: readonly LoraTModule[], r: number): Kernel {
  if (mods.length === 0) throw new Error('loraTranspose: no modules');
  const bindings: Binding[] = [
    { buffer: 'theta', type: 'f32', write: false },
    { buffer: 'loraBT', type: 'f32', write: true },
  ];
  const table = mods.map((m) => `vec4u(${u32(m.b)}, ${u32(m.outF)}, ${u32(m.bt)}, 0u)`).join(',\n  ');
  const code = `${header(bindings)}
const MODS = array<vec4u, ${mods.length}>(
  ${table}
);
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let md = MODS[wg.y];
  let i = wg.x * 256u + li;
  if (i >= md.y * ${u32(r)}) { return; }
  let k = i / md.y;
  let n = i % md.y;
  loraBT[md.z + i] = theta[md.x + n * ${u32(r)} + k];
}`;
  const maxOut = Math.max(...mods.map((m) => m.outF));
  return { label: 'lora.bt', code, bindings, grid: [ceilDiv(maxOut * r, 256), mods.length, 1] };
}
