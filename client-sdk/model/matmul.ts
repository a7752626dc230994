// Matrix products routed around a wasm performance cliff: the wasm backend hands only untransposed 2-D products
// to XNNPACK; with transposeA or transposeB set it falls back to a naive loop 8–18× slower (measured on 2 cores:
// 512×512·512×128 takes 2.9 ms plain, 25 ms with transposeB, 53 ms with transposeA; an explicit transpose costs
// ~1 ms). So on wasm, 2-D operands are transposed explicitly; other backends get the flags as they are.
import * as tf from '@tensorflow/tfjs-core';

function swapLast2<T extends tf.Tensor>(x: T): T {
  const perm = x.shape.map((_, i) => i);
  const n = perm.length;
  [perm[n - 2], perm[n - 1]] = [perm[n - 1], perm[n - 2]];
  return tf.transpose(x, perm) as T;
}

/** Batch dimensions multiply to 1, i.e. the product is a single 2-D matmul for the backend. */
function isSingle(x: tf.Tensor): boolean {
  for (let i = 0; i < x.rank - 2; i++) if (x.shape[i] !== 1) return false;
  return true;
}

export function mm<T extends tf.Tensor>(a: T, b: tf.Tensor, transposeA = false, transposeB = false): T {
  if ((transposeA || transposeB) && tf.getBackend() === 'wasm' && isSingle(a) && isSingle(b)) {
    return tf.tidy(() => tf.matMul(transposeA ? swapLast2(a) : a, transposeB ? swapLast2(b) : b) as T);
  }
  return tf.matMul(a, b, transposeA, transposeB) as T;
}
