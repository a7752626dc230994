// Floats ↔ integers mod 2^32 for secure aggregation. A client sends [q(w), q(w·c·x)] with w = min(n, cap)/cap
// and c = min(1, S/‖x‖₂) (clip), quantised with unbiased stochastic rounding on a grid with ⌈log2 N_max⌉
// headroom bits, so the sum of N_max vectors, read as int32, never wraps. The coordinator divides the two sums.
// Under DP-FedAvg's adaptive clipping (cfg.clipCountNoise > 0) the vector ends with one more value: the site's bit
// 1[‖x‖₂ ≤ S] on the count grid plus its share of the count's noise; the sum's last value is the noised count.
import { ProtocolError, status } from '../errors';
import type { NamedTensor, TensorList } from '../tensors';
import { countScale, countShareSigma, hasCountSlot, noiseShareSigma, quantisation, type SecAggRoundConfig } from './config';
import { GaussianStream } from '../gaussian';
import { KEYSTREAM_CHUNK_WORDS, Keystream } from './prg';
import { simd } from './simd';
import { DOMAIN, hashParts } from './bytes';
import { checkAggregate } from './gate';

export interface LayoutEntry {
  readonly name: string;
  /** Index of the tensor in the adapter list. */
  readonly tensor: number;
  /** Offset of its first value in the vector (slot 0 is the weight). */
  readonly offset: number;
  readonly size: number;
}

export interface VectorLayout {
  readonly entries: readonly LayoutEntry[];
  /** 1 + Σ sizes (+ 1 with the count value): SecAggRoundConfig.vectorLength. */
  readonly length: number;
  /** Where adaptive clipping's count value lives (the last), when the round has one. */
  readonly countAt?: number;
}

const invalid = (msg: string): ProtocolError => new ProtocolError(status.INVALID_ARGUMENT, msg);

/** Where each included tensor lives in the summed vector; tensors follow the (sorted) include order, then the count value (`count`). */
export function vectorLayout(adapter: TensorList, include: readonly string[], count = false): VectorLayout {
  let offset = 1;
  const entries = include.map((name) => {
    const tensor = adapter.findIndex((t) => t.name === name);
    if (tensor < 0) throw invalid(`secagg layout: included tensor ${name} is not in the adapter`);
    const size = adapter[tensor].data.length;
    const e = { name, tensor, offset, size };
    offset += size;
    return e;
  });
  return count ? { entries, length: offset + 1, countAt: offset } : { entries, length: offset };
}

/** Σ x² over the included values; the first non-finite value throws (named as the caller sees it). */
function sumSquares(delta: TensorList, layout: VectorLayout): number {
  // One running sum in layout order (the order fixes the float64 rounding, hence the clip factor).
  let sq = 0;
  for (const e of layout.entries) {
    const x = delta[e.tensor].data;
    for (let i = 0; i < x.length; i++) sq += x[i] * x[i];
    // A NaN or ±Inf makes sq non-finite (finite float32 squares cannot overflow a float64 sum of < 2^31 terms).
    if (!Number.isFinite(sq)) {
      for (let i = 0; i < x.length; i++) if (!Number.isFinite(x[i])) throw invalid(`${e.name}[${i}] = ${x[i]} is not finite`);
    }
  }
  return sq;
}

// The rounding, per value: q(v) = floor(v) + 1 when u < frac(v)·2^32 (u a uniform uint32 word: probability
// frac(v), so E[q] = v, bias < 2^-32), clamped to ±maxAbs (float rounding of c·‖x‖ can exceed S by an ulp). With
// a finite scale it runs in WebAssembly SIMD (simd.ts, 64 KiB pieces copied in and out of the module's memory);
// the same float64 operations give the same bits as quantiseIntoSlow below.
const PIECE_BYTES = KEYSTREAM_CHUNK_WORDS * 4;
const SLOT = PIECE_BYTES + 16; // x, u and out pieces side by side; a last odd value rounds up to a pair
// Stryker disable next-line ArithmeticOperator: equivalent: O_AT = 2 / SLOT truncates to 0 (= X_AT); the kernel loads each pair before it stores it
const [X_AT, U_AT, O_AT] = [0, SLOT, 2 * SLOT];

function quantiseSimd(out: Int32Array, at: number, x: Float32Array, from: number, u: Uint32Array, n: number, f: number, maxAbs: number): void {
  const sm = simd(3 * SLOT);
  const nb = n * 4;
  sm.memory.set(new Uint8Array(x.buffer, x.byteOffset + from * 4, nb), X_AT);
  sm.memory.set(new Uint8Array(u.buffer, u.byteOffset, nb), U_AT);
  sm.quantise(O_AT, X_AT, U_AT, (nb + 7) & ~7, f, maxAbs);
  new Uint8Array(out.buffer, out.byteOffset + at * 4, nb).set(sm.memory.subarray(O_AT, O_AT + nb));
}

/** The plain form, for a non-finite f (a clip norm so small that maxAbs/S overflows). */
function quantiseIntoSlow(out: Int32Array, at: number, x: Float32Array, from: number, u: Uint32Array, n: number, f: number, maxAbs: number): void {
  for (let i = 0; i < n; i++) {
    const v = f * x[from + i];
    const fl = Math.floor(v);
    // Stryker disable next-line ArithmeticOperator,ConditionalExpression,EqualityOperator: equivalent: f is not finite here, so v and fl are ±Infinity or NaN and q is the same ±Infinity or NaN
    let q = fl + (u[i] < (v - fl) * 4294967296 ? 1 : 0);
    if (q > maxAbs) q = maxAbs;
    else if (q < -maxAbs) q = -maxAbs;
    out[at + i] = q;
  }
}

/**
 * What the site's ledger keys "the same update" by: the included tensors' bytes and the example count, before
 * rounding (the rounding is fresh per encoding, so an encoded vector would never repeat).
 */
export function updateDigest(delta: TensorList, numExamples: number, include: readonly string[]): Uint8Array {
  const parts: (string | number | Uint8Array)[] = [numExamples, include.length];
  for (const name of include) {
    const t = delta.find((x) => x.name === name);
    if (!t) throw invalid(`secagg layout: included tensor ${name} is not in the adapter`);
    parts.push(name, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  return hashParts(DOMAIN.update, ...parts);
}

/**
 * Encodes one client's delta; `roundingSeed` drives the stochastic rounding and must be 32 fresh secret random
 * bytes (crypto.randomBytes): anyone who knows it can undo the rounding's noise. Tests pass fixed seeds.
 * With cfg.noiseMultiplier > 0 the site also adds its share of the DP noise, round(N(0, noiseShareSigma²)) per
 * value, drawn from `noiseSeed` (default: fresh from node:crypto; tests pass fixed seeds), before any masking.
 */
export function encodeUpdate(delta: TensorList, numExamples: number, cfg: SecAggRoundConfig, roundingSeed: Uint8Array, noiseSeed?: Uint8Array): Uint32Array {
  if (roundingSeed.length !== 32) throw new RangeError('roundingSeed must be 32 bytes');
  if (!(Number.isSafeInteger(numExamples) && numExamples >= 1)) throw invalid(`numExamples ${numExamples} must be a positive integer`);
  const layout = vectorLayout(delta, cfg.include, hasCountSlot(cfg));
  if (layout.length !== cfg.vectorLength) throw invalid(`secagg layout: vector of ${layout.length} values, round expects ${cfg.vectorLength}`);
  const sq = sumSquares(delta, layout);
  const { maxAbs, valueScale, weightScale } = quantisation(cfg);
  const norm = Math.sqrt(sq);
  const clip = norm > cfg.clipNorm ? cfg.clipNorm / norm : 1;
  const w = Math.min(numExamples, cfg.weightCap) / cfg.weightCap;
  const out = new Uint32Array(layout.length);
  out[0] = Math.round(w * weightScale); // deterministic: w is public to the sum anyway
  const f = w * clip * valueScale;
  const o = new Int32Array(out.buffer, out.byteOffset, out.length);
  // One ChaCha20 stream over all included values in layout order, KEYSTREAM_CHUNK_WORDS at a time per tensor.
  const ks = new Keystream(roundingSeed);
  const quantise = Number.isFinite(f) ? quantiseSimd : quantiseIntoSlow;
  const sigma = noiseShareSigma(cfg);
  const countSigma = countShareSigma(cfg);
  const stream = sigma > 0 || countSigma > 0 ? new GaussianStream(noiseSeed) : undefined;
  if (layout.countAt !== undefined) {
    // The count's share is the stream's first draw, so it does not depend on the vector's length.
    const g = new Float64Array(1);
    stream!.roundedInto(g, countSigma);
    const bit = norm <= cfg.clipNorm ? countScale(cfg) : 0;
    o[layout.countAt] = Math.min(maxAbs, Math.max(-maxAbs, bit + g[0]));
  }
  const gauss = sigma > 0 ? stream : undefined;
  const noise = new Float64Array(gauss ? KEYSTREAM_CHUNK_WORDS : 0);
  for (const e of layout.entries) {
    const x = delta[e.tensor].data;
    for (let off = 0; off < x.length; off += KEYSTREAM_CHUNK_WORDS) {
      const n = Math.min(KEYSTREAM_CHUNK_WORDS, x.length - off);
      quantise(o, e.offset + off, x, off, ks.words(n), n, f, maxAbs);
      if (gauss) addNoiseShare(o, e.offset + off, gauss, noise.subarray(0, n), sigma, maxAbs);
    }
  }
  return out;
}

/**
 * o[at + i] ← clamp(o[at + i] + round(σ·g_i)): the site's noise share, added to its rounded value (so the noise is
 * data-independent), clamped to ±maxAbs like every value (quantisation leaves NOISE_TAIL σ of headroom for it).
 */
function addNoiseShare(o: Int32Array, at: number, gauss: GaussianStream, buf: Float64Array, sigma: number, maxAbs: number): void {
  gauss.roundedInto(buf, sigma);
  for (let i = 0; i < buf.length; i++) o[at + i] = Math.min(maxAbs, Math.max(-maxAbs, o[at + i] + buf[i]));
}

/** acc ← acc + v mod 2^32 (int32 views: | 0 is the wrap). */
export function addInt32(acc: Int32Array, v: Int32Array): void {
  for (let i = 0; i < acc.length; i++) acc[i] = (acc[i] + v[i]) | 0;
}

/** Σ vectors mod 2^32; integer addition, so the result does not depend on the order. */
export function sumVectors(vs: readonly Uint32Array[]): Uint32Array {
  if (vs.length === 0) throw new RangeError('sumVectors: no vectors');
  const acc = vs[0].slice();
  const a = new Int32Array(acc.buffer);
  for (let k = 1; k < vs.length; k++) {
    const v = vs[k];
    if (v.length !== acc.length) throw new RangeError(`sumVectors: lengths ${acc.length} and ${v.length}`);
    addInt32(a, new Int32Array(v.buffer, v.byteOffset, v.length));
  }
  return acc;
}

/**
 * The unmasked sum as per-tensor integer sums Σ q(w·x) on the value grid (views, no copy), Σ w and the grid's
 * scale: the form a coordinator's aggregation strategy turns into the next adapter. Given the number of
 * `survivors` whose inputs it covers, the sum must first pass the weight and norm gate (gate.ts).
 */
export function unmaskedSum(
  sum: Uint32Array,
  cfg: SecAggRoundConfig,
  global: TensorList,
  survivors?: number,
): { tensors: Map<string, Int32Array>; totalWeight: number; scale: number; noisedCount?: number } {
  const layout = vectorLayout(global, cfg.include, hasCountSlot(cfg));
  if (sum.length !== layout.length || sum.length !== cfg.vectorLength) throw invalid(`secagg decode: sum of ${sum.length} values, layout has ${layout.length}`);
  const ints = new Int32Array(sum.buffer, sum.byteOffset, sum.length);
  const { valueScale, weightScale } = quantisation(cfg);
  if (ints[0] <= 0) throw invalid(`secagg decode: total weight ${ints[0]} must be positive`);
  if (survivors !== undefined) checkAggregate(ints, cfg, survivors);
  const tensors = new Map(layout.entries.map((e) => [e.name, ints.subarray(e.offset, e.offset + e.size)] as const));
  const count = layout.countAt === undefined ? {} : { noisedCount: ints[layout.countAt] / countScale(cfg) };
  return { tensors, totalWeight: ints[0] / weightScale, scale: valueScale, ...count };
}

/**
 * The weighted mean update applied to the global adapter: global + (Σ q(w·x)/s) / (Σ q(w)/s_w), as float32.
 * Tensors not included keep their global values. `totalWeight` = Σ w (in units of weightCap examples).
 */
export function decodeSum(sum: Uint32Array, cfg: SecAggRoundConfig, global: TensorList): { adapter: NamedTensor[]; totalWeight: number } {
  const { tensors, totalWeight, scale } = unmaskedSum(sum, cfg, global);
  const denom = totalWeight * scale;
  const adapter = global.map((g): NamedTensor => {
    const data = g.data.slice();
    const s = tensors.get(g.name);
    if (s) for (let i = 0; i < data.length; i++) data[i] = g.data[i] + s[i] / denom;
    return { name: g.name, dtype: g.dtype, shape: g.shape, data };
  });
  return { adapter, totalWeight };
}
