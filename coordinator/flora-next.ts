// The arithmetic of a 'flora' round's close (coordinator/flora-stack.ts says what FLoRA stacking is): the round's
// components from the sites' factors, then the next version from the base's components and the round's, compacted
// into dense factored form past the dense rank K. Pure functions over plain tensors with no coordinator state, so
// that the same code runs on the calling thread (FloraStacking.aggregate) and on the close's worker threads
// (flora-close.ts, flora-thread.ts): one implementation, hence the same bits whichever thread ran it.
// A close is split in two so that its modules can be shared among threads: a few decisions span every module (each
// site's width: its components beyond its declared rank must be zero in EVERY module; whether the base's product is
// zero; K, the largest module's min(d_in, d_out)), taken once from each share's facts (decide); everything else is
// module by module (closeShare), so a share's tensors are exactly those the whole close gives for its modules.
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

/** A share of a close's modules (all of them on the calling thread): the layout's tensors and the sites' factors. */
export type ShareInput = Pick<StackInput, 'layout' | 'sites'>;

/** What a share's modules say towards the close's decisions. */
export interface ShareFacts {
  /** Every lora_B value of the share's base modules is zero. */
  readonly baseIsZero: boolean;
  /** Per site: its components beyond its declared rank are zero in the share's modules (true where none counts). */
  readonly zeroBeyond: readonly boolean[];
}

/** The decisions spanning every module, per site in the input's order. */
export interface CloseDecisions {
  readonly widths: readonly number[];
  readonly baseIsZero: boolean;
  readonly dense: number;
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

/** Per site, the declared rank that may narrow it (within 1..lora.r), else undefined: all its components count. */
export function declaredRanks(input: StackInput): (number | undefined)[] {
  if (input.sites.length === 0) throw new Error('FLoRA: no update to stack');
  const full = uniformRank(input.layout);
  return input.sites.map((s) => {
    const declared = input.ranks.get(s.clientId) ?? full;
    return declared >= 1 && declared <= full ? declared : undefined;
  });
}

/** The facts of a share: its base modules and the sites' factors for its modules. */
export function shareFacts(global: TensorList, input: ShareInput, declared: readonly (number | undefined)[]): ShareFacts {
  return {
    baseIsZero: productIsZero(global),
    zeroBeyond: input.sites.map((s, i) => {
      const d = declared[i];
      return d === undefined || zeroBeyond(asTensors(input.layout, s.values), d);
    }),
  };
}

/**
 * The decisions from every share's facts. A site is taken at its declared rank when its components beyond it are
 * zero in every module (they add nothing), else whole: exact either way. K from the layout's shapes, which are the
 * next version's (concatComponents refuses a base of other shapes).
 */
export function decide(input: StackInput, declared: readonly (number | undefined)[], facts: readonly ShareFacts[]): CloseDecisions {
  const full = uniformRank(input.layout);
  return {
    widths: declared.map((d, i) => (d !== undefined && facts.every((f) => f.zeroBeyond[i]) ? d : full)),
    baseIsZero: facts.every((f) => f.baseIsZero),
    dense: denseRank(input.layout),
  };
}

/** The round's components: site by site (client id order), A's rows as uploaded, B's columns times p_k. */
export function stackRound(input: ShareInput & Pick<StackInput, 'totalWeight'>, widths: readonly number[]): NamedTensor[] {
  let stack: NamedTensor[] | undefined;
  input.sites.forEach((s, i) => {
    const p = s.numExamples / input.totalWeight;
    const mine = leadingComponents(asTensors(input.layout, s.values), widths[i]).map((t) =>
      t.name.includes('.lora_B.') ? { ...t, data: Float32Array.from(t.data, (v) => p * v) } : t,
    );
    stack = stack ? concatComponents(stack, mine) : mine;
  });
  if (!stack) throw new Error('FLoRA: no update to stack');
  return stack;
}

/**
 * A share's next version: the base's components (none when the base's product is zero: version 0's seeded A with
 * B = 0), then the round's; past K, that product in dense factored form at rank K. Its rank too (the whole version's
 * must be one). The base's scaling is 1 (versionAdapterConfig commits every 'flora' version so). Names as the base
 * spells them, sorted.
 */
export function closeShare(
  global: TensorList,
  input: ShareInput & Pick<StackInput, 'totalWeight'>,
  d: CloseDecisions,
): { tensors: NamedTensor[]; rank: number } {
  const round = stackRound(input, d.widths);
  const next = d.baseIsZero ? round : concatComponents(global, round);
  const rank = uniformRank(next);
  return { tensors: sortByName(rank > d.dense ? compactComponents(next, d.dense) : next), rank };
}

/** The next version on the calling thread: the whole close as one share. */
export function nextVersion(global: TensorList, input: StackInput): NamedTensor[] {
  const declared = declaredRanks(input);
  return closeShare(global, input, decide(input, declared, [shareFacts(global, input, declared)])).tensors;
}
