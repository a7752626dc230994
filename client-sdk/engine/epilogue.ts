// What a matmul kernel does with each finished output element (row m, column n, accumulated value v), shared by
// the f32 register-tiled kernel and the f16 subgroup-matrix kernel: bias, the LoRA term, GELU (forward, or its
// derivative in backward), then store or accumulate, plus an optional f16 copy for the next f16 matmul. Fusing
// these saves one full read and write of the [rows, out] activation per op.
import { f32, u32, type Binding } from './kernel';
import { dropoutBinding, dropoutWgsl, keepExpr, type DropoutSpec } from './dropout';
import { SILU_WGSL, swigluGradLines, swigluLines, type SwigluBwd, type SwigluFwd } from './swiglu';

export interface Ref {
  readonly buffer: string;
  /** Element offset into the buffer. */
  readonly offset: number;
}

export interface Epilogue {
  /** v = scale · acc first (e.g. the LoRA scaling in dB and du). */
  readonly scale?: number;
  /** v += bias[n] */
  readonly bias?: Ref;
  /**
   * v += scale · Σ_k low[m, k] · mat(k, n): forward LoRA (low = x·Aᵀ [M, r], mat = B stored [N, r], layout 'nr')
   * or the dx of backward (low = du [M, r], mat = A stored [r, N], layout 'rn'). `dropout` (dx only): the term
   * is multiplied by the module's dropout mask at (m, n), the chain rule through dropout(x) (dropout.ts).
   */
  readonly lora?: {
    readonly low: Ref;
    readonly mat: Ref;
    readonly layout: 'nr' | 'rn';
    readonly r: number;
    readonly scale: number;
    readonly dropout?: DropoutSpec;
  };
  /** pre[m, n] = v; v = gelu_new(v)  (pre is [M, N] f32, read back by backward). */
  readonly gelu?: Ref;
  /** v *= gelu_new'(pre[m, n]) */
  readonly geluGrad?: Ref;
  /** Llama's SwiGLU (swiglu.ts): v = silu(gate[m, n])·v, saving v; or, in backward, d(gate) and d(up) of v (Gemma 3: GELU). */
  readonly swiglu?: SwigluFwd;
  readonly swigluGrad?: SwigluBwd;
  /** v += res[m, n] (row stride N): the residual connection, read from another slice of an f32 buffer. */
  readonly residual?: Ref;
  readonly out: Ref & { readonly ld: number; readonly mode: 'store' | 'add'; readonly type?: 'f32' | 'f16' };
  /** f16 copy of the final value (same indexing as out unless ld given). */
  readonly out16?: Ref & { readonly ld: number };
}

export function epilogueBindings(e: Epilogue): Binding[] {
  const b: Binding[] = [];
  if (e.bias) b.push({ buffer: e.bias.buffer, type: 'f32', write: false });
  if (e.lora) b.push({ buffer: e.lora.low.buffer, type: 'f32', write: false }, { buffer: e.lora.mat.buffer, type: 'f32', write: false });
  if (e.lora?.dropout) b.push(dropoutBinding);
  if (e.gelu) b.push({ buffer: e.gelu.buffer, type: 'f32', write: true });
  if (e.geluGrad) b.push({ buffer: e.geluGrad.buffer, type: 'f32', write: false });
  if (e.swiglu) b.push({ buffer: e.swiglu.gate.buffer, type: 'f32', write: false }, { buffer: e.swiglu.up.buffer, type: 'f32', write: true });
  if (e.swigluGrad) {
    const g = e.swigluGrad;
    b.push({ buffer: g.gate.buffer, type: 'f32', write: false }, { buffer: g.up.buffer, type: 'f32', write: false });
    b.push({ buffer: g.dUp.buffer, type: g.dUp.type, write: true });
  }
  if (e.residual) b.push({ buffer: e.residual.buffer, type: 'f32', write: false });
  b.push({ buffer: e.out.buffer, type: e.out.type ?? 'f32', write: true });
  if (e.out16) b.push({ buffer: e.out16.buffer, type: 'f16', write: true });
  return b;
}

/** GELU (tanh form) as x·σ(2u), u = √(2/π)(x + 0.044715x³): the same function tfjs's geluNew computes. */
export const GELU_WGSL = `
fn gelu_new(x: f32) -> f32 {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  return x / (1.0 + exp(-2.0 * u));
}
fn gelu_new_grad(x: f32) -> f32 {
  let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
  let s = 1.0 / (1.0 + exp(-2.0 * u));
  return s + x * s * (1.0 - s) * 2.0 * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}`;

/** `fn epi(m: u32, n: u32, acc: f32, zo: u32)` for an output of N columns; zo is added to out's index (split-K). */
export function epilogueWgsl(e: Epilogue, N: number): string {
  const L: string[] = [e.scale !== undefined ? `var v = ${f32(e.scale)} * acc;` : 'var v = acc;'];
  if (e.bias) L.push(`v += ${e.bias.buffer}[${u32(e.bias.offset)} + n];`);
  if (e.lora) {
    const { low, mat, r, scale, layout } = e.lora;
    const matIdx = layout === 'nr' ? `${u32(mat.offset)} + n * ${u32(r)} + k` : `${u32(mat.offset)} + k * ${u32(N)} + n`;
    L.push(
      `{ var s = 0.0; for (var k = 0u; k < ${u32(r)}; k++) { s = fma(${low.buffer}[${u32(low.offset)} + m * ${u32(r)} + k], ${mat.buffer}[${matIdx}], s); }`,
    );
    const d = e.lora.dropout;
    L.push(d ? `  v = fma(${f32(scale)} * ${keepExpr(d, 'm', 'n')}, s, v); }` : `  v = fma(${f32(scale)}, s, v); }`);
  }
  if (e.gelu) L.push(`${e.gelu.buffer}[${u32(e.gelu.offset)} + m * ${u32(N)} + n] = v;`, 'v = gelu_new(v);');
  if (e.geluGrad) L.push(`v *= gelu_new_grad(${e.geluGrad.buffer}[${u32(e.geluGrad.offset)} + m * ${u32(N)} + n]);`);
  if (e.swiglu) L.push(...swigluLines(e.swiglu, N));
  if (e.swigluGrad) L.push(...swigluGradLines(e.swigluGrad, N));
  if (e.residual) L.push(`v += ${e.residual.buffer}[${u32(e.residual.offset)} + m * ${u32(N)} + n];`);
  const oi = `zo + ${u32(e.out.offset)} + m * ${u32(e.out.ld)} + n`;
  if (e.out.mode === 'add') {
    if (e.out.type === 'f16') throw new Error('accumulating epilogues need an f32 output');
    L.push(`let oi = ${oi};`, `v += ${e.out.buffer}[oi];`, `${e.out.buffer}[oi] = v;`);
  } else L.push(`${e.out.buffer}[${oi}] = ${e.out.type === 'f16' ? 'f16(v)' : 'v'};`);
  if (e.out16) L.push(`${e.out16.buffer}[${u32(e.out16.offset)} + m * ${u32(e.out16.ld)} + n] = f16(v);`);
  const gate = e.swiglu ?? e.swigluGrad;
  const needsGelu = e.gelu || e.geluGrad || gate?.act === 'gelu';
  return `${needsGelu ? GELU_WGSL : ''}${gate && gate.act !== 'gelu' ? SILU_WGSL : ''}${e.lora?.dropout ? dropoutWgsl(e.lora.dropout) : ''}
fn epi(m: u32, n: u32, acc: f32, zo: u32) {
  ${L.join('\n  ')}
}`;
}
