// FedAvg's close in WebAssembly: next = f32(g + s / d) for every value, the step stepAlongMeanDelta + FedAvg's
// callback take in JavaScript (one float64 division, one float64 addition, one rounding to float32 on the store), so
// the bits are the same (test/close-kernel.test.ts checks both forms value for value).
// Why: the close runs once a round over every parameter, so V8 has rarely finished optimising the JavaScript loops
// when they run: on the idle 16-core host 26-27 ms for 1M values in `npm run bench`'s fedavg section (10-16 ms in a
// micro-benchmark's first calls, 5.4 ms once optimised, 112-118 ms unoptimised), against a fold of the whole round's
// 10 updates in 3 ms. A module is compiled before it runs. Four values a step in two f64x2 halves: the division is
// the loop's bound, and the vector form divides two lanes at once (0.84-0.90 against 1.91 ns a value on the 2-core
// box, 1M values in one module); each lane's division, addition and float32 rounding are IEEE's as in the scalar
// form, so the bits stay those of the JavaScript step. Values go through a fixed stage of CLOSE_BLOCK values
// (1.5 MiB), so memory stays bounded whatever the adapter's size; the copies in and out are TypedArray.set.
// Assembled with wabt's wat2wasm (the devDependency `wabt`; the test re-assembles this text and compares):
//
// (module
//   (memory (export "mem") 24)
//   ;; g[i] = f32(f64(g[i]) + s[i] / d) for i in [0, n): s float64 at $s, g float32 at $g, overwritten in place;
//   ;; four values per step (two f64x2 halves: the same division, addition and rounding per lane), then the 0-3 left.
//   (func (export "close") (param $s i32) (param $g i32) (param $n i32) (param $d f64)
//     (local $end i32) (local $end4 i32) (local $dd v128)
//     (local.set $end (i32.add (local.get $g) (i32.shl (local.get $n) (i32.const 2))))
//     (local.set $end4 (i32.add (local.get $g) (i32.shl (i32.and (local.get $n) (i32.const -4)) (i32.const 2))))
//     (local.set $dd (f64x2.splat (local.get $d)))
//     (block $fours
//       (loop $four
//         (br_if $fours (i32.ge_u (local.get $g) (local.get $end4)))
//         (v128.store64_lane 0 (local.get $g)
//           (f32x4.demote_f64x2_zero
//             (f64x2.add
//               (f64x2.promote_low_f32x4 (v128.load64_zero (local.get $g)))
//               (f64x2.div (v128.load (local.get $s)) (local.get $dd)))))
//         (v128.store64_lane offset=8 0 (local.get $g)
//           (f32x4.demote_f64x2_zero
//             (f64x2.add
//               (f64x2.promote_low_f32x4 (v128.load64_zero offset=8 (local.get $g)))
//               (f64x2.div (v128.load offset=16 (local.get $s)) (local.get $dd)))))
//         (local.set $g (i32.add (local.get $g) (i32.const 16)))
//         (local.set $s (i32.add (local.get $s) (i32.const 32)))
//         (br $four)))
//     (block $done
//       (loop $each
//         (br_if $done (i32.ge_u (local.get $g) (local.get $end)))
//         (f32.store (local.get $g)
//           (f32.demote_f64
//             (f64.add
//               (f64.promote_f32 (f32.load (local.get $g)))
//               (f64.div (f64.load (local.get $s)) (local.get $d)))))
//         (local.set $g (i32.add (local.get $g) (i32.const 4)))
//         (local.set $s (i32.add (local.get $s) (i32.const 8)))
//         (br $each)))))
//
// Memory: the sum's stage at 0 (CLOSE_BLOCK float64), the global's at 8·CLOSE_BLOCK (CLOSE_BLOCK float32, written
// back in place as the next values).
import { wasmApi } from './fold-kernel';

export const CLOSE_WASM = Buffer.from(
  'AGFzbQEAAAABCAFgBH9/f3wAAwIBAAUDAQAYBw8CA21lbQIABWNsb3NlAAAKswEBsAECAn8BeyABIAJBAnRqIQQgASACQXxxQQJ0aiEFIAP9FCEGAkADQCABIAVPDQEgASAB/V0DAP1fIAD9AAQAIAb98wH98AH9Xv1bAwAAIAEgAf1dAwj9XyAA/QAEECAG/fMB/fAB/V79WwMIACABQRBqIQEgAEEgaiEADAALCwJAA0AgASAETw0BIAEgASoCALsgACsDACADo6C2OAIAIAFBBGohASAAQQhqIQAMAAsLCw==',
  'base64',
);
/**
 * The same text with its memory imported and shared (`(memory (export "mem") 24)` replaced by `(import "env" "mem"
 * (memory 1 65536 shared))`, wabt with threads on; test/fold-close.test.ts re-assembles it): the close of a threaded
 * sum, run where the sum lives, a part of the values on each thread (fold-close.ts). Same function, same bits.
 */
export const CLOSE_SHARED_WASM = Buffer.from(
  'AGFzbQEAAAABCAFgBH9/f3wAAg8BA2VudgNtZW0CAwGAgAQDAgEABwkBBWNsb3NlAAAKswEBsAECAn8BeyABIAJBAnRqIQQgASACQXxxQQJ0aiEFIAP9FCEGAkADQCABIAVPDQEgASAB/V0DAP1fIAD9AAQAIAb98wH98AH9Xv1bAwAAIAEgAf1dAwj9XyAA/QAEECAG/fMB/fAB/V79WwMIACABQRBqIQEgAEEgaiEADAALCwJAA0AgASAETw0BIAEgASoCALsgACsDACADo6C2OAIAIAFBBGohASAAQQhqIQAMAAsLCw==',
  'base64',
);
/** Values per call: 12 bytes each, 24 pages in all. */
export const CLOSE_BLOCK = 1 << 17;

export type CloseFn = (s: number, g: number, n: number, d: number) => void;
interface CloseModule {
  readonly sum: Float64Array;
  readonly next: Float32Array;
  readonly close: CloseFn;
}

let instance: CloseModule | null | undefined;

function closeModule(): CloseModule | null {
  if (instance !== undefined) return instance;
  if (!wasmApi) return (instance = null);
  // Not `exports`: CommonJS output names the module's own exports so.
  const wasm = new wasmApi.Instance(new wasmApi.Module(CLOSE_WASM)).exports as unknown as {
    mem: { buffer: ArrayBuffer };
    close: CloseFn;
  };
  const buf = wasm.mem.buffer;
  instance = {
    sum: new Float64Array(buf, 0, CLOSE_BLOCK),
    next: new Float32Array(buf, 8 * CLOSE_BLOCK, CLOSE_BLOCK),
    close: wasm.close,
  };
  return instance;
}

/**
 * out[i] = f32(g[i] + s[i] / d) for every i, in the module where WebAssembly is present (false where it is not: the
 * caller then takes the JavaScript path). Lengths must match (the caller checks).
 */
export function closeFedAvg(s: Float64Array, g: Float32Array, d: number, out: Float32Array): boolean {
  const m = closeModule();
  if (!m) return false;
  for (let a = 0; a < g.length; a += CLOSE_BLOCK) {
    const n = Math.min(CLOSE_BLOCK, g.length - a);
    m.sum.set(s.subarray(a, a + n));
    m.next.set(g.subarray(a, a + n));
    m.close(0, 8 * CLOSE_BLOCK, n, d);
    out.set(n === CLOSE_BLOCK ? m.next : m.next.subarray(0, n), a);
  }
  return true;
}
