// Adapter gradients and the update, over ONE flat f32 buffer per quantity (theta, grad, Adam m and v), laid out
// like sft/flat-adapter.ts (PEFT keys sorted). Split-K partials are summed in a fixed order and scaled by 1/P;
// the optional global-norm clip is a two-level fixed-order sum of squares; AdamW is one kernel over the flat
// buffer with tfjs's formula (decoupled decay first, bias-corrected moments, eps outside the sqrt). With `proximal`
// (FedProx), μ·(theta − anchor) is added to the gradient first, as sft/proximal.ts does on tfjs; without it the
// kernel is the same text as before FedProx existed. With `scaffold` (SCAFFOLD), the gradient is added to 'gsum'
// (the round's sum, whose mean is the site's next c_i) and then corrected by 'control' (c − c_i), before FedProx's
// term, as sft/scaffold-local.ts does on tfjs; without it the text is unchanged.
import { REDUCE, REDUCE_WG } from './rowwise';
import { STEP } from './loss';
import { ceilDiv, f32, header, u32, type Binding, type Kernel } from './kernel';

/** out[off + i] = Σ_s part[s·MN + i] for i < MN, times 1/P for adapter gradients (out = 'grad'). */
export function reduceSplitK(label: string, S: number, MN: number, gradOffset: number, out = 'grad'): Kernel {
  // 'auto' layouts drop unused bindings, so `step` is bound only where 1/P is read.
  const bindings: Binding[] = [
    ...(out === 'grad' ? [{ buffer: 'step', type: 'u32' as const, write: false }] : []),
    { buffer: 'part', type: 'f32', write: false },
    { buffer: out, type: 'f32', write: true },
  ];
  const code = `${header(bindings)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= ${u32(MN)}) { return; }
  var s = 0.0;
  for (var z = 0u; z < ${u32(S)}; z++) { s += part[z * ${u32(MN)} + i]; }
  ${out}[${u32(gradOffset)} + i] = s${out === 'grad' ? ` * bitcast<f32>(step[${STEP.invPairs}])` : ''};
}`;
  return { label, code, bindings, grid: [ceilDiv(MN, 256), 1, 1] };
}

export const NORM_CHUNK = 4096;

/** normPart[w] = Σ grad² over chunk w, then norm[0] = Σ normPart (both fixed order). */
export function gradNorm(n: number): Kernel[] {
  const chunks = ceilDiv(n, NORM_CHUNK);
  const b1: Binding[] = [
    { buffer: 'grad', type: 'f32', write: false },
    { buffer: 'normPart', type: 'f32', write: true },
  ];
  const k1 = `${header(b1)}
${REDUCE}
@compute @workgroup_size(${REDUCE_WG}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let start = wg.x * ${u32(NORM_CHUNK)};
  let end = min(${u32(n)}, start + ${u32(NORM_CHUNK)});
  var s = 0.0;
  for (var i = start + li; i < end; i += ${u32(REDUCE_WG)}) { let g = grad[i]; s = fma(g, g, s); }
  let t = wg_sum(s, li);
  if (li == 0u) { normPart[wg.x] = t; }
}`;
  const b2: Binding[] = [
    { buffer: 'normPart', type: 'f32', write: false },
    { buffer: 'norm', type: 'f32', write: true },
  ];
  const k2 = `${header(b2)}
${REDUCE}
@compute @workgroup_size(${REDUCE_WG}, 1, 1)
fn main(@builtin(local_invocation_index) li: u32) {
  var s = 0.0;
  for (var i = li; i < ${u32(chunks)}; i += ${u32(REDUCE_WG)}) { s += normPart[i]; }
  let t = wg_sum(s, li);
  if (li == 0u) { norm[0] = sqrt(t); }
}`;
  return [
    { label: 'clip.part', code: k1, bindings: b1, grid: [chunks, 1, 1] },
    { label: 'clip.total', code: k2, bindings: b2, grid: [1, 1, 1] },
  ];
}

/**
 * The bindings an update kernel adds for clipping (the global norm), FedProx (the round's global adapter) and
 * SCAFFOLD (the correction c − c_i, and the round's gradient sum).
 */
function gradientBindings(clip: boolean, proximal: boolean, scaffold: boolean): Binding[] {
  return [
    ...(clip ? [{ buffer: 'norm', type: 'f32' as const, write: false }] : []),
    ...(proximal ? [{ buffer: 'anchor', type: 'f32' as const, write: false }] : []),
    ...(scaffold
      ? [
          { buffer: 'control', type: 'f32' as const, write: false },
          { buffer: 'gsum', type: 'f32' as const, write: true },
        ]
      : []),
  ];
}

/**
 * The update's gradient g: the step's, scaled to the clip norm, summed into gsum and corrected by c − c_i
 * (SCAFFOLD), plus FedProx's μ·(theta − anchor) (both rules).
 */
function gradientLines(clip: boolean, proximal: boolean, scaffold: boolean): string {
  const clipLine = clip ? `g *= min(1.0, bitcast<f32>(step[${STEP.clip}]) / (norm[0] + 1e-6));` : '';
  const scaffoldLine = scaffold ? `\n  gsum[i] = gsum[i] + g;\n  g = g + control[i];` : '';
  const proxLine = proximal ? `\n  g = g + (theta[i] - anchor[i]) * bitcast<f32>(step[${STEP.mu}]);` : '';
  return `  var g = grad[i];\n  ${clipLine}${scaffoldLine}${proxLine}`;
}

export interface AdamConsts {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
}

/**
 * AdamW over the flat adapter; with `clip`, gradients are first scaled by min(1, maxNorm / (norm + 1e-6)); with
 * `proximal`, FedProx's μ·(theta − anchor) (μ in step[STEP.mu], anchor the round's global adapter) is added after.
 */
export function adamW(n: number, c: AdamConsts, clip: boolean, proximal = false, scaffold = false): Kernel {
  const bindings: Binding[] = [
    { buffer: 'step', type: 'u32', write: false },
    { buffer: 'grad', type: 'f32', write: false },
    { buffer: 'theta', type: 'f32', write: true },
    { buffer: 'adamM', type: 'f32', write: true },
    { buffer: 'adamV', type: 'f32', write: true },
  ];
  bindings.push(...gradientBindings(clip, proximal, scaffold));
  const code = `${header(bindings)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= ${u32(n)}) { return; }
  let lr = bitcast<f32>(step[${STEP.lr}]);
  let decay = bitcast<f32>(step[${STEP.decay}]);
  let bc1 = bitcast<f32>(step[${STEP.bc1}]);
  let bc2 = bitcast<f32>(step[${STEP.bc2}]);
${gradientLines(clip, proximal, scaffold)}
  let th = theta[i] * decay;
  let m = ${f32(c.beta1)} * adamM[i] + ${f32(1 - c.beta1)} * g;
  let v = ${f32(c.beta2)} * adamV[i] + ${f32(1 - c.beta2)} * g * g;
  adamM[i] = m;
  adamV[i] = v;
  theta[i] = th - lr * ((m / bc1) / (sqrt(v / bc2) + ${f32(c.eps)}));
}`;
  return { label: 'adamw', code, bindings, grid: [ceilDiv(n, 256), 1, 1] };
}

/**
 * SGD over the flat adapter (the tfjs trainer's rule, sft/local-optimizer.ts): clip and FedProx's term as in
 * adamW, decoupled decay, then with momentum m > 0 the buffer b ← m·b + g (in 'adamM', which setAdapter zeroes
 * each round) and theta ← theta − lr·b; with m = 0, theta ← theta − lr·g and no buffer is bound. m is a constant of
 * the kernel text, like Adam's betas.
 */
export function sgd(n: number, momentum: number, clip: boolean, proximal = false, scaffold = false): Kernel {
  if (!(momentum >= 0 && momentum < 1)) throw new Error(`bad SGD momentum ${momentum}: must be a number in [0, 1)`);
  const bindings: Binding[] = [
    { buffer: 'step', type: 'u32', write: false },
    { buffer: 'grad', type: 'f32', write: false },
    { buffer: 'theta', type: 'f32', write: true },
  ];
  if (momentum > 0) bindings.push({ buffer: 'adamM', type: 'f32', write: true });
  bindings.push(...gradientBindings(clip, proximal, scaffold));
  const code = `${header(bindings)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let i = gid.x;
  if (i >= ${u32(n)}) { return; }
  let lr = bitcast<f32>(step[${STEP.lr}]);
  let decay = bitcast<f32>(step[${STEP.decay}]);
${gradientLines(clip, proximal, scaffold)}
  let th = theta[i] * decay;${
    momentum > 0
      ? `
  let b = ${f32(momentum)} * adamM[i] + g;
  adamM[i] = b;
  theta[i] = th - lr * b;`
      : `
  theta[i] = th - lr * g;`
  }
}`;
  return { label: 'sgd', code, bindings, grid: [ceilDiv(n, 256), 1, 1] };
}
