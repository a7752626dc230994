// FedProx (Li et al. 2020, "Federated Optimization in Heterogeneous Networks"): each site minimises
//   h(w) = F(w) + μ/2·‖w − w_global‖²
// so that local steps on skewed data cannot pull its adapter far from the global one. The trainer adds the term's
// gradient μ·(w − w_global) to the loss gradient explicitly (rather than the term to the loss), so that train_loss
// still reports F alone, the number comparable across strategies.
import * as tf from '@tensorflow/tfjs-core';

/** μ from the plan: 0 when absent (an older coordinator); refuses anything but a finite μ ≥ 0. */
export function proximalMu(mu: number | undefined): number {
  const m = mu ?? 0;
  if (!(Number.isFinite(m) && m >= 0)) throw new Error(`bad proximalMu ${m}: must be a finite number ≥ 0`);
  return m;
}

/** The gradient of h at `theta`: `grad` (of F) + μ·(theta − anchor); `grad` itself when μ is 0. */
export function withProximalGradient(grad: tf.Tensor1D, theta: tf.Tensor1D, anchor: tf.Tensor1D | null, mu: number): tf.Tensor1D {
  if (mu === 0 || anchor === null) return grad;
  return tf.tidy(() => tf.add(grad, tf.mul(tf.sub(theta, anchor), mu)));
}

/** The term itself, μ/2·‖theta − anchor‖² (for tests and diagnostics; training adds only its gradient). */
export function proximalTerm(theta: tf.Tensor1D, anchor: tf.Tensor1D, mu: number): tf.Scalar {
  return tf.tidy(() => tf.mul(tf.sum(tf.square(tf.sub(theta, anchor))), mu / 2));
}
