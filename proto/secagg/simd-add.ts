// Adds and subtracts many int32 streams into one vector, four lanes at a time (WebAssembly SIMD, i32x4): the
// inner loop of mask expansion. In plain JavaScript the same additions cost more than generating the keystreams
// (about 1.3 ns per word per stream against 0.3 here, measured 2026-11-29 on the 2-core dev box); V8 has no
// SIMD for typed arrays, so the loop lives in a 196-byte module assembled from this text with wabt's wat2wasm:
//
// (module
//   (memory (export "mem") 1)
//   ;; t[0, n) ← t + Σ_{j<kp} s_j − Σ_{j<km} s_{kp+j} (i32 lanes, wrapping), stream j at s + j·stride; n in bytes, a multiple of 16.
//   (func (export "mask") (param $t i32) (param $n i32) (param $s i32) (param $kp i32) (param $km i32) (param $stride i32)
//     (local $i i32) (local $p i32) (local $j i32) (local $acc v128)
//     (block $done (loop $rows
//       (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
//       (local.set $acc (v128.load (i32.add (local.get $t) (local.get $i))))
//       (local.set $p (i32.add (local.get $s) (local.get $i)))
//       (local.set $j (local.get $kp))
//       (block $pe (loop $pl (br_if $pe (i32.eqz (local.get $j)))
//         (local.set $acc (i32x4.add (local.get $acc) (v128.load (local.get $p))))
//         (local.set $p (i32.add (local.get $p) (local.get $stride)))
//         (local.set $j (i32.sub (local.get $j) (i32.const 1))) (br $pl)))
//       (local.set $j (local.get $km))
//       (block $me (loop $ml (br_if $me (i32.eqz (local.get $j)))
//         (local.set $acc (i32x4.sub (local.get $acc) (v128.load (local.get $p))))
//         (local.set $p (i32.add (local.get $p) (local.get $stride)))
//         (local.set $j (i32.sub (local.get $j) (i32.const 1))) (br $ml)))
//       (v128.store (i32.add (local.get $t) (local.get $i)) (local.get $acc))
//       (local.set $i (i32.add (local.get $i) (i32.const 16)))
//       (br $rows)))))
//
// test/secagg-prg.test.ts checks it word for word against a plain JavaScript loop.
const WASM = Buffer.from(
  'AGFzbQEAAAABCgFgBn9/f39/fwADAgEABQMBAAEHDgIDbWVtAgAEbWFzawAACpQBAZEBAgN/AXsCQANAIAYgAU8NASAAIAZq/QAEACEJIAIgBmohByADIQgCQANAIAhFDQEgCSAH/QAEAP2uASEJIAcgBWohByAIQQFrIQgMAAsLIAQhCAJAA0AgCEUNASAJIAf9AAQA/bEBIQkgByAFaiEHIAhBAWshCAwACwsgACAGaiAJ/QsEACAGQRBqIQYMAAsLCw==',
  'base64',
);

export interface SimdAdder {
  /** The module's memory: the target piece at 0, the streams after it. Never grown after creation (views stay valid). */
  readonly memory: Uint8Array;
  /** memory[t, t + n) ← t + Σ kp streams − Σ km streams, the streams at s, s + stride, …; n a multiple of 16 bytes. */
  mask(t: number, n: number, s: number, kp: number, km: number, stride: number): void;
}

// The few WebAssembly names used here (the project's TypeScript libs carry no WebAssembly declarations).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { readonly exports: { mem: WasmMemory; mask: SimdAdder['mask'] } };
}
const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

let cached: { bytes: number; adder: SimdAdder } | undefined;

/** The one adder of this thread, with at least `bytes` of memory (module-level: JavaScript runs one call at a time). */
export function simdAdder(bytes: number): SimdAdder {
  if (cached && cached.bytes >= bytes) return cached.adder;
  const { exports } = new wasmApi.Instance(new wasmApi.Module(WASM));
  const pages = Math.ceil(bytes / 65536);
  if (pages > 1) exports.mem.grow(pages - 1);
  const adder: SimdAdder = { memory: new Uint8Array(exports.mem.buffer), mask: exports.mask };
  cached = { bytes, adder };
  return adder;
}
