// Floats ↔ integers mod 2^32 for secure aggregation. A client sends [q(w), q(w·c·x)] with w = min(n, cap)/cap
// and c = min(1, S/‖x‖₂) (clip), quantised with unbiased stochastic rounding on a grid with ⌈log2 N_max⌉
// headroom bits, so the sum of N_max vectors, read as int32, never wraps. The coordinator divides the two sums.
import { status } from '@grpc/grpc-js';
import { ProtocolError } from '../tensor-stream';
import type { NamedTensor, TensorList } from '../tensors';
import { quantisation, type SecAggRoundConfig } from './config';
import { KEYSTREAM_CHUNK_WORDS, Keystream } from './prg';

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
  /** 1 + Σ sizes: SecAggRoundConfig.vectorLength. */
  readonly length: number;
}

const invalid = (msg: string): ProtocolError => new ProtocolError(status.INVALID_ARGUMENT, msg);

/** Where each included tensor lives in the summed vector; tensors follow the (sorted) include order. */
export function vectorLayout(adapter: TensorList, include: readonly string[]): VectorLayout {
  let offset = 1;
  const entries = include.map((name) => {
    const tensor = adapter.findIndex((t) => t.name === name);
    if (tensor < 0) throw invalid(`secagg layout: included tensor ${name} is not in the adapter`);
    const size = adapter[tensor].data.length;
    const e = { name, tensor, offset, size };
    offset += size;
    return e;
  });
  return { entries, length: offset };
}

/** Encodes one client's delta; `roundingSeed` (32 secret random bytes) drives the stochastic rounding. */
export function encodeUpdate(delta: TensorList, numExamples: number, cfg: SecAggRoundConfig, roundingSeed: Uint8Array): Uint32Array {
  if (roundingSeed.length !== 32) throw new RangeError('roundingSeed must be 32 bytes');
  if (!(Number.isSafeInteger(numExamples) && numExamples >= 1)) throw invalid(`numExamples ${numExamples} must be a positive integer`);
  const layout = vectorLayout(delta, cfg.include);
  if (layout.length !== cfg.vectorLength) throw invalid(`secagg layout: vector of ${layout.length} values, round expects ${cfg.vectorLength}`);
  let sq = 0;
  for (const e of layout.entries) {
    const x = delta[e.tensor].data;
    for (let i = 0; i < x.length; i++) {
      if (!Number.isFinite(x[i])) throw invalid(`${e.name}[${i}] = ${x[i]} is not finite`);
      sq += x[i] * x[i];
    }
  }
  const { maxAbs, valueScale, weightScale } = quantisation(cfg);
  const norm = Math.sqrt(sq);
  const clip = norm > cfg.clipNorm ? cfg.clipNorm / norm : 1;
  const w = Math.min(numExamples, cfg.weightCap) / cfg.weightCap;
  const out = new Uint32Array(layout.length);
  out[0] = Math.round(w * weightScale); // deterministic: w is public to the sum anyway
  const f = w * clip * valueScale;
  const ks = new Keystream(roundingSeed);
  for (const e of layout.entries) {
    const x = delta[e.tensor].data;
    for (let off = 0; off < x.length; off += KEYSTREAM_CHUNK_WORDS) {
      const n = Math.min(KEYSTREAM_CHUNK_WORDS, x.length - off);
      const u = ks.words(n);
      for (let i = 0; i < n; i++) {
        const v = f * x[off + i];
        const fl = Math.floor(v);
        // Round up with probability frac(v): E[q] = v (bias < 2^-32 from the 32-bit draw).
        let q = fl + (u[i] < (v - fl) * 4294967296 ? 1 : 0);
        if (q > maxAbs) q = maxAbs; // float rounding of c·‖x‖ can exceed S by an ulp
        else if (q < -maxAbs) q = -maxAbs;
        out[e.offset + off + i] = q; // ToUint32: two's complement
      }
    }
  }
  return out;
}

/** Σ vectors mod 2^32; integer addition, so the result does not depend on the order. */
export function sumVectors(vs: readonly Uint32Array[]): Uint32Array {
  if (vs.length === 0) throw new RangeError('sumVectors: no vectors');
  const acc = Uint32Array.from(vs[0]);
  for (let k = 1; k < vs.length; k++) {
    const v = vs[k];
    if (v.length !== acc.length) throw new RangeError(`sumVectors: lengths ${acc.length} and ${v.length}`);
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i] + v[i];
  }
  return acc;
}

/**
 * The weighted mean update applied to the global adapter: global + (Σ q(w·x)/s) / (Σ q(w)/s_w), as float32.
 * Tensors not included keep their global values. `totalWeight` = Σ w (in units of weightCap examples).
 */
export function decodeSum(sum: Uint32Array, cfg: SecAggRoundConfig, global: TensorList): { adapter: NamedTensor[]; totalWeight: number } {
  const layout = vectorLayout(global, cfg.include);
  if (sum.length !== layout.length || sum.length !== cfg.vectorLength) throw invalid(`secagg decode: sum of ${sum.length} values, layout has ${layout.length}`);
  const ints = new Int32Array(sum.buffer, sum.byteOffset, sum.length);
  const { valueScale, weightScale } = quantisation(cfg);
  if (ints[0] <= 0) throw invalid(`secagg decode: total weight ${ints[0]} must be positive`);
  const totalWeight = ints[0] / weightScale;
  const denom = totalWeight * valueScale;
  const adapter = global.map((g): NamedTensor => ({ name: g.name, dtype: g.dtype, shape: g.shape, data: Float32Array.from(g.data) }));
  for (const e of layout.entries) {
    const out = adapter[e.tensor].data;
    const g = global[e.tensor].data;
    for (let i = 0; i < e.size; i++) out[i] = g[i] + ints[e.offset + i] / denom;
  }
  return { adapter, totalWeight };
}
