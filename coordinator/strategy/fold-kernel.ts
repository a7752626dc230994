// The running sum's inner loop in WebAssembly SIMD: acc[i] += w · round-half-away-from-zero(x[i] · 2^24) for
// float32 x, exactly as accumulateUnchecked (fixed-point.ts) does it in JavaScript, eight values per step, each
// eight checked (|x| < 128, which also refuses NaN and ±Inf) BEFORE any of them is added; the loop stops at the
// first eight holding a bad value and returns its start, so every value before it is in the sum and none after (the
// JavaScript loop then adds that eight's values up to the bad one). Same IEEE float64 operations as the JavaScript
// form (promote, ×2^24, ±0.5, trunc, ×w, +), so the same bits. The ±0.5 takes s's sign bit (copysign): for s = −0
// that is −0.5 where the JavaScript form adds +0.5, so the term is ∓0 instead of ±0, which changes no sum (a sum
// that starts at +0 and adds any ±0 stays +0, as x + (−x) is +0); test/stream-fold.test.ts checks it against the
// BigInt reference and re-assembles the module from this text.
// Why this shape (measured 2026-11-29 on the 2-core dev box, kernel alone over an 8 MB sum, CPU time): written with
// v128.const operands, V8 (Node 20) rebuilds every constant inside the loop on each pass (3-4 instructions each);
// loaded from memory once before the loop they stay in registers: 8.5 → 5.2 ms per 10 × 1M values, about half
// the instructions per value. Eight values per step instead of four saves the loop's bookkeeping (a few %). Summing
// the same integers as i64 lanes (i64x2.extmul of the rounded int32 with w) measured no faster (5.2 ms: V8 expands
// i32x4.trunc_sat_f32x4_s to five instructions and extmul to three), so the sum stays float64, exact below 2^53.
// In plain JavaScript the same loop runs several times slower, because V8 does not vectorise typed-array loops.
// Assembled with wabt's wat2wasm (the devDependency `wabt`; SIMD is on by default):
//
// (module
//   (memory (export "mem") 1)
//   ;; Constants, read once per call (as v128.const, V8 rebuilds them inside the loop on every pass):
//   ;; 0: f32x4 128 (the bound), 16: the f32 magnitude mask, 32: f64x2 2^24, 48: the f64 sign bit, 64: f64x2 0.5.
//   (data (i32.const 0)
//     "\00\00\00\43\00\00\00\43\00\00\00\43\00\00\00\43" "\ff\ff\ff\7f\ff\ff\ff\7f\ff\ff\ff\7f\ff\ff\ff\7f"
//     "\00\00\00\00\00\00\70\41\00\00\00\00\00\00\70\41" "\00\00\00\00\00\00\00\80\00\00\00\00\00\00\00\80"
//     "\00\00\00\00\00\00\e0\3f\00\00\00\00\00\00\e0\3f")
//   ;; acc[i] += w * q(x[i]) for i in [0, n) by eights (n a multiple of 8); returns where it stopped: n, or the
//   ;; start of the first eight holding a value outside +-128 (or NaN), none of which was added.
//   (func (export "fold") (param $acc i32) (param $x i32) (param $n i32) (param $w f64) (result i32)
//     (local $a v128) (local $b v128) (local $s v128) (local $px i32) (local $end i32)
//     (local $wv v128) (local $lim v128) (local $abs v128) (local $sc v128) (local $sign v128) (local $half v128)
//     (v128.store (i32.const 80) (f64x2.splat (local.get $w)))
//     (local.set $wv (v128.load (i32.const 80)))
//     (local.set $lim (v128.load (i32.const 0)))
//     (local.set $abs (v128.load (i32.const 16)))
//     (local.set $sc (v128.load (i32.const 32)))
//     (local.set $sign (v128.load (i32.const 48)))
//     (local.set $half (v128.load (i32.const 64)))
//     (local.set $px (local.get $x))
//     (local.set $end (i32.add (local.get $x) (i32.shl (local.get $n) (i32.const 2))))
//     (block $done
//       (loop $eights
//         (br_if $done (i32.ge_u (local.get $px) (local.get $end)))
//         (local.set $a (v128.load (local.get $px)))
//         (local.set $b (v128.load offset=16 (local.get $px)))
//         (br_if $done (i32.eqz (i32x4.all_true (v128.and
//           (f32x4.lt (v128.and (local.get $a) (local.get $abs)) (local.get $lim))
//           (f32x4.lt (v128.and (local.get $b) (local.get $abs)) (local.get $lim))))))
//         ;; Each pair: s = x * 2^24 (exact), trunc(s + copysign(0.5, s)), times w, into the sum.
//         (local.set $s (f64x2.mul (f64x2.promote_low_f32x4 (local.get $a)) (local.get $sc)))
//         (local.set $s (f64x2.trunc (f64x2.add (local.get $s) (v128.or (v128.and (local.get $s) (local.get $sign)) (local.get $half)))))
//         (v128.store (local.get $acc) (f64x2.add (v128.load (local.get $acc)) (f64x2.mul (local.get $s) (local.get $wv))))
//         (local.set $s (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $a) (local.get $a))) (local.get $sc)))
//         (local.set $s (f64x2.trunc (f64x2.add (local.get $s) (v128.or (v128.and (local.get $s) (local.get $sign)) (local.get $half)))))
//         (v128.store offset=16 (local.get $acc) (f64x2.add (v128.load offset=16 (local.get $acc)) (f64x2.mul (local.get $s) (local.get $wv))))
//         (local.set $s (f64x2.mul (f64x2.promote_low_f32x4 (local.get $b)) (local.get $sc)))
//         (local.set $s (f64x2.trunc (f64x2.add (local.get $s) (v128.or (v128.and (local.get $s) (local.get $sign)) (local.get $half)))))
//         (v128.store offset=32 (local.get $acc) (f64x2.add (v128.load offset=32 (local.get $acc)) (f64x2.mul (local.get $s) (local.get $wv))))
//         (local.set $s (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $b) (local.get $b))) (local.get $sc)))
//         (local.set $s (f64x2.trunc (f64x2.add (local.get $s) (v128.or (v128.and (local.get $s) (local.get $sign)) (local.get $half)))))
//         (v128.store offset=48 (local.get $acc) (f64x2.add (v128.load offset=48 (local.get $acc)) (f64x2.mul (local.get $s) (local.get $wv))))
//         (local.set $px (i32.add (local.get $px) (i32.const 32)))
//         (local.set $acc (i32.add (local.get $acc) (i32.const 64)))
//         (br $eights)))
//     (i32.shr_u (i32.sub (local.get $px) (local.get $x)) (i32.const 2))))
//
// Memory: [constants: CONST_BYTES][stage: STAGE_BYTES][sum: 8 bytes per parameter]; the stage takes each run of opened
// bytes before the fold (one copy, in cache). Adapters too large for a 32-bit memory fall back to the JavaScript loop.
import { LIMIT, SCALE } from './fixed-point';

const WASM = Buffer.from(
  'AGFzbQEAAAABCQFgBH9/f3wBfwMCAQAFAwEAAQcOAgNtZW0CAARmb2xkAAAKoAMBnQMDA3sCfwZ7QdAAIAP9FP0LBABB0AD9AAQAIQlBAP0ABA' +
    'AhCkEQ/QAEACELQSD9AAQAIQxBMP0ABAAhDUHAAP0ABAAhDiABIQcgASACQQJ0aiEIAkADQCAHIAhPDQEgB/0ABAAhBCAH/QAEECEFIAQgC/1O' +
    'IAr9QyAFIAv9TiAK/UP9Tv2jAUUNASAE/V8gDP3yASEGIAYgBiAN/U4gDv1Q/fAB/XohBiAAIAD9AAQAIAYgCf3yAf3wAf0LBAAgBCAE/Q0ICQ' +
    'oLDA0ODwABAgMEBQYH/V8gDP3yASEGIAYgBiAN/U4gDv1Q/fAB/XohBiAAIAD9AAQQIAYgCf3yAf3wAf0LBBAgBf1fIAz98gEhBiAGIAYgDf1O' +
    'IA79UP3wAf16IQYgACAA/QAEICAGIAn98gH98AH9CwQgIAUgBf0NCAkKCwwNDg8AAQIDBAUGB/1fIAz98gEhBiAGIAYgDf1OIA79UP3wAf16IQ' +
    'YgACAA/QAEMCAGIAn98gH98AH9CwQwIAdBIGohByAAQcAAaiEADAALCyAHIAFrQQJ2CwtWAQBBAAtQAAAAQwAAAEMAAABDAAAAQ////3////9/' +
    '////f////38AAAAAAABwQQAAAAAAAHBBAAAAAAAAAIAAAAAAAAAAgAAAAAAAAOA/AAAAAAAA4D8=',
  'base64',
);

/** Bytes staged per fold call (the upload path feeds chunks of up to MAX_CHUNK_BYTES through it in pieces). */
export const STAGE_BYTES = 1 << 20;
/** The module's constants (its data segment) and the weight it splats, below the stage. */
const CONST_BYTES = 128;

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
const MAX_WASM_PARAMS = Math.floor((2 ** 32 - CONST_BYTES - STAGE_BYTES - 65536) / 8);

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
    const sumAt = CONST_BYTES + STAGE_BYTES;
    const pages = Math.ceil((sumAt + 8 * params) / 65536);
    if (pages > 1) wasm.mem.grow(pages - 1);
    const buf = wasm.mem.buffer;
    const acc = new Float64Array(buf, sumAt, params);
    // Touch the sum's pages now, when the attempt opens (while its sites train), not in the first upload's fold:
    // grown memory is mapped lazily, and faulting in 8 bytes per parameter mid-upload slowed that upload by ~4×.
    acc.fill(0);
    const stage = new Uint8Array(buf, CONST_BYTES, STAGE_BYTES);
    const staged = new Float32Array(buf, CONST_BYTES, STAGE_BYTES / 4);
    return {
      acc,
      stage,
      staged,
      simd: true,
      fold(start, n, w) {
        const n8 = n & ~7;
        const r = wasm.fold(sumAt + 8 * start, CONST_BYTES, n8, w);
        // The eight holding the bad value: the values before it in the eight were not added either.
        return r < n8 ? addChecked(acc, staged, start, r, r + 8, w) : addChecked(acc, staged, start, n8, n, w);
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
