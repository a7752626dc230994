// SwiGLU (Llama's MLP: down(silu(gate(x)) · up(x))) fused into matmul epilogues, as GELU is for GPT-2: the up
// projection's epilogue reads the gate projection's output and writes silu(gate)·up straight into the down
// projection's input, and the down projection's backward dx epilogue splits its result into d(gate) and d(up).
// So no kernel of its own and no extra pass over the [rows, intermediate] activations. silu(x) = x·σ(x), as
// model/llama.ts computes it.
import { u32 } from './kernel';
import type { Ref } from './epilogue';

export interface SwigluFwd {
  /** The gate projection's output (f32, [M, N]); the up value v is saved to `up` for backward. */
  readonly gate: Ref;
  readonly up: Ref;
}

export interface SwigluBwd {
  /** Saved gate and up values (f32, [M, N]); d(up) goes to `dUp` (row stride N), d(gate) to the epilogue's out. */
  readonly gate: Ref;
  readonly up: Ref;
  readonly dUp: Ref & { readonly type: 'f32' | 'f16' };
}

export const SILU_WGSL = `
fn sigm(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }`;

/** Epilogue lines: v (the up projection's value) becomes silu(gate)·v. */
export function swigluLines(s: SwigluFwd, N: number): string[] {
  const i = `m * ${u32(N)} + n`;
  return [`{ let g = ${s.gate.buffer}[${u32(s.gate.offset)} + ${i}];`, `  ${s.up.buffer}[${u32(s.up.offset)} + ${i}] = v;`, `  v = g * sigm(g) * v; }`];
}

/** Epilogue lines: v (dh) becomes d(gate) = dh·up·silu'(gate); d(up) = dh·silu(gate) is stored aside. */
export function swigluGradLines(s: SwigluBwd, N: number): string[] {
  const i = `m * ${u32(N)} + n`;
  return [
    `{ let g = ${s.gate.buffer}[${u32(s.gate.offset)} + ${i}];`,
    `  let u = ${s.up.buffer}[${u32(s.up.offset)} + ${i}];`,
    `  let sg = sigm(g);`,
    `  ${s.dUp.buffer}[${u32(s.dUp.offset)} + ${i}] = ${s.dUp.type}(v * g * sg);`,
    `  v = v * u * sg * (1.0 + g * (1.0 - sg)); }`,
  ];
}
