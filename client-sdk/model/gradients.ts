// Gradient functions for the kernels on fedtune's training path, registered on tfjs-core's global registry.
//
// Why this exists: `@tensorflow/tfjs-core` registers no gradients by itself. The union package `@tensorflow/tfjs`
// does (`import '@tensorflow/tfjs-core/dist/register_all_gradients'`), but that file is an ES module with
// extension-less imports that Node's CommonJS cannot load, and fedtune depends on tfjs-core only. These are
// straight ports of tfjs-core 4.22's own gradient configs (src/gradients/*_grad.ts), so results match the
// union package. Kernels that already have a gradient (e.g. from @tensorflow/tfjs) keep it, except BatchMatMul:
// ours routes its products through mm() (see matmul.ts), which is several times faster on wasm.
//
// GatherV2 is deliberately absent: its gradient needs UnsortedSegmentSum, which the wasm backend lacks; a
// gradient through gather therefore fails loudly ("gradient function not found for GatherV2") on every backend.
import * as tf from '@tensorflow/tfjs-core';
import { mm } from './matmul';

type GradFunc = (dy: tf.Tensor, saved: tf.Tensor[], attrs: Record<string, unknown>) => Record<string, () => tf.Tensor>;
interface Config {
  kernelName: string;
  inputsToSave?: string[];
  saveAllInputs?: boolean;
  outputsToSave?: boolean[];
  gradFunc: GradFunc;
}

const { getReductionAxes, assertAndGetBroadcastShape } = tf.broadcast_util;

/** tf.cast to float32, skipped when already float32 (a same-dtype cast is a full copy on wasm). */
const f32 = (t: tf.Tensor): tf.Tensor => (t.dtype === 'float32' ? t : tf.cast(t, 'float32'));

/** dy reduced over broadcast axes back to `shape`. */
function unbroadcast(res: tf.Tensor, shape: number[], outShape: number[]): tf.Tensor {
  const axes = getReductionAxes(shape, outShape);
  return tf.reshape(axes.length > 0 ? tf.sum(res, axes) : res, shape);
}

const CONFIGS: Config[] = [
  {
    kernelName: tf.Add,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => {
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return { a: () => unbroadcast(dy, a.shape, out), b: () => unbroadcast(dy, b.shape, out) };
    },
  },
  {
    kernelName: tf.Sub,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => {
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return { a: () => unbroadcast(dy, a.shape, out), b: () => tf.neg(unbroadcast(dy, b.shape, out)) };
    },
  },
  {
    kernelName: tf.Multiply,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => {
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return {
        a: () => unbroadcast(tf.mul(dy, f32(b)), a.shape, out),
        b: () => unbroadcast(tf.mul(dy, f32(a)), b.shape, out),
      };
    },
  },
  {
    kernelName: tf.RealDiv,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b]) => {
      const out = assertAndGetBroadcastShape(a.shape, b.shape);
      return {
        a: () => unbroadcast(tf.div(dy, f32(b)), a.shape, out),
        b: () => tf.neg(tf.div(unbroadcast(tf.mul(dy, f32(a)), b.shape, out), f32(tf.square(b)))),
      };
    },
  },
  { kernelName: tf.Neg, gradFunc: (dy) => ({ x: () => tf.neg(dy) }) },
  { kernelName: tf.Cast, gradFunc: (dy) => ({ x: () => dy.clone() }) },
  { kernelName: tf.Identity, gradFunc: (dy) => ({ x: () => tf.cast(dy, 'float32') }) },
  {
    kernelName: tf.Square,
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy, tf.mul(f32(x), 2)) }),
  },
  {
    kernelName: tf.Sqrt,
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({ x: () => tf.div(dy, tf.mul(tf.sqrt(f32(x)), 2)) }),
  },
  {
    kernelName: tf.Rsqrt,
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({ x: () => tf.neg(tf.div(dy, tf.mul(tf.pow(x, 1.5), 2))) }),
  },
  {
    kernelName: tf.Tanh,
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(tf.sub(tf.scalar(1), tf.square(y)), dy) }),
  },
  { kernelName: tf.Exp, outputsToSave: [true], gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy, y) }) },
  {
    kernelName: tf.Sigmoid,
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(dy, tf.mul(y, tf.sub(tf.scalar(1), y))) }),
  },
  { kernelName: tf.Log, inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.div(dy, f32(x)) }) },
  {
    kernelName: tf.Softmax,
    outputsToSave: [true],
    gradFunc: (dy, [y], attrs) => {
      const dim = attrs.dim as number;
      const dyTimesY = tf.mul(dy, y);
      return { logits: () => tf.sub(dyTimesY, tf.mul(tf.sum(dyTimesY, [dim], true), y)) };
    },
  },
  {
    kernelName: tf.Sum,
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => {
      const shape = x.shape.slice();
      for (const a of tf.util.parseAxisParam(attrs.axis as number | number[], x.shape)) shape[a] = 1;
      return { x: () => tf.mul(tf.reshape(dy, shape), tf.ones(x.shape, 'float32')) };
    },
  },
  {
    kernelName: tf.Mean,
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => {
      const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
      const reduceSize = tf.util.sizeFromShape(tf.backend_util.computeOutAndReduceShapes(x.shape, axes)[1]);
      const shape = x.shape.slice();
      for (const a of axes) shape[a] = 1;
      return { x: () => tf.div(tf.mul(tf.reshape(dy, shape), tf.ones(x.shape, 'float32')), reduceSize) };
    },
  },
  {
    kernelName: tf.Max,
    inputsToSave: ['x'],
    outputsToSave: [true],
    gradFunc: (dy, [x, y], attrs) => {
      const axes = tf.util.parseAxisParam(attrs.reductionIndices as number | number[], x.shape);
      const keep = (t: tf.Tensor): tf.Tensor => (t.rank < x.rank ? tf.reshape(t, tf.backend_util.expandShapeToKeepDim(t.shape, axes)) : t);
      return { x: () => tf.mul(keep(dy), tf.cast(tf.equal(x, keep(y)), dy.dtype)) };
    },
  },
  {
    kernelName: tf.SplitV,
    gradFunc: (dy, _s, attrs) => ({ x: () => tf.concat(dy as unknown as tf.Tensor[], attrs.axis as number) }),
  },
  {
    kernelName: tf.Concat,
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const axis = tf.util.parseAxisParam(attrs.axis as number, saved[0].shape)[0];
      const parts = tf.split(
        dy,
        saved.map((t) => t.shape[axis]),
        axis,
      );
      return Object.fromEntries(parts.map((t, i) => [String(i), () => t]));
    },
  },
  { kernelName: tf.Reshape, inputsToSave: ['x'], gradFunc: (dy, [x]) => ({ x: () => tf.reshape(dy, x.shape) }) },
  {
    kernelName: tf.Transpose,
    gradFunc: (dy, _s, attrs) => ({ x: () => tf.transpose(dy, tf.backend_util.getUndoAxesPermutation(attrs.perm as number[])) }),
  },
  {
    kernelName: tf.Slice,
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => {
      const [begin, size] = tf.slice_util.parseSliceParams(x, attrs.begin as number[], attrs.size as number[]);
      const paddings: Array<[number, number]> = [];
      for (let i = 0; i < dy.rank; i++) paddings.push([begin[i], x.shape[i] - begin[i] - size[i]]);
      return { x: () => tf.pad(dy, paddings) };
    },
  },
  {
    kernelName: tf.PadV2,
    inputsToSave: ['x'],
    gradFunc: (dy, [x], attrs) => ({
      x: () =>
        tf.slice(
          dy,
          (attrs.paddings as Array<[number, number]>).map((p) => p[0]),
          x.shape,
        ),
    }),
  },
  {
    kernelName: tf.BatchMatMul,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, [a, b], attrs) => {
      const ta = attrs.transposeA as boolean;
      const tb = attrs.transposeB as boolean;
      if (!ta && !tb) return { a: () => mm(dy, b, false, true), b: () => mm(a, dy, true, false) };
      if (!ta && tb) return { a: () => mm(dy, b, false, false), b: () => mm(dy, a, true, false) };
      if (ta && !tb) return { a: () => mm(b, dy, false, true), b: () => mm(a, dy, false, false) };
      return { a: () => mm(b, dy, true, true), b: () => mm(dy, a, true, true) };
    },
  },
];

let registered = false;

/** Registers the gradients above (once). */
export function registerTrainingGradients(): void {
  if (registered) return;
  for (const c of CONFIGS) {
    if (c.kernelName === tf.BatchMatMul || tf.getGradient(c.kernelName) == null) {
      tf.registerGradient(c as unknown as tf.GradConfig);
    }
  }
  registered = true;
}

registerTrainingGradients();
