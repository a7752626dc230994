// The two inner loops of a SecAgg site that plain JavaScript runs slowly, in WebAssembly SIMD (V8 has no SIMD for
// typed arrays): adding many int32 keystreams into the masked vector (i32x4), and the stochastic rounding of the
// encoding (f64x2). In JavaScript the additions cost more than generating the keystreams (about 1.3 ns per word
// per stream against 0.3 here, measured 2026-11-29 on the 2-core dev box). The 364-byte module is assembled from
// this text with wabt's wat2wasm (--enable-simd is the default):
//
// (module
//   (memory (export "mem") 1)
//   (func (export "mask") (param $t i32) (param $n i32) (param $s i32) (param $kp i32) (param $km i32) (param $stride i32)
//     (local $i i32) (local $p i32) (local $j i32) (local $acc v128)
//     (block $done
//       (loop $rows
//         (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
//         (local.set $acc (v128.load (i32.add (local.get $t) (local.get $i))))
//         (local.set $p (i32.add (local.get $s) (local.get $i)))
//         (local.set $j (local.get $kp))
//         (block $pe (loop $pl
//           (br_if $pe (i32.eqz (local.get $j)))
//           (local.set $acc (i32x4.add (local.get $acc) (v128.load (local.get $p))))
//           (local.set $p (i32.add (local.get $p) (local.get $stride)))
//           (local.set $j (i32.sub (local.get $j) (i32.const 1)))
//           (br $pl)))
//         (local.set $j (local.get $km))
//         (block $me (loop $ml
//           (br_if $me (i32.eqz (local.get $j)))
//           (local.set $acc (i32x4.sub (local.get $acc) (v128.load (local.get $p))))
//           (local.set $p (i32.add (local.get $p) (local.get $stride)))
//           (local.set $j (i32.sub (local.get $j) (i32.const 1)))
//           (br $ml)))
//         (v128.store (i32.add (local.get $t) (local.get $i)) (local.get $acc))
//         (local.set $i (i32.add (local.get $i) (i32.const 16)))
//         (br $rows))))
//   (func (export "quantise") (param $o i32) (param $x i32) (param $u i32) (param $n i32) (param $f f64) (param $max f64)
//     (local $i i32) (local $v v128) (local $fl v128) (local $q v128)
//     (block $done
//       (loop $pairs
//         (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
//         (local.set $v (f64x2.mul (f64x2.promote_low_f32x4 (v128.load64_zero (i32.add (local.get $x) (local.get $i)))) (f64x2.splat (local.get $f))))
//         (local.set $fl (f64x2.floor (local.get $v)))
//         (local.set $q (f64x2.add (local.get $fl)
//           (v128.and
//             (f64x2.lt
//               (f64x2.convert_low_i32x4_u (v128.load64_zero (i32.add (local.get $u) (local.get $i))))
//               (f64x2.mul (f64x2.sub (local.get $v) (local.get $fl)) (f64x2.splat (f64.const 4294967296))))
//             (f64x2.splat (f64.const 1)))))
//         (local.set $q (f64x2.min (f64x2.splat (local.get $max)) (f64x2.max (f64x2.neg (f64x2.splat (local.get $max))) (local.get $q))))
//         (v128.store64_lane 0 (i32.add (local.get $o) (local.get $i)) (i32x4.trunc_sat_f64x2_s_zero (local.get $q)))
//         (local.set $i (i32.add (local.get $i) (i32.const 8)))
//         (br $pairs)))))
//
// mask: t[0, n) ← t + Σ_{j<kp} s_j − Σ_{j<km} s_{kp+j} (i32 lanes, wrapping), stream j at s + j·stride; n in bytes, a
// multiple of 16. quantise: o[i] ← clamp(floor(v) + (u[i] < frac(v)·2^32 ? 1 : 0), ±max) with v = f·x[i] in float64,
// the same operations and so the same bits as encoding.ts's JavaScript form; n in bytes, a multiple of 8.
// test/secagg-prg.test.ts checks both word for word against plain JavaScript loops.
const WASM = Buffer.from(
  'AGFzbQEAAAABEwJgBn9/f39/fwBgBn9/f398fAADAwIAAQUDAQABBxkDA21lbQIABG1hc2sAAAhxdWFudGlzZQABCqcCApEBAgN/AXsCQANAIAYgAU8NASAAIAZq/QAEACEJIAIgBmohByADIQgCQANAIAhFDQEgCSAH/QAEAP2uASEJIAcgBWohByAIQQFrIQgMAAsLIAQhCAJAA0AgCEUNASAJIAf9AAQA/bEBIQkgByAFaiEHIAhBAWshCAwACwsgACAGaiAJ/QsEACAGQRBqIQYMAAsLC5EBAgF/A3sCQANAIAYgA08NASABIAZq/V0DAP1fIAT9FP3yASEHIAf9dSEIIAggAiAGav1dAwD9/wEgByAI/fEBRAAAAAAAAPBB/RT98gH9SUQAAAAAAADwP/0U/U798AEhCSAF/RQgBf0U/e0BIAn99QH99AEhCSAAIAZqIAn9/AH9WwMAACAGQQhqIQYMAAsLCw==',
  'base64',
);

export interface Simd {
  /** The module's memory (offsets are the caller's). Never grown after creation, so views stay valid. */
  readonly memory: Uint8Array;
  /** memory[t, t + n) ← t + Σ kp streams − Σ km streams, the streams at s, s + stride, …; n a multiple of 16 bytes. */
  mask(t: number, n: number, s: number, kp: number, km: number, stride: number): void;
  /** int32 at o ← the stochastic rounding of f·(float32 at x) by the uint32 words at u; n a multiple of 8 bytes. */
  quantise(o: number, x: number, u: number, n: number, f: number, max: number): void;
}

// The few WebAssembly names used here (the project's TypeScript libs carry no WebAssembly declarations).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { readonly exports: { mem: WasmMemory; mask: Simd['mask']; quantise: Simd['quantise'] } };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let cached: { bytes: number; simd: Simd } | undefined;

/** The one instance of this thread, with at least `bytes` of memory (module-level: JavaScript runs one call at a time). */
export function simd(bytes: number): Simd {
  if (cached && cached.bytes >= bytes) return cached.simd;
  const { exports } = new wasmApi.Instance(new wasmApi.Module(WASM));
  const pages = Math.ceil(bytes / 65536);
  if (pages > 1) exports.mem.grow(pages - 1);
  const instance: Simd = { memory: new Uint8Array(exports.mem.buffer), mask: exports.mask, quantise: exports.quantise };
  cached = { bytes, simd: instance };
  return instance;
}
