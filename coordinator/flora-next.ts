// The arithmetic of a 'flora' round's close (coordinator/flora-stack.ts says what FLoRA stacking is): the round's
// components from the sites' factors, then the next version from the base's components and the round's, compacted
// into dense factored form past the dense rank K. Pure functions over plain tensors with no coordinator state, so
// that the same code runs on the calling thread (FloraStacking.aggregate) and on the close's worker thread
// (flora-thread.ts): one implementation, hence the same bits whichever thread ran it.
import { sortByName, type NamedTensor, type TensorList } from '../proto/tensors';
import { compactComponents, concatComponents, denseRank, leadingComponents, productIsZero, uniformRank, zeroBeyond } from '../proto/model/lora-stack';

/** One site's uploaded factors, flat in the round's layout order (float32, as the tensor stream carries them). */
export interface SiteFactors {
  readonly clientId: string;
  readonly numExamples: number;
  readonly values: Float32Array;
}

/** What a round's close needs of its sites: their factors (sorted by client id), their declared ranks, Σ weights. */
export interface StackInput {
  readonly layout: readonly NamedTensor[];
  readonly sites: readonly SiteFactors[];
  readonly ranks: ReadonlyMap<string, number>;
  readonly totalWeight: number;
}

/** A flat update as tensors of `layout` (views, no copy). */
export function asTensors(layout: readonly NamedTensor[], values: Float32Array): NamedTensor[] {
  let off = 0;
  return layout.map((t) => {
    const data = values.subarray(off, off + t.data.length);
    off += t.data.length;
    return { name: t.name, dtype: 'float32', shape: [...t.shape], data };
  });
}

/** The round's components: site by site (client id order), A's rows as uploaded, B's columns times p_k. */
export function stackRound(input: StackInput): NamedTensor[] {
  const { layout, sites, ranks } = input;
  if (sites.length === 0) throw new Error('FLoRA: no update to stack');
  const full = uniformRank(layout);
  let stack: NamedTensor[] | undefined;
  for (const s of sites) {
    const p = s.numExamples / input.totalWeight;
    const factors = asTensors(layout, s.values);
    // The declared rank when the components beyond it are zero (they add nothing), else all of them: exact either way.
    const declared = ranks.get(s.clientId) ?? full;
    const width = declared >= 1 && declared <= full && zeroBeyond(factors, declared) ? declared : full;
    const mine = leadingComponents(factors, width).map((t) => (t.name.includes('.lora_B.') ? { ...t, data: Float32Array.from(t.data, (v) => p * v) } : t));
    stack = stack ? concatComponents(stack, mine) : mine;
  }
  return stack!;
}

/**
 * The next version: the base version's components (none when its product is zero: version 0's seeded A with B = 0),
 * then the round's; past the dense rank K, that product in dense factored form at rank K. The base's scaling is 1
 * (versionAdapterConfig commits every 'flora' version so). Names as the base spells them, sorted.
 */
export function nextVersion(global: TensorList, input: StackInput): NamedTensor[] {
  const round = stackRound(input);
  const next = productIsZero(global) ? round : concatComponents(global, round);
  const dense = denseRank(next);
  return sortByName(uniformRank(next) > dense ? compactComponents(next, dense) : next);
}
