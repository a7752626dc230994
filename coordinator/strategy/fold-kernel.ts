// The running sum's inner loop in WebAssembly SIMD: acc[i] += w · round-half-away-from-zero(x[i] · 2^24) for
// float32 x, exactly as accumulateUnchecked (fixed-point.ts) does it in JavaScript, eight values per step, each
// eight checked (|x| < 128, which also refuses NaN and ±Inf) BEFORE any of them is added; the loop stops at the
// first eight holding a bad value and returns its start, so every value before it is in the sum and none after (the
// JavaScript loop then adds that eight's values up to the bad one).
//
// The rounding runs on four float32 lanes at once: q = trunc(x·2^25) − trunc(x·2^24). Why that is
// round-half-away-from-zero(s) for s = x·2^24, and exact in float32, for every float32 |x| < 128:
//  - x·2^24 and x·2^25 are exact: scaling by a power of two keeps the significand (|x·2^25| < 2^32 is far from
//    float32's overflow; a subnormal x only gains exponent).
//  - trunc is exact (an integer of at most 24 significant bits is a float32). Write s = t + d with t = trunc(s) and
//    d the fraction, |d| < 1, of s's sign. Then 2s = 2t + 2d, 2t an integer and 2d of the same sign, so trunc(2s) =
//    2t + trunc(2d), and trunc(2s) − t = t + trunc(2d), where trunc(2d) is ±1 (s's sign) when |d| ≥ 1/2 and 0
//    otherwise: exactly round-half-away-from-zero(s).
//  - The subtraction is exact: for |s| ≥ 2^23 s is already an integer (its ulp is ≥ 1), so trunc(2s) = 2s and
//    2s − s = s (Sterbenz); below, both operands are integers under 2^24 and so is their difference, which float32
//    holds exactly. The sign of a zero result may differ from the JavaScript form's (−0 there for s in (−½, 0)), which
//    changes no sum: the sum starts at +0, and +0 + −0 = +0, x + (−x) = +0.
// The obvious float32 form, trunc(s + copysign(½, s)), is NOT exact: for s = ½ − 2^−25 the sum rounds up to 1 (a
// tie, to even), and for odd s in [2^23, 2^24) s + ½ ties to s + 1 (test/fold-rounding.test.ts shows both).
// q (|q| < 2^31, an integer) is then promoted to float64 exactly and, as in the JavaScript form, multiplied by w
// (exact: |w·q| < 2^53 by MAX_TOTAL_WEIGHT) and added: the same float64 operations on the same values, so the same
// bits; test/stream-fold.test.ts checks it against the BigInt reference and re-assembles the module from this text,
// test/fold-rounding.test.ts against the JavaScript form over every exponent of float32 below 128.
// Why this shape (measured 2026-11-29 on the 2-core dev box, kernel alone over an 8 MB sum, CPU time): the rounding
// in float64 (promote, ×2^24, copysign ±0.5, add, trunc on two lanes) took 5.1-5.2 ms per 10 × 1M values; on four
// float32 lanes 3.9-4.0 ms. Unrolling to 16 or 32 values per step measured no faster (4.0-4.1 ms). Constants are
// loaded from memory once before the loop: written as v128.const operands, V8 (Node 20) rebuilds every constant
// inside the loop on each pass (3-4 instructions each). Summing the same integers as i64 lanes (i64x2.extmul of the
// rounded int32 with w) measured no faster (V8 expands i32x4.trunc_sat_f32x4_s to five instructions and extmul to
// three), so the sum stays float64, exact below 2^53. In plain JavaScript the same loop runs several times slower,
// because V8 does not vectorise typed-array loops.
// Assembled with wabt's wat2wasm (the devDependency `wabt`; SIMD is on by default):
//
// (module
//   (memory (export "mem") 1)
//   ;; Constants, read once per call: 0: f32x4 128 (the bound), 16: the f32 magnitude mask, 32: f32x4 2^24,
//   ;; 48: f32x4 2^25. The weight is splatted at $ws (64 here; each thread of a shared sum that folds updates of
//   ;; other weights at the same time passes 16 bytes of its own).
//   (data (i32.const 0)
//     "\00\00\00\43\00\00\00\43\00\00\00\43\00\00\00\43" "\ff\ff\ff\7f\ff\ff\ff\7f\ff\ff\ff\7f\ff\ff\ff\7f"
//     "\00\00\80\4b\00\00\80\4b\00\00\80\4b\00\00\80\4b" "\00\00\00\4c\00\00\00\4c\00\00\00\4c\00\00\00\4c")
//   ;; acc[i] += w * q(x[i]) for i in [0, n) by eights (n a multiple of 8); returns where it stopped: n, or the
//   ;; start of the first eight holding a value outside +-128 (or NaN), none of which was added.
//   (func (export "fold") (param $acc i32) (param $x i32) (param $n i32) (param $w f64) (param $ws i32) (result i32)
//     (local $a v128) (local $b v128) (local $q v128) (local $px i32) (local $end i32)
//     (local $wv v128) (local $lim v128) (local $abs v128) (local $s24 v128) (local $s25 v128)
//     (v128.store (local.get $ws) (f64x2.splat (local.get $w)))
//     (local.set $wv (v128.load (local.get $ws)))
//     (local.set $lim (v128.load (i32.const 0)))
//     (local.set $abs (v128.load (i32.const 16)))
//     (local.set $s24 (v128.load (i32.const 32)))
//     (local.set $s25 (v128.load (i32.const 48)))
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
//         ;; Four at a time: q = trunc(x * 2^25) - trunc(x * 2^24), then each pair promoted, times w, into the sum.
//         (local.set $q (f32x4.sub (f32x4.trunc (f32x4.mul (local.get $a) (local.get $s25))) (f32x4.trunc (f32x4.mul (local.get $a) (local.get $s24)))))
//         (v128.store (local.get $acc) (f64x2.add (v128.load (local.get $acc)) (f64x2.mul (f64x2.promote_low_f32x4 (local.get $q)) (local.get $wv))))
//         (v128.store offset=16 (local.get $acc) (f64x2.add (v128.load offset=16 (local.get $acc)) (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q))) (local.get $wv))))
//         (local.set $q (f32x4.sub (f32x4.trunc (f32x4.mul (local.get $b) (local.get $s25))) (f32x4.trunc (f32x4.mul (local.get $b) (local.get $s24)))))
//         (v128.store offset=32 (local.get $acc) (f64x2.add (v128.load offset=32 (local.get $acc)) (f64x2.mul (f64x2.promote_low_f32x4 (local.get $q)) (local.get $wv))))
//         (v128.store offset=48 (local.get $acc) (f64x2.add (v128.load offset=48 (local.get $acc)) (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $q) (local.get $q))) (local.get $wv))))
//         (local.set $px (i32.add (local.get $px) (i32.const 32)))
//         (local.set $acc (i32.add (local.get $acc) (i32.const 64)))
//         (br $eights)))
//     (i32.shr_u (i32.sub (local.get $px) (local.get $x)) (i32.const 2))))
//
// Memory: [constants: CONST_BYTES][stage: STAGE_BYTES][sum: 8 bytes per parameter]; the stage takes each run of opened
// bytes before the fold (one copy, in cache). Adapters too large for a 32-bit memory fall back to the JavaScript loop.
import { LIMIT, SCALE } from './fixed-point';

const WASM = Buffer.from(
  'AGFzbQEAAAABCgFgBX9/f3x/AX8DAgEABQMBAAEHDgIDbWVtAgAEZm9sZAAACtMCAdACAwN7An8FeyAEIAP9FP0LBAAgBP0ABAAhCkEA/QAEACEL' +
    'QRD9AAQAIQxBIP0ABAAhDUEw/QAEACEOIAEhCCABIAJBAnRqIQkCQANAIAggCU8NASAI/QAEACEFIAj9AAQQIQYgBSAM/U4gC/1DIAYgDP1OIAv9Q/' +
    '1O/aMBRQ0BIAUgDv3mAf1pIAUgDf3mAf1p/eUBIQcgACAA/QAEACAH/V8gCv3yAf3wAf0LBAAgACAA/QAEECAHIAf9DQgJCgsMDQ4PAAECAwQFBgf9' +
    'XyAK/fIB/fAB/QsEECAGIA795gH9aSAGIA395gH9af3lASEHIAAgAP0ABCAgB/1fIAr98gH98AH9CwQgIAAgAP0ABDAgByAH/Q0ICQoLDA0ODwABAg' +
    'MEBQYH/V8gCv3yAf3wAf0LBDAgCEEgaiEIIABBwABqIQAMAAsLIAggAWtBAnYLC0YBAEEAC0AAAABDAAAAQwAAAEMAAABD////f////3////9/////' +
    'fwAAgEsAAIBLAACASwAAgEsAAABMAAAATAAAAEwAAABM',
  'base64',
);

/** Bytes staged per fold call (the upload path feeds chunks of up to MAX_CHUNK_BYTES through it in pieces). */
export const STAGE_BYTES = 1 << 20;
/** The module's constants (its data segment) and the weight it splats, below the stage. */
export const CONST_BYTES = 128;

// The few WebAssembly names used here (the project's TypeScript libs carry no WebAssembly declarations).
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
/** The module's fold (acc, x and ws are byte addresses in its memory, n a multiple of 8; ws: 16 bytes of scratch). */
export type WasmFold = (acc: number, x: number, n: number, w: number, ws: number) => number;
/** The scratch of a thread that folds one weight at a time in a memory (a sum's calling thread and its parts). */
export const SCRATCH = 64;
interface WasmExports {
  mem: WasmMemory;
  fold: WasmFold;
}
export interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports?: object) => { readonly exports: WasmExports };
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
}
export const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
let compiled: object | undefined;

/** Largest sum the WebAssembly memory holds (4 GiB less the stage); larger adapters use the JavaScript loop. */
export const MAX_WASM_PARAMS = Math.floor((2 ** 32 - CONST_BYTES - STAGE_BYTES - 65536) / 8);
/** Where the sum starts in the module's memory (below it: the constants and the stage). */
export const SUM_AT = CONST_BYTES + STAGE_BYTES;

/**
 * One running sum and its stage. fold(start, n, w) adds the n values staged at stage[0, 4n) into acc[start, start + n)
 * with weight w (negative: takes them back, exactly) and returns how many it added: n, or the index of the first
 * value outside ±LIMIT (or not finite), none from there on added. `threads`: the helper threads that share the work
 * (fold-threads.ts; 0 here), and how many parts of runs the helpers and the calling thread folded there.
 */
export interface FoldKernel {
  readonly acc: Float64Array;
  readonly stage: Uint8Array;
  readonly staged: Float32Array;
  fold(start: number, n: number, w: number): number;
  readonly simd: boolean;
  readonly threads: number;
  readonly parts?: { readonly helpers: number; readonly caller: number };
  /**
   * Where given (fold-threads.ts): the bytes of whole values (any number, not staged yet) folded into acc[start, …),
   * staged by the kernel itself as it goes; returns how many values it added, as fold() does.
   */
  foldBytes?(start: number, bytes: Uint8Array, w: number): number;
  /** Where given (fold-threads.ts): whole values folded by helper threads while this thread goes on (fold-handoff.ts). */
  readonly handoff?: HandOff;
  /**
   * Where given (a threaded sum: fold-close.ts): FedAvg's next values f32(g + acc / d) of the global's tensors (in
   * the layout's order, together the sum's values), closed on the helper threads, `cut` parts where given; the
   * first close of the tensors the sum was made with (parallelFoldKernel's `place`) into shared buffers of their
   * own, any other into new unshared ones; undefined where the threads failed (the caller closes on its own thread:
   * the sum is only read).
   */
  close?(globals: readonly Float32Array[], d: number, cut?: number): Float32Array[] | undefined;
}

/** A run of values handed to a helper: `done` once folded; then `bad` is -1, or the first value (its index in the run) outside ±LIMIT, `value`, and none of the run is in the sum. */
export interface FoldTicket {
  done: boolean;
  bad: number;
  value: number;
}

/**
 * Folding off the calling thread (fold-handoff.ts): hand() moves the bytes' ArrayBuffer to a helper (zero-copy; the
 * bytes are unusable here afterwards) and returns at once. Every other fold of the sum (fold, foldBytes) and every
 * read of acc first waits until no handed run is in flight (wait()), so the sum is never read or written half-way.
 */
export interface HandOff {
  hand(start: number, bytes: Uint8Array, w: number): FoldTicket;
  /** Blocks until `t` is done (every handed run when omitted). */
  wait(t?: FoldTicket): void;
  /** Resolves once `t` is done, leaving this thread free meanwhile. */
  done(t: FoldTicket): Promise<void>;
  /** Runs handed and not done yet. */
  readonly inFlight: number;
}

export function foldKernel(params: number, preferSimd = true): FoldKernel {
  if (preferSimd && wasmApi && params <= MAX_WASM_PARAMS) {
    compiled ??= new wasmApi.Module(WASM);
    // Not `exports`: CommonJS output names the module's own exports so (STAGE_BYTES would read the instance's).
    const wasm = new wasmApi.Instance(compiled).exports;
    const pages = Math.ceil((SUM_AT + 8 * params) / 65536);
    if (pages > 1) wasm.mem.grow(pages - 1);
    const buf = wasm.mem.buffer;
    const acc = new Float64Array(buf, SUM_AT, params);
    // Touch the sum's pages now, when the attempt opens (while its sites train), not in the first upload's fold:
    // grown memory is mapped lazily, and faulting in 8 bytes per parameter mid-upload slowed that upload by ~4×.
    acc.fill(0);
    const stage = new Uint8Array(buf, CONST_BYTES, STAGE_BYTES);
    const staged = new Float32Array(buf, CONST_BYTES, STAGE_BYTES / 4);
    const fold = wasm.fold;
    return { acc, stage, staged, simd: true, threads: 0, fold: (start, n, w) => foldRange(fold, acc, staged, start, 0, n, w) };
  }
  const acc = new Float64Array(params).fill(0); // touched now, as above
  const staged = new Float32Array(STAGE_BYTES / 4);
  const stage = new Uint8Array(staged.buffer);
  return { acc, stage, staged, simd: false, threads: 0, fold: (start, n, w) => addChecked(acc, staged, start, 0, n, w) };
}

/**
 * The values staged at [from, from + n) into acc[start + from, …): the module takes them by eights, JavaScript the
 * last 0-7 values, or the values of the eight that held a bad one up to it (the module added none of that eight).
 * Returns the index (relative to the run) it stopped at: from + n when every value was added.
 */
export function foldRange(fold: WasmFold, acc: Float64Array, staged: Float32Array, start: number, from: number, n: number, w: number): number {
  const n8 = n & ~7;
  const r = from + fold(SUM_AT + 8 * (start + from), CONST_BYTES + 4 * from, n8, w, SCRATCH);
  return r < from + n8 ? addChecked(acc, staged, start, r, r + 8, w) : addChecked(acc, staged, start, r, from + n, w);
}

/**
 * acc[start + i] += w · q(x[i]) for i in [from, to), in JavaScript, stopping before the first value outside ±LIMIT
 * (or not finite); returns the index it stopped at (`to` when every value was added).
 */
export function addChecked(acc: Float64Array, x: Float32Array, start: number, from: number, to: number, w: number): number {
  let i = from;
  for (; i < to; i++) {
    const v = x[i];
    if (!(v < LIMIT && v > -LIMIT)) break;
    const s = v * SCALE;
    acc[start + i] += w * Math.trunc(s + (0.5 - +(s < 0)));
  }
  return i;
}
