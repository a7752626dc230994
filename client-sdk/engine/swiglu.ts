// SwiGLU (Llama's MLP: down(silu(gate(x)) · up(x))) fused into matmul epilogues, as GELU is for GPT-2: the up
// projection's epilogue reads the gate projection's output and writes silu(gate)·up straight into the down
// projection's input, and the down projection's backward dx epilogue splits its result into d(gate) and d(up).
// So no kernel of its own and no extra pass over the [rows, intermediate] activations. silu(x) = x·σ(x), as
// model/llama.ts computes it. Gemma 3's gated MLP is the same with gelu_pytorch_tanh in place of SiLU (`act: 'gelu'`:
// epilogue.ts's gelu_new, the function tfjs's geluNew computes).
import { u32 } from './kernel';
import type { Ref } from './epilogue';

/** The gate's activation: SiLU (Llama, Qwen, Mistral) or the tanh GELU (Gemma 3); absent: SiLU. */
export type GateAct = 'silu' | 'gelu';

export interface SwigluFwd {
  /** The gate projection's output (f32, [M, N]); the up value v is saved to `up` for backward. */
  readonly gate: Ref;
  readonly up: Ref;
  readonly act?: GateAct;
}

export interface SwigluBwd {
  /** Saved gate and up values (f32, [M, N]); d(up) goes to `dUp` (row stride N), d(gate) to the epilogue's out. */
  readonly gate: Ref;
  readonly up: Ref;
  readonly dUp: Ref & { readonly type: 'f32' | 'f16' };
  readonly act?: GateAct;
}

export const SILU_WGSL = `
fn sigm(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }`;

/** Epilogue lines: v (the up projection's value) becomes silu(gate)·v, or gelu(gate)·v. */
export function swigluLines(s: SwigluFwd, N: number): string[] {
  const i = `m * ${u32(N)} + n`;
  const a = s.act === 'gelu' ? 'gelu_new(g)' : 'g * sigm(g)';
  return [`{ let g = ${s.gate.buffer}[${u32(s.gate.offset)} + ${i}];`, `  ${s.up.buffer}[${u32(s.up.offset)} + ${i}] = v;`, `  v = ${a} * v; }`];
}

/** Epilogue lines: v (dh) becomes d(gate) = dh·up·act'(gate); d(up) = dh·act(gate) is stored aside. */
export function swigluGradLines(s: SwigluBwd, N: number): string[] {
  const i = `m * ${u32(N)} + n`;
  if (s.act === 'gelu')
    return [
      `{ let g = ${s.gate.buffer}[${u32(s.gate.offset)} + ${i}];`,
      `  let u = ${s.up.buffer}[${u32(s.up.offset)} + ${i}];`,
      `  ${s.dUp.buffer}[${u32(s.dUp.offset)} + ${i}] = ${s.dUp.type}(v * gelu_new(g));`,
      `  v = v * u * gelu_new_grad(g); }`,
    ];
  return [
    `{ let g = ${s.gate.buffer}[${u32(s.gate.offset)} + ${i}];`,
    `  let u = ${s.up.buffer}[${u32(s.up.offset)} + ${i}];`,
    `  let sg = sigm(g);`,
    `  ${s.dUp.buffer}[${u32(s.dUp.offset)} + ${i}] = ${s.dUp.type}(v * g * sg);`,
    `  v = v * u * sg * (1.0 + g * (1.0 - sg)); }`,
  ];
}
