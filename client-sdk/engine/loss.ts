// Softmax cross-entropy on the scored pairs only, and the step's mean loss. The backward carries the gradient of
// the SUM of pair losses (softmax − one-hot, entries in [−1, 1]) so that f16 activations never see the tiny
// values 1/P would give them; the 1/P is applied once, when adapter gradients are written (optimizer.ts).
import { REDUCE, REDUCE_WG } from './rowwise';
import { header, u32, type Binding, type Kernel, type StepShape } from './kernel';

/** Step-buffer words (u32; floats as bit patterns), written once per step with queue.writeBuffer. */
export const STEP = { pairs: 0, invPairs: 1, lr: 2, decay: 3, bc1: 4, bc2: 5, clip: 6, mu: 7, words: 8 } as const;

/**
 * One workgroup per scored pair p: lse over the V logits, lossPart[p] = lse − logit[target], and
 * dlogits[p, v] = softmax − onehot, written over the logits (f32 path) or into an f16 buffer.
 */
export function crossEntropy(maxPairs: number, V: number, ld: number, act: 'f32' | 'f16'): Kernel {
  const inPlace = act === 'f32';
  const bindings: Binding[] = [
    { buffer: 'step', type: 'u32', write: false },
    { buffer: 'pairTarget', type: 'u32', write: false },
    { buffer: 'logits', type: 'f32', write: inPlace },
    { buffer: 'lossPart', type: 'f32', write: true },
  ];
  if (!inPlace) bindings.push({ buffer: 'dlogits', type: 'f16', write: true });
  const out = inPlace ? 'logits' : 'dlogits';
  const code = `${header(bindings)}
${REDUCE}
@compute @workgroup_size(${REDUCE_WG}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let p = wg.x;
  if (p >= min(step[0], ${u32(maxPairs)})) { return; }
  let o = p * ${u32(ld)};
  var mx = -3.0e38;
  for (var v = li; v < ${u32(V)}; v += ${u32(REDUCE_WG)}) { mx = max(mx, logits[o + v]); }
  mx = wg_max(mx, li);
  var s = 0.0;
  for (var v = li; v < ${u32(V)}; v += ${u32(REDUCE_WG)}) { s += exp(logits[o + v] - mx); }
  let lse = mx + log(wg_sum(s, li));
  let t = pairTarget[p];
  if (li == 0u) { lossPart[p] = lse - logits[o + t]; }
  workgroupBarrier();
  for (var v = li; v < ${u32(V)}; v += ${u32(REDUCE_WG)}) {
    let g = exp(logits[o + v] - lse) - select(0.0, 1.0, v == t);
    ${out}[o + v] = ${act}(g);
  }
}`;
  return { label: 'lm.ce', code, bindings, grid: (s: StepShape) => [Math.min(s.pairs, maxPairs), 1, 1] };
}

/** loss[0] = mean of lossPart over the step's pairs (fixed order); loss[1] += loss[0] (the round's sum). */
export function lossMean(maxPairs: number): Kernel {
  const bindings: Binding[] = [
    { buffer: 'step', type: 'u32', write: false },
    { buffer: 'lossPart', type: 'f32', write: false },
    { buffer: 'loss', type: 'f32', write: true },
  ];
  const code = `${header(bindings)}
${REDUCE}
@compute @workgroup_size(${REDUCE_WG}, 1, 1)
fn main(@builtin(local_invocation_index) li: u32) {
  let P = min(step[0], ${u32(maxPairs)});
  var s = 0.0;
  for (var p = li; p < P; p += ${u32(REDUCE_WG)}) { s += lossPart[p]; }
  let tot = wg_sum(s, li);
  if (li == 0u) { let l = tot / f32(P); loss[0] = l; loss[1] += l; }
}`;
  return { label: 'lm.loss', code, bindings, grid: [1, 1, 1] };
}
