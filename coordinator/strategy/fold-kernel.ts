// The running sum's inner loop in WebAssembly SIMD: acc[i] += w · round-half-away-from-zero(x[i] · 2^24) for
// float32 x, exactly as accumulateUnchecked (fixed-point.ts) does it in JavaScript, four values per step, each group
// of four checked (|x| < 128, which also refuses NaN and ±Inf) BEFORE it is added; the loop stops at the first group
// holding a bad value and returns its index, so every value before it is in the sum and none after. Same IEEE
// float64 operations as the JavaScript form (promote, ×2^24, ±0.5, trunc, ×w, +), so the same bits. The ±0.5 takes
// s's sign bit (copysign): for s = −0 that is −0.5 where the JavaScript form adds +0.5, so the term is ∓0 instead
// of ±0, which changes no sum (a sum that starts at +0 and adds any ±0 stays +0, as x + (−x) is +0);
// test/stream-fold.test.ts checks it against the BigInt reference and re-assembles the module from this text.
// In plain JavaScript the same loop runs 4–5× slower (measured 2026-11-29 on the 2-core dev box: ~15 ns against
// ~3 ns per value with an 8 MB sum), because V8 does not vectorise typed-array loops.
// Assembled with wabt's wat2wasm (the devDependency `wabt`; SIMD is on by default):
//
// (module
//   (memory (export "mem") 1)
//   (func (export "fold") (param $acc i32) (param $x i32) (param $n i32) (param $w f64) (result i32)
//     (local $i i32) (local $v v128) (local $s v128) (local $p i32) (local $wv v128)
//     (local.set $wv (f64x2.splat (local.get $w)))
//     (block $done
//       (loop $quads
//         (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
//         (local.set $v (v128.load (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2)))))
//         (br_if $done (i32.eqz (i32x4.all_true (f32x4.lt (f32x4.abs (local.get $v)) (v128.const f32x4 128 128 128 128)))))
//         (local.set $p (i32.add (local.get $acc) (i32.shl (local.get $i) (i32.const 3))))
//         (local.set $s (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (v128.const f64x2 16777216 16777216)))
//         (local.set $s (f64x2.trunc (f64x2.add (local.get $s)
//           (v128.or (v128.and (local.get $s) (v128.const i64x2 0x8000000000000000 0x8000000000000000)) (v128.const f64x2 0.5 0.5)))))
//         (v128.store (local.get $p) (f64x2.add (v128.load (local.get $p)) (f64x2.mul (local.get $s) (local.get $wv))))
//         (local.set $s (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))) (v128.const f64x2 16777216 16777216)))
//         (local.set $s (f64x2.trunc (f64x2.add (local.get $s)
//           (v128.or (v128.and (local.get $s) (v128.const i64x2 0x8000000000000000 0x8000000000000000)) (v128.const f64x2 0.5 0.5)))))
//         (local.set $p (i32.add (local.get $p) (i32.const 16)))
//         (v128.store (local.get $p) (f64x2.add (v128.load (local.get $p)) (f64x2.mul (local.get $s) (local.get $wv))))
//         (local.set $i (i32.add (local.get $i) (i32.const 4)))
//         (br $quads)))
//     (local.get $i)))
//
// Memory: [stage: STAGE_BYTES][sum: 8 bytes per parameter]; the stage takes each run of opened bytes before the
// fold (one copy, in cache). Adapters too large for a 32-bit memory fall back to the JavaScript loop.
import { LIMIT, SCALE } from './fixed-point';

const WASM = Buffer.from(
  'AGFzbQEAAAABCQFgBH9/f3wBfwMCAQAFAwEAAQcOAgNtZW0CAARmb2xkAAAKxQIBwgIEAX8CewF/AXsgA/0UIQgCQANAIAQgAk8NASABIARBAnRq/QAEACEFIAX94AH9DAAAAEMAAABDAAAAQwAAAEP9Q/2jAUUNASAAIARBA3RqIQcgBf1f/QwAAAAAAABwQQAAAAAAAHBB/fIBIQYgBiAG/QwAAAAAAAAAgAAAAAAAAACA/U79DAAAAAAAAOA/AAAAAAAA4D/9UP3wAf16IQYgByAH/QAEACAGIAj98gH98AH9CwQAIAUgBf0NCAkKCwwNDg8AAQIDBAUGB/1f/QwAAAAAAABwQQAAAAAAAHBB/fIBIQYgBiAG/QwAAAAAAAAAgAAAAAAAAACA/U79DAAAAAAAAOA/AAAAAAAA4D/9UP3wAf16IQYgB0EQaiEHIAcgB/0ABAAgBiAI/fIB/fAB/QsEACAEQQRqIQQMAAsLIAQL',
  'base64',
);

/** Bytes staged per fold call (the upload path feeds chunks of up to MAX_CHUNK_BYTES through it in pieces). */
export const STAGE_BYTES = 1 << 20;

// The few WebAssembly names used here (the project's TypeScript libs carry no WebAssembly declarations).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmExports {
  mem: WasmMemory;
  fold(acc: number, x: number, n: number, w: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { readonly exports: WasmExports };
}
const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
let compiled: object | undefined;

/** Largest sum the WebAssembly memory holds (4 GiB less the stage); larger adapters use the JavaScript loop. */
const MAX_WASM_PARAMS = Math.floor((2 ** 32 - STAGE_BYTES - 65536) / 8);

/**
 * One running sum and its stage. fold(start, n, w) adds the n values staged at stage[0, 4n) into acc[start, start + n)
 * with weight w (negative: takes them back, exactly) and returns how many it added: n, or the index of the first
 * value outside ±LIMIT (or not finite), none from there on added.
 */
export interface FoldKernel {
  readonly acc: Float64Array;
  readonly stage: Uint8Array;
  readonly staged: Float32Array;
  fold(start: number, n: number, w: number): number;
  readonly simd: boolean;
}

export function foldKernel(params: number, preferSimd = true): FoldKernel {
  if (preferSimd && wasmApi && params <= MAX_WASM_PARAMS) {
    compiled ??= new wasmApi.Module(WASM);
    // Not `exports`: CommonJS output names the module's own exports so (STAGE_BYTES would read the instance's).
    const wasm = new wasmApi.Instance(compiled).exports;
    const need = STAGE_BYTES + 8 * params;
    const pages = Math.ceil(need / 65536);
    if (pages > 1) wasm.mem.grow(pages - 1);
    const buf = wasm.mem.buffer;
    const acc = new Float64Array(buf, STAGE_BYTES, params);
    // Touch the sum's pages now, when the attempt opens (while its sites train), not in the first upload's fold:
    // grown memory is mapped lazily, and faulting in 8 bytes per parameter mid-upload slowed that upload by ~4×.
    acc.fill(0);
    const stage = new Uint8Array(buf, 0, STAGE_BYTES);
    const staged = new Float32Array(buf, 0, STAGE_BYTES / 4);
    return {
      acc,
      stage,
      staged,
      simd: true,
      fold(start, n, w) {
        const n4 = n & ~3;
        const r = wasm.fold(STAGE_BYTES + 8 * start, 0, n4, w);
        // The group of four holding the bad value: the values before it in the group were not added either.
        return r < n4 ? addChecked(acc, staged, start, r, r + 4, w) : addChecked(acc, staged, start, n4, n, w);
      },
    };
  }
  const acc = new Float64Array(params).fill(0); // touched now, as above
  const staged = new Float32Array(STAGE_BYTES / 4);
  const stage = new Uint8Array(staged.buffer);
  return { acc, stage, staged, simd: false, fold: (start, n, w) => addChecked(acc, staged, start, 0, n, w) };
}

/**
 * acc[start + i] += w · q(x[i]) for i in [from, to), in JavaScript, stopping before the first value outside ±LIMIT
 * (or not finite); returns the index it stopped at (`to` when every value was added).
 */
function addChecked(acc: Float64Array, x: Float32Array, start: number, from: number, to: number, w: number): number {
  let i = from;
  for (; i < to; i++) {
    const v = x[i];
    if (!(v < LIMIT && v > -LIMIT)) break;
    const s = v * SCALE;
    acc[start + i] += w * Math.trunc(s + (0.5 - +(s < 0)));
  }
  return i;
}
