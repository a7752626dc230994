// Log-probabilities of scored (position, target) pairs of a packed batch: hidden states → only the needed rows →
// LM head → log-softmax normaliser. Training selects rows with a one-hot matmul because the wasm backend lacks
// the gradient kernel of gather (UnsortedSegmentSum); evaluation, which needs no gradient, gathers.
import * as tf from '@tensorflow/tfjs-core';
import type { ForwardOptions } from '../model/gpt2';
import type { CausalLm } from '../model/load';
import { logSumExpRows } from '../model/layers';
import type { PackedBatch } from './pack';

/** One-hot selection matrix [idx.length, n]: row i has a 1 in column idx[i]. */
export function selectionMatrix(idx: Int32Array, n: number): tf.Tensor2D {
  const m = new Float32Array(idx.length * n);
  for (let i = 0; i < idx.length; i++) m[i * n + idx[i]] = 1;
  return tf.tensor2d(m, [idx.length, n]);
}

function isIdentity(idx: Int32Array): boolean {
  for (let i = 0; i < idx.length; i++) if (idx[i] !== i) return false;
  return true;
}

/** log p(target | prefix) for every pair of `packed`, [P]. Set `differentiable` when taking gradients. */
export function pairLogProbs(model: CausalLm, packed: PackedBatch, opts: ForwardOptions, differentiable: boolean): tf.Tensor1D {
  return tf.tidy(() => {
    const ids = tf.tensor2d(packed.inputIds, [packed.batch, packed.seq], 'int32');
    const h3 = model.hiddenStates(ids, opts);
    const flat = tf.reshape(h3, [packed.batch * packed.seq, model.config.nEmbd]) as tf.Tensor2D;
    const pick = (x: tf.Tensor2D, idx: Int32Array, n: number): tf.Tensor2D =>
      differentiable ? tf.matMul(selectionMatrix(idx, n), x) : tf.gather(x, tf.tensor1d(idx, 'int32'));
    const rows = pick(flat, packed.rows, packed.batch * packed.seq);
    const logZ = logSumExpRows(model.lmHead(rows)); // [N]
    const identity = isIdentity(packed.pairRow);
    const pairH = identity ? rows : pick(rows, packed.pairRow, packed.rows.length);
    const pairZ = identity
      ? logZ
      : differentiable
        ? tf.reshape(tf.matMul(selectionMatrix(packed.pairRow, packed.rows.length), tf.reshape(logZ, [-1, 1])), [-1])
        : tf.gather(logZ, tf.tensor1d(packed.pairRow, 'int32'));
    const target = model.tokenLogits(pairH, tf.tensor1d(packed.pairTarget, 'int32'));
    return tf.sub(target, pairZ) as tf.Tensor1D;
  });
}
