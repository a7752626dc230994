// Rotary position embeddings as transformers' modeling_rope_utils computes them: inverse frequencies for the
// default, linear, dynamic (NTK) and llama3 variants, and the cos/sin tables of HF's non-interleaved layout
// (rotate_half pairs dimension i with i + head_dim/2). Computed in float64, stored float32.
import type { LlamaConfig } from '../../proto/model/llama-config';

/** inv_freq [head_dim/2] for a forward pass over `seqLen` positions (only dynamic rope depends on it). */
export function ropeInvFreq(cfg: LlamaConfig, seqLen: number): Float64Array {
  const dim = cfg.headDim;
  const rope = cfg.rope;
  let base = cfg.ropeTheta;
  // Dynamic NTK: past max_position_embeddings the base grows with the sequence. transformers caches the largest
  // length seen so far; here each forward uses its own length (the same for a single forward pass).
  if (rope.type === 'dynamic' && seqLen > cfg.nPositions) {
    base *= ((rope.factor * seqLen) / cfg.nPositions - (rope.factor - 1)) ** (dim / (dim - 2));
  }
  const inv = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = 1 / base ** ((2 * i) / dim);
  if (rope.type === 'linear') for (let i = 0; i < inv.length; i++) inv[i] /= rope.factor;
  if (rope.type === 'llama3') {
    const { factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: old } = rope;
    const lowWavelen = old / lowFreqFactor;
    const highWavelen = old / highFreqFactor;
    for (let i = 0; i < inv.length; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowWavelen)
        inv[i] /= factor; // low frequencies: fully interpolated
      else if (wavelen >= highWavelen) {
        // medium: a smooth blend between interpolated and original
        const smooth = (old / wavelen - lowFreqFactor) / (highFreqFactor - lowFreqFactor);
        inv[i] = (1 - smooth) * (inv[i] / factor) + smooth * inv[i];
      } // high frequencies: unchanged
    }
  }
  return inv;
}

/** cos and sin tables [seqLen, head_dim] (each frequency twice, HF's cat(freqs, freqs)). */
export function ropeTables(cfg: LlamaConfig, seqLen: number): { cos: Float32Array; sin: Float32Array } {
  const inv = ropeInvFreq(cfg, seqLen);
  const dim = cfg.headDim;
  const half = dim / 2;
  const cos = new Float32Array(seqLen * dim);
  const sin = new Float32Array(seqLen * dim);
  for (let t = 0; t < seqLen; t++) {
    for (let i = 0; i < half; i++) {
      // HF multiplies in float32: round the frequency first so long positions agree.
      const a = t * Math.fround(inv[i]);
      cos[t * dim + i] = cos[t * dim + i + half] = Math.cos(a);
      sin[t * dim + i] = sin[t * dim + i + half] = Math.sin(a);
    }
  }
  return { cos, sin };
}

/** rotate_half as a matrix: x @ R = cat(-x[half:], x[:half]). A matmul keeps the backward pass to MatMul. */
export function rotateHalfMatrix(dim: number): Float32Array {
  const half = dim / 2;
  const r = new Float32Array(dim * dim);
  for (let i = 0; i < half; i++) {
    r[(i + half) * dim + i] = -1; // out[i] = -x[i + half]
    r[i * dim + i + half] = 1; // out[i + half] = x[i]
  }
  return r;
}
