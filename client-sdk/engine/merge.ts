/// <reference types="@webgpu/types" />
// FLoRA on the engine (lora.aggregation 'flora'; the site's side is sft/flora-site.ts): the version's stack merged into
// the frozen projection weights on the GPU, W = W0 + B_stack·A_stack, in f32 and rounded once to the type `w` stores
// (f16 on the f16 and tc paths), to the nearest with ties to even as the host rounds W0 (half.ts): WGSL lets a driver
// round an f32 to either neighbouring f16, so the kernel picks the nearest itself and no driver can change a merge. A stack may have any rank up to the model width (past it
// the coordinator keeps it in dense factored form), more than the LoRA kernels are built for; merged, it costs the
// step nothing. One pipeline serves every module and every rank: shapes and offsets come from a uniform, not from
// constants in the WGSL as in the step's kernels (whose pipelines are per shape), so a new version's rank never
// compiles anything. W0 itself comes from the host (the engine keeps only the rounded copy).
import { ceilDiv } from './kernel';

/** Threads per workgroup of the merge kernel; the grid folds into y past the 65535 workgroups x allows. */
const WG = 64;
const MAX_X = 65535;

// f32 → f16 to the nearest, ties to even: from the driver's neighbour h, the other neighbour is one step of the bit
// pattern away (up in magnitude when h fell short of v); whichever is nearer wins, on a tie the even one. Differences of
// two values within an f16 step of each other are exact in f32 (Sterbenz), so the comparison is. Infinity and NaN
// are left as converted.
const NEAREST_F16 = `fn nearestF16(v: f32) -> f16 {
  let h = f16(v);
  let hf = f32(h);
  if (hf == v) { return h; }
  let bits = bitcast<u32>(vec2<f16>(h, h)) & 0xffffu;
  if ((bits & 0x7fffu) >= 0x7c00u) { return h; }
  var other = bits - 1u;
  if (abs(hf) < abs(v)) { other = bits + 1u; }
  let o = bitcast<vec2<f16>>(other | (other << 16u)).x;
  let d1 = abs(hf - v);
  let d2 = abs(f32(o) - v);
  if (d2 < d1 || (d2 == d1 && (other & 1u) == 0u)) { return o; }
  return h;
}
`;

/** The merge kernel's WGSL for a `w` of element type `w` (one thread per element of one module's W). */
export function mergeKernelCode(w: 'f32' | 'f16'): string {
  return `${w === 'f16' ? `enable f16;\n${NEAREST_F16}` : ''}struct Merge { off: u32, inF: u32, outF: u32, r: u32 }
@group(0) @binding(0) var<storage, read_write> w: array<${w}>;
@group(0) @binding(1) var<storage, read> w0: array<f32>;
@group(0) @binding(2) var<storage, read> la: array<f32>;
@group(0) @binding(3) var<storage, read> lbT: array<f32>;
@group(0) @binding(4) var<uniform> m: Merge;
// W [in, out] (the engine's orientation) at m.off in w; W0 the same, from 0; A [r, in]; B transposed, [r, out], so
// neighbouring threads (neighbouring outputs) read neighbouring values of it.
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
  let idx = g.x + g.y * nw.x * ${WG}u;
  if (idx >= m.inF * m.outF) { return; }
  let i = idx / m.outF;
  let o = idx % m.outF;
  var s = 0.0;
  for (var k = 0u; k < m.r; k++) { s += lbT[k * m.outF + o] * la[k * m.inF + i]; }
  w[m.off + idx] = ${w === 'f16' ? 'nearestF16' : 'f32'}(w0[idx] + s);
}
`;
}

/** One module to merge: where its W sits in `w`, its W0 (f32, [in, out]) and the stack's factors. */
export interface MergeModule {
  readonly offset: number;
  readonly inF: number;
  readonly outF: number;
  readonly r: number;
  /** Packs W0 (weights.ts stackW0): called once, just before this module's upload, so one module's copy is live. */
  readonly w0: () => Float32Array;
  /** lora_A, [r, in]. */
  readonly a: Float32Array;
  /** lora_B, [out, r] as PEFT stores it (transposed here). */
  readonly b: Float32Array;
}

/** The merge grid for n elements: [x, y, 1] workgroups, x·y·WG ≥ n. */
export function mergeGrid(n: number): [number, number, number] {
  const groups = Math.max(1, ceilDiv(n, WG));
  const x = Math.min(groups, MAX_X);
  return [x, ceilDiv(groups, x), 1];
}

/** B [out, r] → [r, out]. */
export function transposeB(b: Float32Array, outF: number, r: number): Float32Array {
  if (b.length !== outF * r) throw new Error(`lora_B has ${b.length} values, expected ${outF}·${r}`);
  const t = new Float32Array(b.length);
  for (let o = 0; o < outF; o++) for (let k = 0; k < r; k++) t[k * outF + o] = b[o * r + k];
  return t;
}

/** The merge pipeline of one engine, built at its first FLoRA task and kept for its life. */
export class BaseMerger {
  private pipeline?: GPUComputePipeline;

  constructor(
    private readonly dev: GPUDevice,
    private readonly w: GPUBuffer,
    private readonly type: 'f32' | 'f16',
  ) {}

  /**
   * Merges every module into `w`, queue-ordered after the steps already submitted and before the next: one submit
   * per module, reusing one set of scratch buffers (a writeBuffer is ordered with the submits around it).
   */
  async merge(mods: readonly MergeModule[]): Promise<void> {
    if (mods.length === 0) return;
    for (const m of mods) {
      if (m.a.length !== m.r * m.inF || m.b.length !== m.outF * m.r || m.r < 1)
        throw new Error(`a merged module of [${m.inF}, ${m.outF}] has A ${m.a.length}, B ${m.b.length} values at rank ${m.r}`);
    }
    const dev = this.dev;
    this.pipeline ??= dev.createComputePipeline({
      label: 'flora-merge',
      layout: 'auto',
      compute: { module: dev.createShaderModule({ label: 'flora-merge', code: mergeKernelCode(this.type) }), entryPoint: 'main' },
    });
    const bytes = (f: (m: MergeModule) => number): number => 4 * Math.max(...mods.map(f));
    const storage = (label: string, size: number): GPUBuffer => dev.createBuffer({ label, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    const w0 = storage(
      'merge-w0',
      bytes((m) => m.inF * m.outF),
    );
    const la = storage(
      'merge-a',
      bytes((m) => m.r * m.inF),
    );
    const lbT = storage(
      'merge-bT',
      bytes((m) => m.r * m.outF),
    );
    const params = dev.createBuffer({ label: 'merge-params', size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    try {
      const bindGroup = dev.createBindGroup({
        layout: this.pipeline.getBindGroupLayout(0),
        entries: [this.w, w0, la, lbT, params].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      for (const m of mods) {
        // W0 packed now, uploaded (writeBuffer copies it) and dropped before the next module's is packed.
        const w0m = m.w0();
        if (w0m.length !== m.inF * m.outF) throw new Error(`a merged module of [${m.inF}, ${m.outF}] has W0 ${w0m.length} values`);
        dev.queue.writeBuffer(w0, 0, w0m.buffer, w0m.byteOffset, w0m.byteLength);
        dev.queue.writeBuffer(la, 0, m.a.buffer, m.a.byteOffset, m.a.byteLength);
        dev.queue.writeBuffer(lbT, 0, transposeB(m.b, m.outF, m.r));
        dev.queue.writeBuffer(params, 0, Uint32Array.of(m.offset, m.inF, m.outF, m.r));
        const enc = dev.createCommandEncoder();
        const pass = enc.beginComputePass();
        pass.setPipeline(this.pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(...mergeGrid(m.inF * m.outF));
        pass.end();
        dev.queue.submit([enc.finish()]);
      }
      await dev.queue.onSubmittedWorkDone();
    } finally {
      for (const b of [w0, la, lbT, params]) b.destroy();
    }
  }
}
