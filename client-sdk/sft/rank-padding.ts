// A site that trains a smaller LoRA rank r_s ≤ r than the global adapter (less memory): zero-padding.
// Global scaling s (alpha/r), the site's s_s. Per module the site starts from the first r_s rank components:
//   A_s = A[:r_s, :],  B_s = (s / s_s)·B[:, :r_s]          (so s_s·B_s·A_s = s·B[:, :r_s]·A[:r_s, :])
// trains (A_s, B_s) → (A_s', B_s'), and hands back the global layout
//   A' = [A_s'; A[r_s:, :]],  B' = [(s_s / s)·B_s', 0]
// Then s·B'·A' = s·(s_s/s)·B_s'·A_s' + s·0·A[r_s:] = s_s·B_s'·A_s': exactly the product the site trained (up to the
// float32 rounding of (s_s/s)·B_s', and bit for bit when s_s = s, the default). The rows of A beyond r_s keep
// their global values: zero B columns cancel them whatever they hold, and a zero-delta there does not pull the
// other sites' A rows towards zero under 'fedit'. Under 'ffa' A_s' = A[:r_s] (frozen), so A' = A bit for bit and
// only B travels; with A shared, Σ p_k B'_k·A is the weighted mean of the sites' products, exactly.
import type { NamedTensor, TensorList } from '../../proto/tensors';
import { parsePeftKey } from '../../proto/model/lora-layout';

function which(t: NamedTensor): 'A' | 'B' {
  const k = parsePeftKey(t.name);
  if (!k) throw new Error(`'${t.name}' is not a LoRA tensor`);
  return k.which;
}

/** The site's starting adapter of rank rS: A's first rS rows, B's first rS columns times 1/ratio (ratio = s_s/s). */
export function truncateToRank(global: TensorList, rS: number, ratio: number): NamedTensor[] {
  return global.map((t) => {
    if (which(t) === 'A') {
      const [r, n] = t.shape;
      if (rS > r) throw new RangeError(`rank ${rS} exceeds ${t.name}'s rank ${r}`);
      return { name: t.name, dtype: t.dtype, shape: [rS, n], data: t.data.slice(0, rS * n) };
    }
    const [out, r] = t.shape;
    if (rS > r) throw new RangeError(`rank ${rS} exceeds ${t.name}'s rank ${r}`);
    const data = new Float32Array(out * rS);
    for (let o = 0; o < out; o++) for (let j = 0; j < rS; j++) data[o * rS + j] = ratio === 1 ? t.data[o * r + j] : t.data[o * r + j] / ratio;
    return { name: t.name, dtype: t.dtype, shape: [out, rS], data };
  });
}

/** The trained rank-rS adapter in the global layout: A rows beyond rS from `global`, B columns beyond rS zero. */
export function padToRank(trained: TensorList, global: TensorList, ratio: number): NamedTensor[] {
  if (trained.length !== global.length) throw new Error(`padToRank: ${trained.length} tensors against the global ${global.length}`);
  return global.map((g, k) => {
    const t = trained[k];
    if (t.name !== g.name) throw new Error(`padToRank: ${t.name} against the global ${g.name}`);
    if (which(g) === 'A') {
      const [rS, n] = t.shape;
      if (n !== g.shape[1] || rS > g.shape[0]) throw new Error(`padToRank: ${t.name} is [${t.shape}], the global [${g.shape}]`);
      const data = g.data.slice();
      data.set(t.data, 0);
      return { name: g.name, dtype: g.dtype, shape: [...g.shape], data };
    }
    const [out, r] = g.shape;
    const rS = t.shape[1];
    if (t.shape[0] !== out || rS > r) throw new Error(`padToRank: ${t.name} is [${t.shape}], the global [${g.shape}]`);
    const data = new Float32Array(out * r);
    for (let o = 0; o < out; o++) for (let j = 0; j < rS; j++) data[o * r + j] = ratio === 1 ? t.data[o * rS + j] : t.data[o * rS + j] * ratio;
    return { name: g.name, dtype: g.dtype, shape: [...g.shape], data };
  });
}
