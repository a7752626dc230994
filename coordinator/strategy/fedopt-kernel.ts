// The adaptive optimisers' close in WebAssembly (FedAdam, FedAdagrad, FedYogi; bias correction and
// strategy.noiseAware included): for every value, Δ = s / denom, the moments m and v, and the next value, with the
// float64 operations of fedopt.ts's JavaScript loop in its order (Δ as mean-delta.ts computes it), one rounding to
// float32 on the store of each (the rounding OptimizerState.write gives m and v), so the stored m, v and the next
// values have the same bits (test/fedopt-kernel.test.ts checks them value for value). The loop's constants (1 − β1, 1 − β2, the bias corrections, ŝ, the floor, η) come from JavaScript,
// evaluated once as the loop evaluates them; f64.max is Math.max (NaN from either side, +0 over −0) and Math.sign is
// written out (1, −1, or the argument itself: ±0 and NaN).
// Why: as for FedAvg's close (close-kernel.ts), the loop runs once a round over every parameter, so V8 has rarely
// optimised it when it runs, and FedAdam is the default strategy. Values go through a fixed stage of FEDOPT_BLOCK
// values (2.5 MiB): the sum in float64; the global, m and v in float32 (as stored), overwritten in place by the
// next values and state, so every copy in and out is a memcpy (widening m and v to float64 and rounding them back
// outside the module had cost more than the loop).
// Assembled with wabt's wat2wasm (the devDependency `wabt`; the test re-assembles this text and compares):
//
// (module
//   (memory (export "mem") 40)
//   ;; For i in [0, n): d = s[i] / denom; m' = b1·m[i] + omb1·d; v' = the mode's second moment of v[i] (v0 where
//   ;; $hasV is 0: the first step) and d·d
//   ;; (0 FedAdam: b2·v + omb2·d², 1 FedAdagrad: v + d², 2 FedYogi: v − omb2·d²·sign(v − d²));
//   ;; h = v' / bc2, over sHat > 0: max(h − sHat, floor); g[i] = f32(f64(g[i]) + (eta·(m' / bc1)) / (√h + tau));
//   ;; m[i] = f32(m'), v[i] = f32(v'). s float64 at $s; g, m, v float32 at $g, $m, $v, overwritten in place.
//   (func (export "step")
//     (param $s i32) (param $m i32) (param $v i32) (param $g i32) (param $n i32) (param $mode i32) (param $hasV i32)
//     (param $denom f64) (param $b1 f64) (param $omb1 f64) (param $b2 f64) (param $omb2 f64)
//     (param $bc1 f64) (param $bc2 f64) (param $sHat f64) (param $floor f64) (param $eta f64) (param $tau f64) (param $v0 f64)
//     (local $end i32) (local $d f64) (local $d2 f64) (local $mi f64) (local $vi f64) (local $x f64) (local $h f64)
//     (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n) (i32.const 2))))
//     (block $done
//       (loop $each
//         (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
//         (local.set $d (f64.div (f64.load (local.get $s)) (local.get $denom)))
//         (local.set $d2 (f64.mul (local.get $d) (local.get $d)))
//         (local.set $mi
//           (f64.add (f64.mul (local.get $b1) (f64.promote_f32 (f32.load (local.get $m)))) (f64.mul (local.get $omb1) (local.get $d))))
//         (local.set $vi (select (f64.promote_f32 (f32.load (local.get $v))) (local.get $v0) (local.get $hasV)))
//         (if (i32.eqz (local.get $mode))
//           (then
//             (local.set $vi
//               (f64.add (f64.mul (local.get $b2) (local.get $vi)) (f64.mul (local.get $omb2) (local.get $d2)))))
//           (else
//             (if (i32.eq (local.get $mode) (i32.const 1))
//               (then (local.set $vi (f64.add (local.get $vi) (local.get $d2))))
//               (else
//                 ;; Math.sign: 1 above 0, −1 below, the argument itself otherwise (±0, NaN).
//                 (local.set $x (f64.sub (local.get $vi) (local.get $d2)))
//                 (local.set $vi
//                   (f64.sub (local.get $vi)
//                     (f64.mul (f64.mul (local.get $omb2) (local.get $d2))
//                       (select (f64.const 1)
//                         (select (f64.const -1) (local.get $x) (f64.lt (local.get $x) (f64.const 0)))
//                         (f64.gt (local.get $x) (f64.const 0))))))))))
//         (f32.store (local.get $m) (f32.demote_f64 (local.get $mi)))
//         (f32.store (local.get $v) (f32.demote_f64 (local.get $vi)))
//         (local.set $h (f64.div (local.get $vi) (local.get $bc2)))
//         (if (f64.gt (local.get $sHat) (f64.const 0))
//           (then (local.set $h (f64.max (f64.sub (local.get $h) (local.get $sHat)) (local.get $floor)))))
//         (f32.store (local.get $g)
//           (f32.demote_f64
//             (f64.add
//               (f64.promote_f32 (f32.load (local.get $g)))
//               (f64.div
//                 (f64.mul (local.get $eta) (f64.div (local.get $mi) (local.get $bc1)))
//                 (f64.add (f64.sqrt (local.get $h)) (local.get $tau))))))
//         (local.set $g (i32.add (local.get $g) (i32.const 4)))
//         (local.set $s (i32.add (local.get $s) (i32.const 8)))
//         (local.set $m (i32.add (local.get $m) (i32.const 4)))
//         (local.set $v (i32.add (local.get $v) (i32.const 4)))
//         (br $each)))))
//
// Memory: the sum's stage at 0 (float64), m's at 8·FEDOPT_BLOCK, v's at 12·FEDOPT_BLOCK, the global's at
// 16·FEDOPT_BLOCK (float32 each).
import { wasmApi } from './fold-kernel';

export const FEDOPT_WASM = Buffer.from(
  'AGFzbQEAAAABFwFgE39/f39/f398fHx8fHx8fHx8fHwAAwIBAAUDAQAoBw4CA21lbQIABHN0ZXAAAAqdAgGaAgIBfwZ8IAMgBEECdGohEwJAA0AgAyATTw0BIAArAwAgB6MhFCAUIBSiIRUgCCABKgIAu6IgCSAUoqAhFiACKgIAuyASIAYbIRcgBUUEQCAKIBeiIAsgFaKgIRcFIAVBAUYEQCAXIBWgIRcFIBcgFaEhGCAXIAsgFaJEAAAAAAAA8D9EAAAAAAAA8L8gGCAYRAAAAAAAAAAAYxsgGEQAAAAAAAAAAGQboqEhFwsLIAEgFrY4AgAgAiAXtjgCACAXIA2jIRkgDkQAAAAAAAAAAGQEQCAZIA6hIA+lIRkLIAMgAyoCALsgECAWIAyjoiAZnyARoKOgtjgCACADQQRqIQMgAEEIaiEAIAFBBGohASACQQRqIQIMAAsLCw==',
  'base64',
);
/** Values per call: 20 bytes each, 40 pages in all. */
export const FEDOPT_BLOCK = 1 << 17;

/** Which second moment: FedAdam's β2·v + (1 − β2)·Δ², FedAdagrad's v + Δ², FedYogi's v − (1 − β2)·Δ²·sign(v − Δ²). */
export const SECOND_MOMENT = { adam: 0, adagrad: 1, yogi: 2 } as const;
export type SecondMoment = keyof typeof SECOND_MOMENT;

/** One round's constants, each the float64 the JavaScript loop uses (sHat = floor = 0: no noise correction). */
export interface FedOptConstants {
  readonly mode: SecondMoment;
  readonly beta1: number;
  readonly oneMinusBeta1: number;
  readonly beta2: number;
  readonly oneMinusBeta2: number;
  readonly bc1: number;
  readonly bc2: number;
  readonly sHat: number;
  readonly floor: number;
  readonly eta: number;
  readonly tau: number;
}

type StepFn = (...args: number[]) => void;
interface FedOptModule {
  readonly sum: Float64Array;
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly next: Float32Array;
  readonly step: StepFn;
}

let instance: FedOptModule | null | undefined;

function fedOptModule(): FedOptModule | null {
  if (instance !== undefined) return instance;
  if (!wasmApi) return (instance = null);
  // Not `exports`: CommonJS output names the module's own exports so.
  const wasm = new wasmApi.Instance(new wasmApi.Module(FEDOPT_WASM)).exports as unknown as { mem: { buffer: ArrayBuffer }; step: StepFn };
  const buf = wasm.mem.buffer;
  instance = {
    sum: new Float64Array(buf, 0, FEDOPT_BLOCK),
    m: new Float32Array(buf, 8 * FEDOPT_BLOCK, FEDOPT_BLOCK),
    v: new Float32Array(buf, 12 * FEDOPT_BLOCK, FEDOPT_BLOCK),
    next: new Float32Array(buf, 16 * FEDOPT_BLOCK, FEDOPT_BLOCK),
    step: wasm.step,
  };
  return instance;
}

/**
 * One tensor's step in the module where WebAssembly is present (false where it is not: the caller then takes the
 * JavaScript path). `mPrev`/`vPrev`: the prior state, or undefined in the first step (m from 0, v from `v0`).
 * Writes m and v rounded to float32 (as stored) and the next values. Lengths must match (the caller checks).
 */
export function stepFedOpt(
  c: FedOptConstants,
  s: Float64Array,
  g: Float32Array,
  denom: number,
  prior: { mPrev: Float32Array | undefined; vPrev: Float32Array | undefined; v0: number },
  out: { m: Float32Array; v: Float32Array; next: Float32Array },
): boolean {
  const k = fedOptModule();
  if (!k) return false;
  for (let a = 0; a < g.length; a += FEDOPT_BLOCK) {
    const n = Math.min(FEDOPT_BLOCK, g.length - a);
    const b = a + n;
    k.sum.set(s.subarray(a, b));
    k.next.set(g.subarray(a, b));
    if (prior.mPrev) k.m.set(prior.mPrev.subarray(a, b));
    else k.m.fill(0, 0, n);
    if (prior.vPrev) k.v.set(prior.vPrev.subarray(a, b)); // else v0, a float64, from the call
    const hasV = prior.vPrev ? 1 : 0;
    k.step(
      0,
      8 * FEDOPT_BLOCK,
      12 * FEDOPT_BLOCK,
      16 * FEDOPT_BLOCK,
      n,
      SECOND_MOMENT[c.mode],
      hasV,
      denom,
      c.beta1,
      c.oneMinusBeta1,
      c.beta2,
      c.oneMinusBeta2,
      c.bc1,
      c.bc2,
      c.sHat,
      c.floor,
      c.eta,
      c.tau,
      prior.v0,
    );
    out.m.set(k.m.subarray(0, n), a);
    out.v.set(k.v.subarray(0, n), a);
    out.next.set(k.next.subarray(0, n), a);
  }
  return true;
}
